"""Time series and channels: every time point segmented on its own in one run, every
channel measured in the table (issue: channels and time)."""

import json
import os
import signal

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr
from skimage.filters import threshold_otsu
from skimage.measure import regionprops_table

import chunkseg
from chunkseg.cli import main
from chunkseg.datasets import synthetic_nuclei, write_synthetic_series
from chunkseg.io.resume import PROGRESS_DIR
from chunkseg.run import run_segment

from .conftest import real_path
from .test_faults import _segment_process, _wait_for_markers

NAMES = ["DNA", "Actin", "Tubulin"]
INTENSITY = ("label", "intensity_mean", "intensity_min", "intensity_max", "intensity_std")


@pytest.fixture(scope="module")
def series2d(tmp_path_factory):
    """Five time points of 256x256 with three named channels, in 96x96 chunks, t in seconds."""
    path = tmp_path_factory.mktemp("series") / "series.ome.zarr"
    write_synthetic_series(path, (5, 256, 256), chunks=(96, 96), channels=3, names=NAMES,
                           seed=3, scale=(30.0, 1.0, 0.5, 0.5),
                           units={"t": "second", "y": "micrometer", "x": "micrometer"})
    image = zarr.open_group(str(path), mode="r")["0"][:]
    return path, image


@pytest.fixture(scope="module")
def series3d(tmp_path_factory):
    path = tmp_path_factory.mktemp("series3d") / "series.ome.zarr"
    write_synthetic_series(path, (3, 24, 80, 80), chunks=(12, 40, 40), seed=11, radius=(4, 7))
    return path, zarr.open_group(str(path), mode="r")["0"][:, 0]


def _labels(path):
    return chunkseg.open_labels(path).compute()


@pytest.mark.parametrize("method", ["watershed", "label"])
def test_each_time_point_equals_a_run_on_it_alone(tmp_path, series2d, method):
    path, _ = series2d
    report = run_segment(path, tmp_path / "all.zarr", time="all", channel="DNA", method=method,
                         min_distance=5)
    labels = _labels(tmp_path / "all.zarr")
    assert labels.shape == (5, 256, 256)
    for t in range(5):
        run_segment(path, tmp_path / f"t{t}.zarr", time=t, channel="DNA", method=method,
                    min_distance=5)
        alone = _labels(tmp_path / f"t{t}.zarr")
        np.testing.assert_array_equal(labels[t], alone)
        n = int(alone.max())
        assert n > 20
        np.testing.assert_array_equal(np.unique(labels[t]), np.arange(n + 1))  # ids 1..N each
        assert report.series[t] == {"t": t, "objects": n,
                                    "threshold": int(threshold_otsu(series2d[1][t, 0]))}
    assert report.objects == sum(p["objects"] for p in report.series)


def test_3d_series_on_worker_processes_and_another_chunking(tmp_path, series3d):
    path, image = series3d
    run_segment(path, tmp_path / "a.zarr", time="all", min_distance=3, scheduler="processes",
                workers=2)
    run_segment(path, tmp_path / "b.zarr", time="all", min_distance=3, chunks=(24, 32, 48))
    got = _labels(tmp_path / "a.zarr")
    np.testing.assert_array_equal(got, _labels(tmp_path / "b.zarr"))
    for t in range(3):
        want = chunkseg.segment(image[t], min_distance=3).compute()
        np.testing.assert_array_equal(got[t], want)


def test_a_range_of_time_points_and_one_time_point(tmp_path, series2d):
    path, _ = series2d
    run_segment(path, tmp_path / "all.zarr", time="all", channel=0, min_distance=5)
    run_segment(path, tmp_path / "some.zarr", time="1:4", channel=0, min_distance=5)
    report = run_segment(path, tmp_path / "one.zarr", time=3, channel=0, min_distance=5)
    every = _labels(tmp_path / "all.zarr")
    np.testing.assert_array_equal(_labels(tmp_path / "some.zarr"), every[1:4])
    one = _labels(tmp_path / "one.zarr")
    assert one.ndim == 2 and report.series is None
    np.testing.assert_array_equal(one, every[3])
    axes = zarr.open_group(str(tmp_path / "one.zarr"), mode="r").attrs["ome"]["multiscales"][0]["axes"]
    assert [a["name"] for a in axes] == ["y", "x"]


def test_series_output_keeps_t_axis_scale_and_units_and_validates(tmp_path, series2d):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models import open_ome_zarr
    from ome_zarr_models.v05.image_label import ImageLabel

    path, _ = series2d
    out = tmp_path / "labels.zarr"
    assert main(["-q", "segment", str(path), str(out), "--time", "all", "--channel", "DNA",
                 "--min-distance", "5", "--chunks", "64"]) == 0
    group = zarr.open_group(str(out), mode="r")
    assert isinstance(open_ome_zarr(group), ImageLabel)
    ms = group.attrs["ome"]["multiscales"][0]
    assert ms["axes"] == [{"name": "t", "type": "time", "unit": "second"},
                          {"name": "y", "type": "space", "unit": "micrometer"},
                          {"name": "x", "type": "space", "unit": "micrometer"}]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [30.0, 0.5, 0.5]
    assert ms["datasets"][1]["coordinateTransformations"][0]["scale"] == [30.0, 1.0, 1.0]
    assert group["0"].chunks == (1, 64, 64)
    full = group["0"][:]
    np.testing.assert_array_equal(group["1"][:], full[:, ::2, ::2])  # time is not downsampled
    nodes = list(Reader(parse_url(str(out)))())
    assert nodes and np.asarray(nodes[0].data[0]).shape == (5, 256, 256)
    np.testing.assert_array_equal(np.asarray(nodes[0].data[1]), full[:, ::2, ::2])


def test_threshold_once_over_the_series(tmp_path, series2d):
    path, image = series2d
    report = run_segment(path, tmp_path / "s.zarr", time="all", channel=0, min_distance=5,
                         threshold_scope="series")
    t = threshold_otsu(image[:, 0])
    assert [p["threshold"] for p in report.series] == [int(t)] * 5
    labels = _labels(tmp_path / "s.zarr")
    for k in (0, 4):
        np.testing.assert_array_equal(
            labels[k], chunkseg.segment(image[k, 0], threshold=t, min_distance=5).compute())


def test_report_and_summary_per_time_point(tmp_path, series2d, capsys):
    path, _ = series2d
    out = tmp_path / "l.zarr"
    assert main(["segment", str(path), str(out), "--time", "0:3", "--channel", "0",
                 "--min-distance", "5", "--method", "threshold"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("3 time points: foreground ")
    report = json.loads((tmp_path / "l.zarr.report.json").read_text())
    labels = _labels(out)
    assert [p["t"] for p in report["time_points"]] == [0, 1, 2]
    for k, entry in enumerate(report["time_points"]):
        assert entry["fractions"][1] == pytest.approx(labels[k].mean())
    assert report["params"]["time"] == "0:3"


def test_table_of_every_channel_equals_regionprops(tmp_path, series2d):
    path, image = series2d
    table = tmp_path / "objects.csv"
    run_segment(path, tmp_path / "l.zarr", time="all", channel="DNA", min_distance=5,
                table=table, measure_channels="all")
    got = pd.read_csv(table)
    labels = _labels(tmp_path / "l.zarr")
    assert list(got.columns[:2]) == ["t", "label"]
    for t in range(5):
        rows = got[got.t == t].reset_index(drop=True)
        want = pd.DataFrame(regionprops_table(labels[t], intensity_image=np.moveaxis(image[t], 0, -1),
                                              properties=INTENSITY + ("area",), spacing=(0.5, 0.5)))
        assert len(rows) == len(want) == labels[t].max()
        for col in want.columns:
            name = col
            for k, channel in enumerate(NAMES):
                name = name.replace(f"-{k}", f"-{channel}")
            np.testing.assert_allclose(rows[name], want[col], rtol=1e-12, atol=1e-9)
    # a subset, named or by index, in the order asked
    run_segment(path, tmp_path / "l2.zarr", time=1, channel="DNA", min_distance=5,
                table=tmp_path / "two.csv", measure_channels="Tubulin,0")
    two = pd.read_csv(tmp_path / "two.csv")
    assert [c for c in two.columns if c.startswith("intensity_mean")] == \
        ["intensity_mean-Tubulin", "intensity_mean-DNA"]
    np.testing.assert_allclose(two["intensity_max-Tubulin"],
                               got[got.t == 1]["intensity_max-Tubulin"].to_numpy())


def test_every_channel_of_a_block_read_in_one_task(series2d):
    """The table's image: each block whole along the channels is one read of the stored
    chunks (not a read per channel and a concatenation task, whose pieces may sit on
    other workers); a pick of one channel of three reads only that channel's chunks."""
    from dask.core import flatten

    from chunkseg.io import readers

    path, image = series2d
    for channels, want in (("all", image), (["Tubulin"], image[:, [2]])):
        x, names = readers.channels_last(path, channels=channels, time="all")
        culled = x.__dask_graph__().cull(set(flatten(x.__dask_keys__())))
        kinds = [str(k[0]).split("-")[0] for k in dict(culled) if isinstance(k, tuple)]
        assert kinds.count("zarr") == x.npartitions and "rechunk" not in kinds
        np.testing.assert_array_equal(x.compute(), np.moveaxis(want, 1, -1))
    assert names == ["Tubulin"]


def test_real_multichannel_image_every_channel_in_the_table(tmp_path):
    """BBBC022 Cell Painting crop (3 channels, ImageJ TIFF): Hoechst segmented, all measured."""
    src = real_path("bbbc022")
    image = tifffile.imread(src)
    table = tmp_path / "cells.parquet"
    run_segment(src, tmp_path / "l.zarr", channel=0, table=table, measure_channels="all",
                chunks=128)
    labels = _labels(tmp_path / "l.zarr")
    got = pd.read_parquet(table)
    want = pd.DataFrame(regionprops_table(labels, intensity_image=np.moveaxis(image, 0, -1),
                                          properties=INTENSITY))
    assert [c for c in got.columns if c.startswith("intensity")] == list(want.columns[1:])
    assert len(got) == labels.max() > 20
    for col in want.columns:
        np.testing.assert_allclose(got[col], want[col], rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("kind", ["ome", "imagej"])
def test_axes_of_ome_tiff_and_imagej_hyperstacks(tmp_path, kind):
    rng = np.random.default_rng(0)
    stack = np.stack([np.stack([synthetic_nuclei((6, 64, 72), seed=t),
                                rng.integers(0, 255, (6, 64, 72), dtype=np.uint8)])
                      for t in range(3)])  # T C Z Y X
    path = tmp_path / f"stack.{kind}.tif"
    if kind == "ome":
        tifffile.imwrite(path, stack, ome=True, metadata={"axes": "TCZYX",
                                                          "Channel": {"Name": ["dna", "noise"]}})
    else:  # ImageJ hyperstacks are stored TZCYX
        tifffile.imwrite(path, np.moveaxis(stack, 1, 2), imagej=True, metadata={"axes": "TZCYX"})
    channel = "dna" if kind == "ome" else 0
    run_segment(path, tmp_path / "l.zarr", time="all", channel=channel, min_distance=2,
                table=tmp_path / "t.csv", measure_channels="all")
    labels = _labels(tmp_path / "l.zarr")
    assert labels.shape == (3, 6, 64, 72)
    table = pd.read_csv(tmp_path / "t.csv")
    for t in range(3):
        np.testing.assert_array_equal(labels[t], chunkseg.segment(stack[t, 0], min_distance=2).compute())
        want = regionprops_table(labels[t], intensity_image=np.moveaxis(stack[t], 0, -1),
                                 properties=("intensity_mean",))
        noise = "noise" if kind == "ome" else "1"
        np.testing.assert_allclose(table[table.t == t][f"intensity_mean-{noise}"],
                                   want["intensity_mean-1"])


def test_a_series_of_files(tmp_path):
    for t in range(3):
        tifffile.imwrite(tmp_path / f"t{t:02d}.tif", synthetic_nuclei((128, 160), seed=40 + t))
    out = tmp_path / "l.zarr"
    assert main(["-q", "segment", str(tmp_path / "t*.tif"), str(out), "--time", "all"]) == 0
    labels = _labels(out)
    for t in range(3):
        np.testing.assert_array_equal(
            labels[t], chunkseg.segment(tifffile.imread(tmp_path / f"t{t:02d}.tif")).compute())


def _bad(tmp_path, series2d, capsys):
    path, _ = series2d
    tifffile.imwrite(tmp_path / "a0.tif", synthetic_nuclei((64, 64)))
    tifffile.imwrite(tmp_path / "a1.tif", synthetic_nuclei((64, 80)))
    plain = real_path("bbbc038")
    return {
        "time out of range": ([str(path), "--time", "5", "--channel", "0"], "time point 5 does not exist"),
        "range out of range": ([str(path), "--time", "2:9", "--channel", "0"], "are outside"),
        "no t axis": ([str(plain), "--time", "all"], "has no t axis"),
        "series without --time": ([str(path), "--channel", "0"], "pick them with --time"),
        "unknown channel": ([str(path), "--time", "all", "--channel", "RFP"], "channel 'RFP' does not exist"),
        "unknown measured channel": ([str(path), "--time", "all", "--channel", "0", "--table", "T.csv",
                                      "--measure-channels", "DNA,RFP"], "channel 'RFP' does not exist"),
        "measure channels of one": ([str(plain), "--table", "T.csv", "--measure-channels", "all"],
                                    "--measure-channels measures several channels"),
        "shapes differ": ([str(tmp_path / "a*.tif"), "--time", "all"], "time points of the series differ"),
        "scope without series": ([str(plain), "--threshold-scope", "series"], "needs the time points"),
    }


@pytest.mark.parametrize("case", ["time out of range", "range out of range", "no t axis",
                                  "series without --time", "unknown channel",
                                  "unknown measured channel", "measure channels of one",
                                  "shapes differ", "scope without series"])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, series2d, capsys, case):
    args, words = _bad(tmp_path, series2d, capsys)[case]
    args = [a.replace("T.csv", str(tmp_path / "t.csv")) for a in args]
    before = sorted(os.listdir(tmp_path))
    assert main(["segment", args[0], str(tmp_path / "out.zarr"), *args[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert sorted(os.listdir(tmp_path)) == before


def test_table_as_parquet_dataset_written_by_the_workers(tmp_path, series2d):
    import dask

    path, _ = series2d
    kw = dict(time="all", channel=0, min_distance=5, measure_channels="all")
    run_segment(path, tmp_path / "a.zarr", table=tmp_path / "one.parquet", **kw)
    one = pd.read_parquet(tmp_path / "one.parquet")
    report = run_segment(path, tmp_path / "b.zarr", table=f"{tmp_path / 'set.parquet'}/",
                         scheduler="processes", workers=2, **kw)
    assert report.table["parts"] == 5 and report.table["rows"] == len(one)
    assert (tmp_path / "set.parquet" / "_SUCCESS").exists()
    assert not (tmp_path / "set.parquet.incomplete").exists()
    got = pd.read_parquet(tmp_path / "set.parquet").sort_values(["t", "label"], ignore_index=True)
    pd.testing.assert_frame_equal(got, one)
    # a .parquet table larger than `chunkseg.table-rows` becomes a dataset of that name
    with dask.config.set({"chunkseg.table-rows": 10}):
        run_segment(path, tmp_path / "c.zarr", table=tmp_path / "big.parquet", **kw)
    assert (tmp_path / "big.parquet").is_dir()
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "big.parquet").sort_values(["t", "label"], ignore_index=True), one)


def test_dry_run_counts_every_time_point(series2d, capsys):
    path, _ = series2d
    assert main(["segment", str(path), "out.zarr", "--time", "all", "--channel", "0",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "5x256x256 uint8" in out and "(45 chunks)" in out


def test_killed_series_run_resumes_to_the_same_labels(tmp_path):
    path = tmp_path / "s.ome.zarr"
    write_synthetic_series(path, (4, 768, 768), chunks=(96, 96), seed=5)
    args = ["--time", "all", "--min-distance", "6"]
    assert main(["-q", "segment", str(path), str(tmp_path / "clean.zarr"), *args]) == 0
    out = tmp_path / "l.zarr"
    proc = _segment_process(path, out, *args, "--workers", "1")
    _wait_for_markers(out, proc, at_least=20)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    written = len(os.listdir(out / PROGRESS_DIR / "done"))
    assert written < 4 * 64
    with pytest.raises(chunkseg.InputError, match="incomplete"):
        chunkseg.open_labels(out)
    assert main(["-q", "segment", str(path), str(out), *args, "--resume"]) == 0
    np.testing.assert_array_equal(_labels(out), _labels(tmp_path / "clean.zarr"))
    report = json.loads((tmp_path / "l.zarr.report.json").read_text())
    assert report["resumed"]["already_written"] == written
    assert [p["objects"] for p in report["time_points"]] == \
        [int(_labels(out)[t].max()) for t in range(4)]
