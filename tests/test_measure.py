"""`measure` equals scikit-image's regionprops_table on the whole image."""

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from skimage.measure import label as sk_label
from skimage.measure import regionprops_table

import chunkseg
from chunkseg.cli import main
from chunkseg.table import measure

from .conftest import REAL_2D, REAL_3D, real_image

ALL = ("label", "area", "num_pixels", "centroid", "bbox", "intensity_mean", "intensity_min",
       "intensity_max", "intensity_std")


def _compare(table, labels, image, spacing=None, properties=ALL):
    ref = regionprops_table(labels, image, properties=properties, spacing=spacing)
    assert list(table.columns) == list(ref), (list(table.columns), list(ref))
    assert len(table) == len(ref["label"])
    for column, values in ref.items():
        got = table[column].to_numpy()
        if column.startswith("bbox") or column in ("label", "num_pixels"):
            np.testing.assert_array_equal(got, values, err_msg=column)
        else:  # scikit-image sums float32 images in float32; chunkseg in float64
            rtol = 1e-5 if np.asarray(image).dtype == np.float32 else 1e-10
            np.testing.assert_allclose(got, values, rtol=rtol, atol=1e-9, err_msg=column)


def _blobs(shape, seed, sigma=3.0):
    rng = np.random.default_rng(seed)
    smooth = ndi.gaussian_filter(rng.random(shape), sigma)
    return sk_label(smooth > np.quantile(smooth, 0.55))


@pytest.mark.parametrize("name", REAL_2D + REAL_3D)
def test_real_images_segmented_by_chunkseg(name):
    image = real_image(name)
    chunks = (64, 64) if image.ndim == 2 else (16, 48, 48)
    labels = chunkseg.segment(da.from_array(image, chunks=chunks), min_distance=5).compute()
    table = measure(da.from_array(labels, chunks=chunks), da.from_array(image, chunks=chunks),
                    properties=ALL)
    assert len(table) > 5
    _compare(table, labels, image)


@pytest.mark.parametrize("chunks", [(7, 9), (64, 33), (300, 400)])
@pytest.mark.parametrize("spacing", [None, (0.5, 2.0)])
def test_objects_across_many_chunks(chunks, spacing):
    labels = _blobs((300, 400), 1, sigma=6)
    rng = np.random.default_rng(2)
    # large mean, small spread: a sums-of-squares variance would lose digits here
    image = (60000 + rng.integers(0, 50, labels.shape)).astype(np.uint16)
    table = measure(da.from_array(labels, chunks=chunks), da.from_array(image, chunks=(50, 50)),
                    properties=ALL, spacing=spacing)
    _compare(table, labels, image, spacing=spacing)


def test_3d_anisotropic_float_image():
    labels = _blobs((20, 60, 50), 3, sigma=2)
    image = np.random.default_rng(4).normal(size=labels.shape).astype(np.float32)
    spacing = (2.0, 0.65, 0.65)
    table = measure(da.from_array(labels, chunks=(5, 16, 20)), image, properties=ALL,
                    spacing=spacing)
    _compare(table, labels, image, spacing=spacing)


def test_many_chunks_use_buckets_and_sparse_ids():
    labels = _blobs((256, 256), 5, sigma=2).astype(np.uint64)
    props = ("label", "area", "centroid", "bbox")
    ref = regionprops_table(labels, properties=props)
    ref["label"] = ref["label"] + 2**40
    labels[labels > 0] += np.uint64(2**40)  # ids far beyond the object count
    x = da.from_array(labels, chunks=(8, 8))  # 1024 chunks: 16 buckets
    table = measure(x, properties=props)
    for column, values in ref.items():
        np.testing.assert_allclose(table[column].to_numpy(), values, rtol=1e-12)


def test_defaults_empty_and_bad_input():
    labels = np.zeros((40, 40), dtype=np.uint32)
    table = measure(labels)
    assert list(table.columns) == ["label", "area", "centroid-0", "centroid-1", "bbox-0", "bbox-1",
                                   "bbox-2", "bbox-3"]
    assert len(table) == 0
    labels[3:9, 4:6] = 7
    table = measure(labels, np.ones((40, 40)))
    assert table["label"].tolist() == [7] and table["area"].tolist() == [12.0]
    assert "intensity_std" in table.columns
    with pytest.raises(chunkseg.InputError, match="unknown properties perimeter"):
        measure(labels, properties=("area", "perimeter"))
    with pytest.raises(chunkseg.InputError, match="need an `image`"):
        measure(labels, properties=("intensity_mean",))
    with pytest.raises(chunkseg.InputError, match="shape"):
        measure(labels, np.ones((40, 41)))
    with pytest.raises(chunkseg.InputError, match="integer"):
        measure(labels.astype(float))


def test_cli_measure_and_segment_table(tmp_path, capsys):
    image = real_image("human-mitosis")
    tif = tmp_path / "img.tif"
    import tifffile

    tifffile.imwrite(tif, image)
    out = tmp_path / "labels.zarr"
    assert main(["-q", "segment", str(tif), str(out), "--min-distance", "5", "--chunks", "128",
                 "--table", str(tmp_path / "objects.parquet")]) == 0
    labels = chunkseg.open_labels(out).compute()
    seg_table = pd.read_parquet(tmp_path / "objects.parquet")
    _compare(seg_table, labels, image, properties=[c for c in ALL if c != "num_pixels"])
    assert main(["-q", "measure", str(out), str(tmp_path / "m.csv"), "--image", str(tif),
                 "--spacing", "0.5,0.5"]) == 0
    csv = pd.read_csv(tmp_path / "m.csv")
    assert len(csv) == labels.max()
    np.testing.assert_allclose(csv["area"], seg_table["area"] * 0.25)
    # bad table names fail before any work, with nothing written
    capsys.readouterr()
    assert main(["segment", str(tif), str(tmp_path / "x.zarr"), "--table", "t.xlsx"]) == 2
    assert "must end in .csv or .parquet" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists()
    assert main(["measure", str(out), str(tmp_path / "m.csv")]) == 2
    assert "m.csv exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert main(["measure", str(tmp_path / "nope.zarr"), str(tmp_path / "n.csv")]) == 2
    assert "input not found" in capsys.readouterr().err


def test_measure_and_compare_show_progress_when_asked(tmp_path, capsys):
    from chunkseg.run import run_compare, run_measure

    labels = _blobs((200, 200), 7).astype(np.uint32)
    out = tmp_path / "labels.zarr"
    chunkseg.to_zarr(da.from_array(labels, chunks=50), out)
    run_measure(out, tmp_path / "m.csv", progress=True)
    assert "chunkseg: [" in capsys.readouterr().err
    run_compare(out, out, progress=True)
    assert "100%" in capsys.readouterr().err
    run_measure(out, tmp_path / "n.csv")  # stderr is not a terminal here: no bar
    assert "chunkseg: [" not in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_intensity_statistics_exact_for_every_dtype_and_channel_count(dtype):
    """Bright objects with a small spread (where sum(x^2) - sum(x)^2/n cancels in floats)
    and one or three channels: equal to regionprops on the whole image."""
    rng = np.random.default_rng(4)
    labels = np.zeros((120, 130), np.int32)
    for k, (y, x) in enumerate(rng.integers(5, 110, (25, 2)), start=1):
        labels[y:y + 9, x:x + 11] = k
    top = 250 if dtype == np.uint8 else 30000
    image = (top - rng.integers(0, 3, (3, 120, 130))).astype(dtype)
    if dtype == np.int16:
        image = -image
    props = ("label", "intensity_mean", "intensity_min", "intensity_max", "intensity_std")
    for channels in (image[0], np.moveaxis(image, 0, -1)):
        got = chunkseg.measure(da.from_array(labels, chunks=40),
                               da.from_array(channels, chunks=(40, 40) + channels.shape[2:]),
                               properties=props)
        want = pd.DataFrame(regionprops_table(labels, intensity_image=channels, properties=props))
        assert list(got.columns) == list(want.columns)
        # regionprops averages float32 in float32; chunkseg in float64
        rtol = 1e-6 if dtype == np.float32 else 1e-9
        for col in want.columns:
            np.testing.assert_allclose(got[col], want[col], rtol=rtol, atol=1e-9)
