import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.filters
import zarr

import chunkseg
from chunkseg.cli import main
from chunkseg.filters import background_subtract, gaussian, median, parse_threshold

from ._reference import reference
from .conftest import real_image

CHUNKINGS_2D = [(64, 50), 33, (512, 512)]


@pytest.mark.parametrize("name", ["human-mitosis", "bbbc022", "idr853-3d"])
def test_filters_equal_scipy_on_the_whole_image(name):
    image = real_image(name)
    chunkings = CHUNKINGS_2D if image.ndim == 2 else [(40, 30, 47), 17]
    want_g = ndi.gaussian_filter(image.astype(np.float64), 2.0, mode="nearest")
    want_m = ndi.median_filter(image, size=5, mode="reflect")
    want_b = image.astype(np.float64) - ndi.gaussian_filter(image.astype(np.float64), 6.0, mode="nearest")
    for chunks in chunkings:
        x = da.from_array(image, chunks=chunks)
        np.testing.assert_array_equal(gaussian(x, 2.0).compute(), want_g)
        got_m = median(x, 5).compute()
        assert got_m.dtype == image.dtype
        np.testing.assert_array_equal(got_m, want_m)
        np.testing.assert_array_equal(background_subtract(x, 6.0).compute(), want_b)


def test_semantic_mask_and_fraction_bit_identical():
    image = real_image("s-biad634")
    t = skimage.filters.threshold_otsu(image)
    for chunks in CHUNKINGS_2D:
        got = chunkseg.segment(da.from_array(image, chunks=chunks), method="threshold").compute()
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, (image > t).astype(np.uint8))


@pytest.mark.parametrize("name, classes", [("human-mitosis", 3), ("s-biad634", 4), ("idr853-3d", 3)])
def test_class_maps_equal_digitize_of_skimage_multiotsu(name, classes):
    image = real_image(name)
    want = np.digitize(image, skimage.filters.threshold_multiotsu(image, classes=classes))
    chunkings = CHUNKINGS_2D if image.ndim == 2 else [(40, 30, 47), 23]
    for chunks in chunkings:
        got = chunkseg.segment(da.from_array(image, chunks=chunks), method="threshold",
                               threshold="multiotsu", classes=classes).compute()
        np.testing.assert_array_equal(got, want)


def test_class_map_random_float():
    rng = np.random.default_rng(4)
    image = np.concatenate([rng.normal(10, 2, 6000), rng.normal(30, 3, 6000), rng.normal(60, 5, 6000)])
    image = rng.permutation(image).reshape(120, 150).astype(np.float32)
    want = np.digitize(image, skimage.filters.threshold_multiotsu(image, classes=3))
    for chunks in [(17, 40), 150]:
        got = chunkseg.segment(da.from_array(image, chunks=chunks), method="threshold",
                               threshold="multiotsu", classes=3).compute()
        np.testing.assert_array_equal(got, want)


def test_local_threshold_and_prefilters_feed_the_mask():
    image = real_image("human-mitosis")
    local = skimage.filters.threshold_local(image, 51, "gaussian", offset=-2)
    mask, spec = chunkseg.foreground(da.from_array(image, chunks=70), "local:51:-2:gaussian")
    assert spec == ("local", 51, -2.0, "gaussian")
    np.testing.assert_array_equal(mask.compute(), image > local)
    base = image.astype(np.float64) - ndi.gaussian_filter(image.astype(np.float64), 10.0, mode="nearest")
    smoothed = ndi.median_filter(base, size=3, mode="reflect")
    mask, t = chunkseg.foreground(da.from_array(image, chunks=70), smooth="median:3",
                                  background="gaussian:10")
    assert t == skimage.filters.threshold_otsu(smoothed)
    np.testing.assert_array_equal(mask.compute(), smoothed > t)


def test_watershed_on_filtered_image_equals_reference():
    image = real_image("human-mitosis")
    smoothed = ndi.gaussian_filter(image.astype(np.float64), 1.0, mode="nearest")
    mask, flat, ref = reference(smoothed, min_distance=7)
    x = da.from_array(image, chunks=100)
    m, _ = chunkseg.foreground(x, smooth="gaussian:1")
    seeds = chunkseg.find_seeds(m, min_distance=7)
    np.testing.assert_array_equal(seeds.flat, flat)
    labels = chunkseg.segment(x, smooth="gaussian:1", min_distance=7).compute()
    assert np.count_nonzero((labels == ref) & mask) / mask.sum() >= 0.998


@pytest.mark.parametrize("spec", ["local", "local:50", "local:x", "local:51:a", "local:51:0:otsu", "local:1"])
def test_bad_local_specs(spec):
    with pytest.raises(ValueError, match="`threshold` must be local:BLOCK"):
        parse_threshold(spec)


def _store(tmp_path):
    image = real_image("human-mitosis")
    zarr.create_array(str(tmp_path / "in.zarr"), data=image, chunks=(128, 128))
    return tmp_path / "in.zarr", image


def test_cli_threshold_method_and_fractions(capsys, tmp_path):
    path, image = _store(tmp_path)
    t = skimage.filters.threshold_otsu(image)
    assert main(["segment", str(path), str(tmp_path / "m.zarr"), "--method", "threshold"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"foreground {100 * np.mean(image > t):.2f}%, threshold {t}")
    np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "m.zarr").compute(), image > t)
    assert main(["segment", str(path), str(tmp_path / "c.zarr"), "--method", "threshold",
                 "--threshold", "multiotsu", "--classes", "3"]) == 0
    classes = np.digitize(image, skimage.filters.threshold_multiotsu(image))
    out = capsys.readouterr().out
    frac = np.bincount(classes.ravel(), minlength=3) / classes.size
    assert out.startswith("classes " + ", ".join(f"{k}: {100 * f:.2f}%" for k, f in enumerate(frac)))
    np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "c.zarr").compute(), classes)
    assert main(["segment", str(path), str(tmp_path / "l.zarr"), "--method", "threshold",
                 "--threshold", "local:41:-1", "--smooth", "median:3"]) == 0
    assert "threshold local:41:-1:gaussian" in capsys.readouterr().out


def test_cli_compare(capsys, tmp_path):
    path, image = _store(tmp_path)
    assert main(["segment", str(path), str(tmp_path / "a.zarr"), "--method", "threshold", "--threshold", "otsu"]) == 0
    assert main(["segment", str(path), str(tmp_path / "b.zarr"), "--method", "threshold", "--threshold", "li"]) == 0
    capsys.readouterr()
    a = image > skimage.filters.threshold_otsu(image)
    b = image > skimage.filters.threshold_li(image)
    n = int(np.count_nonzero(a ^ b))
    assert main(["compare", str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr"), "--out", str(tmp_path / "d.zarr")]) == 0
    assert capsys.readouterr().out.startswith(f"{n} of {image.size} pixels differ")
    np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "d.zarr").compute(), a ^ b)
    zarr.create_array(str(tmp_path / "small.zarr"), data=np.zeros((10, 10), np.uint8))
    assert main(["compare", str(tmp_path / "a.zarr"), str(tmp_path / "small.zarr")]) == 2
    assert "must have the shape of MASK_B" in capsys.readouterr().err


@pytest.mark.parametrize("extra, match", [
    (["--threshold", "local:50"], "--threshold must be local:BLOCK"),
    (["--threshold", "local:51:0:bogus"], "--threshold must be local:BLOCK"),
    (["--smooth", "box:3"], "--smooth must be gaussian:SIGMA or median:SIZE"),
    (["--smooth", "median:x"], "--smooth must be gaussian:SIGMA or median:SIZE"),
    (["--background", "median:3"], "--background must be gaussian:SIGMA"),
    (["--method", "threshold", "--threshold", "multiotsu", "--classes", "1"], "--classes must be an integer of at least 2"),
    (["--method", "threshold", "--classes", "3"], "--classes goes with --method threshold and --threshold multiotsu"),
    (["--classes", "3", "--threshold", "multiotsu"], "--classes goes with --method threshold"),
    (["--threshold", "multiotsu"], "multiotsu gives a class map"),
])
def test_cli_bad_semantic_options(capsys, tmp_path, extra, match):
    path, _ = _store(tmp_path)
    assert main(["segment", str(path), str(tmp_path / "o.zarr"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not (tmp_path / "o.zarr").exists()


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.float64])
def test_semantic_mask_random_arrays(dtype):
    rng = np.random.default_rng(7)
    image = (rng.gamma(2.0, 300.0, size=(90, 110)) - 200).astype(dtype)
    for method in ("otsu", "li", "triangle"):
        t = getattr(skimage.filters, f"threshold_{method}")(image)
        for chunks in [(13, 29), 110]:
            got = chunkseg.segment(da.from_array(image, chunks=chunks), method="threshold",
                                   threshold=method).compute()
            if method == "li" and image.dtype.kind == "f":
                # Li on floats may differ from scikit-image by summation rounding only
                t_cs = chunkseg.threshold_li(image)
                np.testing.assert_array_equal(got, (image > t_cs).astype(np.uint8))
                assert abs(t_cs - t) <= 1e-9 * abs(t)
            else:
                np.testing.assert_array_equal(got, (image > t).astype(np.uint8))
