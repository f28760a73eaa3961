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
        (["threshold", "{tmp}/ok.zarr", "--method", "bogus"], "unknown threshold method 'bogus'"),
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
