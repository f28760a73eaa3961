import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

import chunkseg
from chunkseg.io import inspect_image, is_complete, open_image, to_zarr

from ._stores import write_ome_zarr, write_pyramidal_tiff
from .conftest import real_image, real_path


@pytest.fixture(scope="module")
def image():
    return real_image("human-mitosis")


@pytest.mark.parametrize("fmt", [2, 3])
def test_zarr_array_lazy_with_storage_chunks(tmp_path, image, fmt):
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=image.shape, chunks=(100, 130),
                          dtype=image.dtype, zarr_format=fmt)
    z[:] = image
    x = open_image(tmp_path / "a.zarr")
    assert isinstance(x, da.Array)
    assert x.chunksize == (100, 130)
    np.testing.assert_array_equal(x.compute(), image)
    assert inspect_image(tmp_path / "a.zarr").format == f"zarr-v{fmt}"


def test_zarr_group_with_one_array(tmp_path, image):
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("raw", data=image, chunks=(128, 128))
    np.testing.assert_array_equal(open_image(tmp_path / "g.zarr").compute(), image)


def test_zarr_group_without_or_with_many_arrays(tmp_path, image):
    zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
    with pytest.raises(ValueError, match="holds no array"):
        open_image(tmp_path / "empty.zarr")
    g = zarr.open_group(str(tmp_path / "two.zarr"), mode="w")
    g.create_array("a", data=image)
    g.create_array("b", data=image)
    with pytest.raises(ValueError, match=r"holds 2 arrays \(a, b\).*point at one"):
        open_image(tmp_path / "two.zarr")


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_levels_and_channels(tmp_path, image, version):
    stack = np.stack([image, 255 - image])
    path = write_ome_zarr(tmp_path / "ome.zarr", stack, version=version, channel_names=["DNA", "inv"])
    info = inspect_image(path)
    assert info.format == f"ome-zarr {version}"
    assert info.axes == "cyx"
    assert info.channels == ["DNA", "inv"]
    assert info.levels == [(2, 512, 512), (2, 256, 256)]
    np.testing.assert_array_equal(open_image(path, channel=0).compute(), image)
    np.testing.assert_array_equal(open_image(path, channel="inv").compute(), 255 - image)
    np.testing.assert_array_equal(open_image(path, level=1, channel=0).compute(), image[::2, ::2])
    with pytest.raises(ValueError, match=r"has 2 channels \(0=DNA, 1=inv\); pick one"):
        open_image(path)
    with pytest.raises(ValueError, match=r"channel 'GFP' does not exist.*0=DNA, 1=inv"):
        open_image(path, channel="GFP")
    with pytest.raises(ValueError, match=r"channel 5 does not exist"):
        open_image(path, channel=5)
    with pytest.raises(ValueError, match=r"level 2 does not exist.*2 levels \(0\.\.1\)"):
        open_image(path, level=2, channel=0)


def test_ome_zarr_time_axis_of_one_is_dropped(tmp_path, image):
    path = write_ome_zarr(tmp_path / "t.zarr", image[None, None], axes="tcyx", levels=1)
    np.testing.assert_array_equal(open_image(path).compute(), image)


def test_tiff_plain_rgb_and_imagej(tmp_path, image):
    tifffile.imwrite(tmp_path / "p.tif", image)
    np.testing.assert_array_equal(open_image(tmp_path / "p.tif").compute(), image)
    rgb = np.stack([image, image // 2, image // 3], axis=-1)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with pytest.raises(ValueError, match="has 3 channels"):
        open_image(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(open_image(tmp_path / "rgb.tif", channel=2).compute(), image // 3)


def test_ome_tiff_channel_names(tmp_path, image):
    stack = np.stack([image, 255 - image])
    tifffile.imwrite(tmp_path / "o.ome.tif", stack, metadata={"axes": "CYX", "Channel": {"Name": ["DNA", "Actin"]}})
    info = inspect_image(tmp_path / "o.ome.tif")
    assert info.format == "ome-tiff"
    assert info.channels == ["DNA", "Actin"]
    np.testing.assert_array_equal(open_image(tmp_path / "o.ome.tif", channel="Actin").compute(), 255 - image)


def test_tiff_physical_pixel_sizes_are_the_scale(tmp_path):
    """OME-TIFF's PhysicalSize{Z,Y,X} (and unit) and an ImageJ hyperstack's resolution
    tags and spacing (its micro sign escaped, as ImageJ writes it) become the scale and
    units; a level of an OME pyramid has its sizes times its downsampling; a plain TIFF
    has none."""
    stack = np.zeros((6, 64, 64), np.uint8)
    tifffile.imwrite(tmp_path / "o.ome.tif", stack, metadata={
        "axes": "ZYX", "PhysicalSizeZ": 2.0, "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.25,
        "PhysicalSizeXUnit": "nm", "PhysicalSizeYUnit": "nm", "PhysicalSizeZUnit": "nm"})
    info = inspect_image(tmp_path / "o.ome.tif")
    assert info.scale == (2.0, 0.5, 0.25) and info.units == dict.fromkeys("zyx", "nanometer")
    tifffile.imwrite(tmp_path / "ij.tif", stack, imagej=True, resolution=(4.0, 2.0),
                     metadata={"spacing": 1.5, "unit": "\\u00B5m", "axes": "ZYX"})
    info = inspect_image(tmp_path / "ij.tif")
    assert info.scale == (1.5, 0.5, 0.25) and info.units == dict.fromkeys("xyz", "micrometer")
    with tifffile.TiffWriter(tmp_path / "pyr.ome.tif") as tif:
        meta = {"axes": "YX", "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.5}
        tif.write(stack[0], tile=(32, 32), subifds=1, metadata=meta)
        tif.write(stack[0, ::2, ::2], tile=(32, 32), subfiletype=1)
    assert inspect_image(tmp_path / "pyr.ome.tif", level=1).scale == (1.0, 1.0)
    tifffile.imwrite(tmp_path / "plain.tif", stack)
    info = inspect_image(tmp_path / "plain.tif")
    assert info.scale is None and info.units is None


def test_pyramidal_tiled_tiff_is_lazy_and_picklable(tmp_path, image):
    import pickle

    path = write_pyramidal_tiff(tmp_path / "pyr.tif", image)
    info = inspect_image(path)
    assert info.levels == [(512, 512), (256, 256), (128, 128)]
    x = open_image(path, level=1)
    np.testing.assert_array_equal(x.compute(), image[::2, ::2])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(x)).compute(), image[::2, ::2])


def test_real_3d_tiff():
    x = open_image(real_path("idr853-3d"))
    assert x.shape == (124, 86, 94) and x.dtype == np.float32


def test_arrays_pass_through(image):
    x = open_image(image)
    np.testing.assert_array_equal(x.compute(), image)
    d = da.from_array(image, chunks=50)
    assert open_image(d) is d


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="input not found"):
        open_image(tmp_path / "missing.zarr")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="is not an image chunkseg can read"):
        open_image(tmp_path / "notes.txt")
    (tmp_path / "plain_dir").mkdir()
    with pytest.raises(ValueError, match="is not a Zarr array or group"):
        open_image(tmp_path / "plain_dir")
    zarr.create_array(str(tmp_path / "c.zarr"), shape=(4, 4), dtype=np.complex64)
    with pytest.raises(ValueError, match="complex dtype"):
        open_image(tmp_path / "c.zarr")
    zarr.create_array(str(tmp_path / "e.zarr"), shape=(0, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="empty"):
        open_image(tmp_path / "e.zarr")
    zarr.create_array(str(tmp_path / "4d.zarr"), shape=(2, 2, 4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="4-D array without axis metadata"):
        open_image(tmp_path / "4d.zarr")


def test_to_zarr_roundtrip_marks_complete_and_refuses_overwrite(tmp_path, image):
    x = da.from_array(image, chunks=(100, 200))
    z = to_zarr(x, tmp_path / "out.zarr", chunks=128)
    assert z.chunks == (128, 128)
    assert is_complete(zarr.open_array(str(tmp_path / "out.zarr"), mode="r"))
    np.testing.assert_array_equal(open_image(tmp_path / "out.zarr").compute(), image)
    with pytest.raises(ValueError, match="exists; pass `overwrite` to replace it"):
        to_zarr(x, tmp_path / "out.zarr")
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[:], image)
    to_zarr(255 - image, tmp_path / "out.zarr", overwrite=True)
    np.testing.assert_array_equal(open_image(tmp_path / "out.zarr").compute(), 255 - image)


def test_input_is_never_modified(tmp_path, image):
    import hashlib

    path = tmp_path / "in.tif"
    tifffile.imwrite(path, image)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    chunkseg.threshold_otsu(open_image(path))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
