import subprocess
import sys

import numpy as np
import pytest
import skimage.filters
import tifffile
import zarr

from chunkseg.cli import main

from ._stores import write_ome_zarr
from .conftest import real_image


@pytest.fixture
def mitosis(tmp_path):
    image = real_image("human-mitosis")
    path = tmp_path / "m.zarr"
    zarr.create_array(str(path), data=image, chunks=(100, 100))
    return path, image


def _one_error_line(capsys, match):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert match in err[0], err[0]


def test_threshold_prints_skimage_value(capsys, mitosis):
    path, image = mitosis
    assert main(["threshold", str(path)]) == 0
    assert capsys.readouterr().out.strip() == repr(skimage.filters.threshold_otsu(image).item())
    assert main(["threshold", str(path), "--method", "li"]) == 0
    assert float(capsys.readouterr().out) == skimage.filters.threshold_li(image)
    assert main(["threshold", str(path), "--method", "multiotsu", "--classes", "4"]) == 0
    want = skimage.filters.threshold_multiotsu(image, classes=4)
    assert [int(v) for v in capsys.readouterr().out.split()] == list(want)


def test_threshold_float_prints_full_precision(capsys, tmp_path):
    image = real_image("idr853-3d")
    tifffile.imwrite(tmp_path / "f.tif", image)
    assert main(["threshold", str(tmp_path / "f.tif")]) == 0
    assert float(capsys.readouterr().out) == float(skimage.filters.threshold_otsu(image))


def test_info(capsys, tmp_path):
    image = real_image("human-mitosis")
    path = write_ome_zarr(tmp_path / "o.zarr", np.stack([image, image]), channel_names=["DNA", "PH3"])
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ome-zarr 0.5" in out and "(2, 512, 512)" in out and "0=DNA, 1=PH3" in out and "levels:   2" in out


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("chunkseg ")
    for cmd in (["--help"], ["info", "--help"], ["threshold", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(cmd)
        assert e.value.code == 0
        assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, match",
    [
        (["threshold", "{tmp}/missing.zarr"], "input not found"),
        (["threshold", "{tmp}/notes.txt"], "is not an image"),
        (["threshold", "{tmp}/group.zarr"], "holds no array"),
        (["threshold", "{tmp}/complex.zarr"], "complex dtype"),
        (["threshold", "{tmp}/nan.zarr"], "1 NaN or infinite value (first at index (3, 4))"),
        (["threshold", "{tmp}/empty.zarr"], "is empty"),
        (["threshold", "{tmp}/ok.zarr", "--method", "bogus"], "unknown threshold --method 'bogus'"),
        (["threshold", "{tmp}/ome.zarr", "--channel", "0", "--level", "3"], "level 3 does not exist"),
        (["threshold", "{tmp}/ome.zarr", "--channel", "7"], "channel 7 does not exist"),
        (["threshold", "{tmp}/ome.zarr"], "has 2 channels"),
        (["info", "{tmp}/missing.zarr"], "input not found"),
        (["threshold"], "the following arguments are required"),
    ],
)
def test_bad_input_one_line_exit_2(capsys, tmp_path, args, match):
    (tmp_path / "notes.txt").write_text("x")
    zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    zarr.create_array(str(tmp_path / "complex.zarr"), shape=(4, 4), dtype=np.complex128)
    nan = np.ones((10, 10), np.float32)
    nan[3, 4] = np.nan
    zarr.create_array(str(tmp_path / "nan.zarr"), data=nan, chunks=(5, 5))
    zarr.create_array(str(tmp_path / "empty.zarr"), shape=(0, 3), dtype=np.uint8)
    zarr.create_array(str(tmp_path / "ok.zarr"), data=np.arange(16, dtype=np.uint8).reshape(4, 4))
    write_ome_zarr(tmp_path / "ome.zarr", np.zeros((2, 8, 8), np.uint8))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    _one_error_line(capsys, match)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def _syn_store(tmp_path, shape=(300, 360), chunks=(100, 120), name="in.zarr"):
    from chunkseg.datasets import synthetic_nuclei

    image = synthetic_nuclei(shape, seed=3)
    zarr.create_array(str(tmp_path / name), data=image, chunks=chunks)
    return tmp_path / name, image


def test_segment_writes_labels_and_prints_summary(capsys, tmp_path):
    from chunkseg import open_labels

    from ._reference import reference

    path, image = _syn_store(tmp_path)
    assert main(["segment", str(path), str(tmp_path / "out.zarr"), "--min-distance", "6",
                 "--chunks", "64"]) == 0
    out = capsys.readouterr().out.strip()
    labels = open_labels(tmp_path / "out.zarr").compute()
    n = int(labels.max())
    assert out.startswith(f"{n} objects, threshold ")
    _, flat, ref = reference(image, min_distance=6)
    assert n == len(flat)
    z = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert z["0"].dtype == np.uint32 and z["0"].chunks == (64, 64)
    assert z.attrs["chunkseg"]["complete"] is True
    assert z.attrs["chunkseg"]["params"]["min_distance"] == 6


def test_segment_refuses_existing_output_and_leaves_it(capsys, tmp_path):
    path, _ = _syn_store(tmp_path)
    (tmp_path / "out.zarr").mkdir()
    (tmp_path / "out.zarr" / "keep.txt").write_text("mine")
    assert main(["segment", str(path), str(tmp_path / "out.zarr")]) == 2
    _one_error_line(capsys, "exists; pass --overwrite")
    assert (tmp_path / "out.zarr" / "keep.txt").read_text() == "mine"
    assert main(["segment", str(path), str(tmp_path / "out.zarr"), "--overwrite", "-q"]) == 0
    assert not (tmp_path / "out.zarr" / "keep.txt").exists()


@pytest.mark.parametrize("extra, match", [
    (["--min-distance", "0"], "--min-distance must be a positive integer, got 0"),
    (["--footprint", "-2"], "--footprint must be a positive integer, got -2"),
    (["--chunks", "0"], "--chunks must be positive integers (one, or one per axis), got (0,)"),
    (["--chunks", "3,4,5"], "--chunks must be 2 positive integers (or one), got (3, 4, 5)"),
    (["--chunks", "a,b"], "--chunks must be N or Z,Y,X integers, got 'a,b'"),
    (["--threshold", "bogus"], "unknown --threshold method 'bogus'; choose one of otsu"),
    (["--halo", "-3"], "--halo must be a positive integer, got -3"),
])
def test_segment_bad_options(capsys, tmp_path, extra, match):
    path, _ = _syn_store(tmp_path)
    assert main(["segment", str(path), str(tmp_path / "out.zarr"), *extra]) == 2
    _one_error_line(capsys, match)
    assert not (tmp_path / "out.zarr").exists()


def test_segment_bad_inputs(capsys, tmp_path):
    path, _ = _syn_store(tmp_path)
    assert main(["segment", str(tmp_path / "nope.zarr"), str(tmp_path / "o.zarr")]) == 2
    _one_error_line(capsys, "input not found")
    assert main(["segment", str(path), str(path / "labels")]) == 2
    _one_error_line(capsys, "lies inside the input")
    nan = np.ones((20, 20), np.float32)
    nan[2, 3] = np.inf
    zarr.create_array(str(tmp_path / "nan.zarr"), data=nan)
    assert main(["segment", str(tmp_path / "nan.zarr"), str(tmp_path / "o.zarr")]) == 2
    _one_error_line(capsys, "1 NaN or infinite value")
    write_ome_zarr(tmp_path / "ome.zarr", np.zeros((2, 40, 40), np.uint8))
    assert main(["segment", str(tmp_path / "ome.zarr"), str(tmp_path / "o.zarr")]) == 2
    _one_error_line(capsys, "has 2 channels")
    assert not (tmp_path / "o.zarr").exists()


def test_threshold_failing_on_worker_processes_is_one_line(tmp_path):
    """The threshold is computed on the workers there; its error is still one line
    (the workers' own copy with a traceback is not printed), and no output is left.
    A real CLI process: the workers write to its stderr."""
    import subprocess
    import sys

    flat = (np.arange(256 * 256) % 256).astype(np.uint8).reshape(256, 256)  # no two maxima
    zarr.create_array(str(tmp_path / "flat.zarr"), data=flat, chunks=(128, 128))
    run = subprocess.run([sys.executable, "-m", "chunkseg", "segment", str(tmp_path / "flat.zarr"),
                          str(tmp_path / "o.zarr"), "--threshold", "minimum",
                          "--scheduler", "processes", "--workers", "2"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "chunkseg: error: threshold_minimum: Unable to find two maxima in histogram; choose "
        "another threshold method"], run.stderr
    assert not (tmp_path / "o.zarr").exists()


def test_segment_no_foreground_warns_and_writes_empty(capsys, tmp_path):
    # zarr-python stores no chunk of an all-zero array: missing chunks stop a run unless
    # they are to be read as the fill value
    zarr.create_array(str(tmp_path / "dark.zarr"), data=np.zeros((50, 50), np.uint8))
    assert main(["segment", str(tmp_path / "dark.zarr"), str(tmp_path / "o.zarr"), "--threshold", "10"]) == 1
    assert "--missing-chunks fill" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "dark.zarr"), str(tmp_path / "o.zarr"), "--threshold", "10",
                 "--missing-chunks", "fill"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("0 objects")
    assert "no foreground" in captured.err


def test_open_labels_refuses_incomplete(tmp_path):
    from chunkseg import open_labels
    from chunkseg.io.writers import create_labels

    create_labels(tmp_path / "half.zarr", shape=(10, 10), chunks=(5, 5), dtype=np.uint32, axes="yx")
    with pytest.raises(ValueError, match="is incomplete: the run that wrote it did not finish"):
        open_labels(tmp_path / "half.zarr")
    assert open_labels(tmp_path / "half.zarr", allow_incomplete=True).shape == (10, 10)


def test_demo(capsys, tmp_path):
    assert main(["demo", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "objects, threshold" in out and "human mitosis" in out
    from chunkseg import open_labels

    assert open_labels(tmp_path / "demo" / "labels.zarr").shape == (1024, 1024)


def test_segment_method_label_and_min_size(capsys, tmp_path):
    import scipy.ndimage as ndi
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import relabel_sequential

    from chunkseg import open_labels

    from ._reference import reference

    path, image = _syn_store(tmp_path)
    want = ndi.label(image > threshold_otsu(image))[0]
    assert main(["segment", str(path), str(tmp_path / "cc.zarr"), "--method", "label", "--chunks", "70"]) == 0
    assert capsys.readouterr().out.startswith(f"{want.max()} objects")
    np.testing.assert_array_equal(open_labels(tmp_path / "cc.zarr").compute(), want)
    small = relabel_sequential(remove_small_objects(want, max_size=199))[0]
    assert main(["segment", str(path), str(tmp_path / "cc2.zarr"), "--method", "label", "--min-size", "200"]) == 0
    assert capsys.readouterr().out.startswith(f"{small.max()} objects")
    np.testing.assert_array_equal(open_labels(tmp_path / "cc2.zarr").compute(), small)
    _, _, ws = reference(image, min_distance=6)
    ws_small = relabel_sequential(remove_small_objects(ws, max_size=99))[0]
    assert main(["segment", str(path), str(tmp_path / "ws.zarr"), "--min-distance", "6", "--min-size", "100"]) == 0
    assert capsys.readouterr().out.startswith(f"{ws_small.max()} objects")


def test_verbose_local_cluster_logs_its_dashboard(tmp_path, capsys):
    """The dashboard's port is chosen at start: -v says where it is."""
    import re

    path, _ = _syn_store(tmp_path)
    assert main(["-v", "segment", str(path), str(tmp_path / "o.zarr"), "--scheduler",
                 "processes", "--workers", "1", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"local cluster: 1 worker processes x 1 thread\(s\), "
                     r"dashboard http://127\.0\.0\.1:\d+/status", err), err


def test_a_bug_inside_a_kernel_is_an_internal_error_not_bad_input(capsys, tmp_path, monkeypatch):
    """A TypeError raised by a kernel (a bug) is exit 1 and says so; -v shows the traceback."""
    from chunkseg._kernels import watershed as ws

    def broken(*args, **kwargs):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'NoneType'")

    monkeypatch.setattr(ws, "watershed_block", broken)
    path, _ = _syn_store(tmp_path)
    assert main(["segment", str(path), str(tmp_path / "o.zarr"), "--min-distance", "6"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["chunkseg: internal error: TypeError: unsupported operand type(s) for +: 'int' "
                   "and 'NoneType' (run with -v for the traceback, and please report it)"], err
    assert main(["-v", "segment", str(path), str(tmp_path / "o.zarr"), "--min-distance", "6",
                 "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err


def test_info_on_a_damaged_tiff_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + bytes(60))  # a TIFF header with nothing behind it
    assert main(["info", str(bad)]) == 2
    _one_error_line(capsys, f"{bad} is not a readable TIFF")
    notiff = tmp_path / "text.tif"
    notiff.write_text("not an image\n")
    assert main(["info", str(notiff)]) == 2
    _one_error_line(capsys, "is not an image chunkseg can read")


def test_unreachable_scheduler_is_bad_input_within_seconds(capsys, tmp_path):
    import time

    path, _ = _syn_store(tmp_path)
    start = time.monotonic()
    assert main(["segment", str(path), str(tmp_path / "o.zarr"), "--scheduler",
                 "tcp://127.0.0.1:9"]) == 2
    assert time.monotonic() - start < 15
    _one_error_line(capsys, "no dask scheduler answers at tcp://127.0.0.1:9 within 5 s")
    assert not (tmp_path / "o.zarr").exists()
    assert main(["segment", str(path), str(tmp_path / "o.zarr"), "--scheduler", "nonsense"]) == 2
    _one_error_line(capsys, "unknown --scheduler 'nonsense'")


def test_library_errors_name_parameters_and_the_cli_its_flags(capsys, tmp_path):
    import chunkseg

    with pytest.raises(chunkseg.InputError, match="`smooth` must be gaussian:SIGMA or median:SIZE"):
        chunkseg.segment(np.zeros((8, 8), np.uint8), smooth="gaussian:x")
    path, _ = _syn_store(tmp_path)
    assert main(["segment", str(path), str(tmp_path / "o.zarr"), "--smooth", "gaussian:x"]) == 2
    _one_error_line(capsys, "--smooth must be gaussian:SIGMA or median:SIZE, got 'gaussian:x'")


def test_orphaned_store_requests_are_not_logged_beside_the_one_line():
    """A chunk write that failed is reported once; asyncio's report of the request tasks still
    in flight then (the store went away) is dropped, any other asyncio error is kept."""
    import logging

    from chunkseg.cli import _configure_logging

    _configure_logging(0, False)
    logger = logging.getLogger("asyncio")

    def kept(message):
        return bool(logger.filter(logger.makeRecord("asyncio", logging.ERROR, __file__, 0,
                                                    message, (), None)))

    assert not kept("Task exception was never retrieved\nfuture: <Task finished ...>")
    assert kept("Unclosed client session")


def test_info_of_a_zarr_store_reads_its_metadata_without_dask_array(tmp_path):
    """`chunkseg info` on a Zarr store builds no dask array (dask.array alone costs 0.4-1 s
    to import): the level's array is made on first use."""
    path = tmp_path / "stack.zarr"
    zarr.create_array(str(path), shape=(40, 64, 80), chunks=(20, 32, 40), dtype="uint16")
    code = ("import sys\nfrom chunkseg.cli import main\n"
            f"assert main(['info', {str(path)!r}]) == 0\n"
            "print(sorted(m for m in ('dask', 'dask.array', 'numba', 'skimage', 'scipy') "
            "if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert "shape:    (40, 64, 80)" in lines[2] and "chunks:   (20, 32, 40)" in lines[4]
    assert lines[-1] == "[]"


def test_help_imports_neither_dask_array_nor_zarr_nor_numba():
    """`chunkseg --help` (and `import chunkseg`) load the public names on first use only."""
    code = ("import sys\nfrom chunkseg.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\nimport chunkseg\nchunkseg.__version__\n"
            "print(sorted(m for m in ('dask.array', 'zarr', 'numba', 'skimage') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"
