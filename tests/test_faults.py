"""Long runs survive what happens to long runs: killed workers, killed runs, bad chunks."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client

import chunkseg
from chunkseg.cli import main
from chunkseg.datasets import synthetic_nuclei
from chunkseg.io.resume import PROGRESS_DIR

from ._cluster import remote_cluster

ARGS = ["--min-distance", "6"]


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A 2048x2048 input in 128x128 chunks (256 chunks), and its labels from a clean run."""
    folder = tmp_path_factory.mktemp("big")
    src = folder / "in.zarr"
    zarr.create_array(str(src), data=synthetic_nuclei((2048, 2048), seed=31), chunks=(128, 128))
    assert main(["-q", "segment", str(src), str(folder / "clean.zarr"), *ARGS]) == 0
    return src, chunkseg.open_labels(folder / "clean.zarr").compute()


def _segment_process(*args):
    return subprocess.Popen([sys.executable, "-m", "chunkseg", "-q", "segment", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_markers(out: Path, proc, at_least: int = 1, timeout: float = 120) -> int:
    folder = out / PROGRESS_DIR / "done"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = len(os.listdir(folder)) if folder.exists() else 0
        if n >= at_least:
            return n
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    raise AssertionError("no chunk was written in time")


def test_killed_run_is_incomplete_and_resume_finishes_it(tmp_path, big, capsys):
    src, want = big
    out = tmp_path / "labels.zarr"
    proc = _segment_process(src, out, *ARGS, "--workers", "1")
    _wait_for_markers(out, proc, at_least=3)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed, not finished
    written = len(os.listdir(out / PROGRESS_DIR / "done"))
    assert written >= 3  # however many more were written before the kill landed
    with pytest.raises(chunkseg.InputError, match="incomplete.*`resume`"):
        chunkseg.open_labels(out)
    assert chunkseg.open_labels(out, allow_incomplete=True).shape == want.shape
    # resuming with other parameters or another input is refused, touching nothing
    assert main(["segment", str(src), str(out), "--min-distance", "7", "--resume"]) == 2
    assert "min_distance=6, not 7" in capsys.readouterr().err
    other = tmp_path / "other.zarr"
    zarr.create_array(str(other), data=synthetic_nuclei((2048, 2048), seed=32), chunks=(128, 128))
    assert main(["segment", str(other), str(out), *ARGS, "--resume"]) == 2
    assert "another input" in capsys.readouterr().err
    changed = tmp_path / "changed.zarr"  # the same path with other pixels: the fingerprint
    import shutil

    shutil.copytree(src, changed)
    with open(out / "zarr.json") as f:
        attrs = json.load(f)
    attrs["attributes"]["chunkseg"]["params"]["input"] = str(changed.resolve())
    (out / "zarr.json").write_text(json.dumps(attrs))
    z = zarr.open_array(str(changed), mode="r+")
    z[-1, -1] = 255 - z[-1, -1]
    assert main(["segment", str(changed), str(out), *ARGS, "--resume"]) == 2
    assert "the input changed" in capsys.readouterr().err
    attrs["attributes"]["chunkseg"]["params"]["input"] = str(src.resolve())
    (out / "zarr.json").write_text(json.dumps(attrs))
    assert main(["segment", str(src), str(out), *ARGS]) == 2
    assert "exists; pass --overwrite to replace it, or --resume" in capsys.readouterr().err
    assert len(os.listdir(out / PROGRESS_DIR / "done")) == written
    # resume: only the missing chunks are computed, the result is the clean run's
    assert main(["segment", str(src), str(out), *ARGS, "--resume"]) == 0
    summary = capsys.readouterr().out
    assert f"resumed: {written} of 256 chunks were written, {256 - written} written now" in summary
    np.testing.assert_array_equal(chunkseg.open_labels(out).compute(), want)
    report = json.loads(Path(f"{out}.report.json").read_text())
    assert report["resumed"] == {"already_written": written, "written": 256 - written,
                                 "chunks": 256}
    assert not (out / PROGRESS_DIR).exists()
    assert main(["segment", str(src), str(out), *ARGS, "--resume"]) == 2  # complete already
    assert "nothing to resume" in capsys.readouterr().err


def test_resume_of_connected_components_and_masks(tmp_path, big):
    src, _ = big
    for method in ("label", "threshold"):
        out = tmp_path / f"{method}.zarr"
        clean = tmp_path / f"{method}-clean.zarr"
        assert main(["-q", "segment", str(src), str(clean), "--method", method]) == 0
        proc = _segment_process(src, out, "--method", method, "--workers", "1")
        _wait_for_markers(out, proc, at_least=2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert main(["-q", "segment", str(src), str(out), "--method", method, "--resume"]) == 0
        np.testing.assert_array_equal(chunkseg.open_labels(out).compute(),
                                      chunkseg.open_labels(clean).compute())


def test_worker_killed_mid_run_gives_the_clean_answer(tmp_path, big):
    src, want = big
    with remote_cluster(tmp_path, nworkers=2) as (address, _):
        with Client(address) as client:
            pids = client.run(os.getpid)
        out = tmp_path / "labels.zarr"
        proc = _segment_process(src, out, *ARGS, "--scheduler", address)
        _wait_for_markers(out, proc, at_least=2)
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
    np.testing.assert_array_equal(chunkseg.open_labels(out).compute(), want)


def _chunk_file(store: Path, index) -> Path:
    return store / "c" / "/".join(map(str, index))


def test_corrupt_input_chunk_names_chunk_and_store(tmp_path, capsys):
    image = synthetic_nuclei((512, 512), seed=4)
    src = tmp_path / "in.zarr"
    zarr.create_array(str(src), data=image, chunks=(128, 128))
    _chunk_file(src, (1, 2)).write_bytes(b"not a chunk at all")
    out = tmp_path / "cc.zarr"
    # a given threshold: the first read of chunk (1, 2) is in the pass that writes
    assert main(["segment", str(src), str(out), "--method", "label", "--threshold", "100"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "chunk (1, 2)" in err and str(src) in err
    with pytest.raises(chunkseg.InputError, match="incomplete"):
        chunkseg.open_labels(out)


def test_missing_input_chunk_stops_unless_fill(tmp_path, capsys):
    image = synthetic_nuclei((512, 512), seed=4)
    src = tmp_path / "in.zarr"
    zarr.create_array(str(src), data=image, chunks=(128, 128))
    _chunk_file(src, (2, 1)).unlink()
    assert main(["segment", str(src), str(tmp_path / "a.zarr")]) == 1
    err = capsys.readouterr().err
    assert "input chunk (2, 1)" in err and "missing" in err and "--missing-chunks fill" in err
    # the threshold's histogram reads every chunk before the output is made
    assert not (tmp_path / "a.zarr").exists()
    assert main(["-q", "segment", str(src), str(tmp_path / "b.zarr"), "--missing-chunks",
                 "fill"]) == 0
    filled = image.copy()
    filled[256:384, 128:256] = 0
    want = chunkseg.segment(filled, min_distance=10).compute()
    np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "b.zarr").compute(), want)


def test_resume_into_an_ome_zarr_input(tmp_path, big, capsys):
    from ._stores import write_ome_zarr

    src, want = big
    image = zarr.open_array(str(src), mode="r")[:]
    ome = write_ome_zarr(tmp_path / "img.ome.zarr", image, version="0.5", axes="yx", levels=2,
                         chunks=(128, 128))
    out = ome / "labels" / "nuclei"
    proc = _segment_process(ome, "--into-input", "nuclei", *ARGS, "--workers", "1")
    _wait_for_markers(out, proc, at_least=2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    capsys.readouterr()
    assert main(["-q", "segment", str(ome), "--into-input", "nuclei", *ARGS]) == 2
    assert "nuclei exists; pass --overwrite to replace it, or --resume" in capsys.readouterr().err
    table = tmp_path / "objects.csv"
    assert main(["-q", "segment", str(ome), "--into-input", "nuclei", *ARGS, "--resume",
                 "--table", str(table)]) == 0
    np.testing.assert_array_equal(chunkseg.open_labels(out).compute(), want)
    import pandas as pd

    got = pd.read_csv(table)  # measured from the finished store
    ref = chunkseg.measure(want, image)
    assert list(got.columns) == list(ref.columns) and len(got) == want.max()
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), rtol=1e-9)
    group = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(group["1"][:], want[::2, ::2])  # the image's own 2 levels
