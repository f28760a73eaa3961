"""Run reports, dry runs and progress bars."""

import io
import json

import numpy as np
import pytest
import zarr

import chunkseg
from chunkseg._monitor import progress
from chunkseg.cli import main
from chunkseg.datasets import synthetic_nuclei
from chunkseg.run import run_segment


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "nuclei.zarr"
    zarr.create_array(str(path), data=synthetic_nuclei((512, 512), seed=3), chunks=(128, 128))
    return path


def test_dry_run_prints_plan_and_writes_nothing(tmp_path, nuclei, capsys):
    out = tmp_path / "labels.zarr"
    assert main(["segment", str(nuclei), str(out), "--dry-run", "--scheduler", "processes",
                 "--workers", "2", "--halo", "40"]) == 0
    text = capsys.readouterr().out
    assert "512x512 uint8" in text and "128x128  (16 chunks)" in text
    assert "40x40  (given)" in text and "2 x 1 thread(s)" in text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("method,scheduler", [("watershed", "threads"), ("label", "threads"),
                                              ("threshold", "threads"), ("watershed", "processes")])
def test_plan_estimates_the_tasks_that_run(tmp_path, nuclei, method, scheduler):
    report = run_segment(nuclei, tmp_path / "o.zarr", method=method, progress=False,
                         scheduler=scheduler, workers=2)
    plan = report.plan
    assert plan.chunk_count == 16
    assert report.tasks > 0
    assert abs(plan.tasks - report.tasks) <= 0.25 * report.tasks, (plan.tasks, report.tasks)


def test_plan_counts_face_tasks_for_every_chunk_without_placement(tmp_path, nuclei):
    """Unplaced, every chunk sends faces: more tasks run, and the plan says so."""
    import dask

    runs = {}
    for placement in (True, False):
        with dask.config.set({"chunkseg.placement": placement}):
            runs[placement] = run_segment(nuclei, tmp_path / f"{placement}.zarr", progress=False,
                                          scheduler="processes", workers=2)
    assert runs[False].tasks > runs[True].tasks
    assert runs[False].plan.tasks > runs[True].plan.tasks
    for r in runs.values():
        assert abs(r.plan.tasks - r.tasks) <= 0.25 * r.tasks, (r.plan.tasks, r.tasks)


def test_the_plan_keeps_distances_by_the_workers_memory_limit(tmp_path, nuclei):
    """Before the workers exist the plan counts a quarter of their limits together, as the
    run does once they do: 512^2 (1 MB of levels counted) kept with 4 MB a worker, not
    with 1 MB; the threaded scheduler has no worker limit."""
    from chunkseg.run import plan_segment

    out = tmp_path / "out.zarr"
    assert plan_segment(nuclei, out, scheduler="processes", workers=2).kept_distances
    assert plan_segment(nuclei, out, scheduler="processes", workers=2,
                        memory_limit="4MB").kept_distances
    small = plan_segment(nuclei, out, scheduler="processes", workers=2, memory_limit="1MB")
    assert not small.kept_distances
    assert plan_segment(nuclei, out, scheduler="threads", memory_limit="1MB").kept_distances


def test_distances_kept_or_recomputed_by_memory_budget(tmp_path, nuclei, monkeypatch):
    """A run keeps pass 1's distances when they fit the budget, else recomputes them:
    the plan and the report say which, and the labels are the same."""
    import sys

    kept = run_segment(nuclei, tmp_path / "kept.zarr", min_distance=6, progress=False)
    assert kept.plan.kept_distances and kept.kept_distances
    assert kept.to_dict()["halo"]["distances_kept_between_passes"] is True
    monkeypatch.setattr(sys.modules["chunkseg.segment"], "distances_budget", lambda: 512 * 512 * 4 - 1)
    again = run_segment(nuclei, tmp_path / "again.zarr", min_distance=6, progress=False)
    assert not again.plan.kept_distances and not again.kept_distances
    assert again.plan.memory_per_worker < kept.plan.memory_per_worker
    np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "kept.zarr").compute(),
                                  chunkseg.open_labels(tmp_path / "again.zarr").compute())


def test_report_json_beside_output(tmp_path, nuclei):
    out = tmp_path / "labels.zarr"
    assert main(["-q", "segment", str(nuclei), str(out), "--min-distance", "6"]) == 0
    report = json.loads((tmp_path / "labels.zarr.report.json").read_text())
    labels = chunkseg.open_labels(out).compute()
    assert report["objects"] == labels.max() == len(np.unique(labels)) - 1
    assert report["params"]["min_distance"] == 6
    assert report["versions"]["dask"] and report["chunkseg"] == chunkseg.__version__
    assert report["chunk_count"] == 16 and report["chunks"] == [128, 128]
    assert set(report["timings_s"]) >= {"threshold", "seeds", "watershed+write"}
    assert report["peak_memory_bytes"] > 50 * 2**20
    assert report["halo"]["seeds"] and report["halo"]["max_distance"] > 0
    assert report["tasks"] > 16
    # --report elsewhere, --no-report none; an existing report needs --overwrite
    assert main(["-q", "segment", str(nuclei), str(tmp_path / "b.zarr"), "--report",
                 str(tmp_path / "run.json")]) == 0
    assert json.loads((tmp_path / "run.json").read_text())["output"] == str(tmp_path / "b.zarr")
    assert main(["-q", "segment", str(nuclei), str(tmp_path / "c.zarr"), "--no-report"]) == 0
    assert not (tmp_path / "c.zarr.report.json").exists()


def test_report_records_warnings(tmp_path, nuclei):
    with pytest.warns(UserWarning, match="no foreground"):
        report = run_segment(nuclei, tmp_path / "o.zarr", threshold=1000, progress=False)
    assert any("no foreground" in w for w in report.to_dict()["warnings"])


def test_progress_bar_threads_and_cluster(nuclei, tmp_path):
    import dask.array as da
    from distributed import Client, LocalCluster

    x = da.from_zarr(str(nuclei))
    stream = io.StringIO()
    with progress(None, enabled=True, stream=stream) as counts:
        chunkseg.segment(x, min_distance=6).compute()
    assert counts.total > 16 and counts.done == counts.total
    assert f"100%  {counts.total}/{counts.total} tasks" in stream.getvalue()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1") as cluster, Client(cluster) as client:
        stream = io.StringIO()
        with progress(client, enabled=True, stream=stream) as counts:
            chunkseg.segment(x, min_distance=6).compute()
        assert counts.total > 16 and counts.done == counts.total
        assert "100%" in stream.getvalue()
        hidden = io.StringIO()  # no bar, no polling: still counted, at the end
        with progress(client, stream=hidden) as counts:
            chunkseg.segment(x, min_distance=6).compute()
        assert counts.total > 16 and counts.done == counts.total and hidden.getvalue() == ""
    quiet = io.StringIO()
    with progress(None, stream=quiet) as counts:  # not a terminal: no bar, still counted
        x.sum().compute()
    assert quiet.getvalue() == "" and counts.total > 0


def test_cli_progress_flag(tmp_path, nuclei, capsys):
    assert main(["segment", str(nuclei), str(tmp_path / "a.zarr"), "--progress"]) == 0
    assert "chunkseg: [" in capsys.readouterr().err
    assert main(["segment", str(nuclei), str(tmp_path / "b.zarr")]) == 0  # stderr not a tty
    assert "chunkseg: [" not in capsys.readouterr().err
    assert main(["-q", "segment", str(nuclei), str(tmp_path / "c.zarr"), "--progress"]) == 0
    assert "chunkseg: [" not in capsys.readouterr().err
