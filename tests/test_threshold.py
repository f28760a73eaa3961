import zlib

import dask.array as da
import numpy as np
import pytest
import skimage.filters

import chunkseg
from chunkseg.threshold import image_histogram

from .conftest import REAL_2D, REAL_3D, real_image

HIST_METHODS = ["otsu", "yen", "isodata", "triangle", "li"]
CHUNKINGS = [None, 37, (64, 100), (1000, 1000)]


def _sk(method, image, **kw):
    return getattr(skimage.filters, f"threshold_{method}")(image, **kw)


def _cs(method, image, **kw):
    return getattr(chunkseg, f"threshold_{method}")(image, **kw)


def _assert_same(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=got.dtype.kind == "f"), (got, want)


def _real_cases():
    for name in REAL_2D + REAL_3D:
        for method in HIST_METHODS + ["multiotsu", "mean"]:
            # multi-Otsu on a 16-bit histogram takes scikit-image about a minute
            wide = name in ("cells3d", "bbbc034", "bbbc022", "dsb2018", "stardist-3d")
            marks = [pytest.mark.slow] if method == "multiotsu" and wide else []
            yield pytest.param(name, method, marks=marks, id=f"{method}-{name}")


@pytest.mark.parametrize("name, method", _real_cases())
def test_real_images_bit_identical(name, method):
    image = real_image(name)
    want = _sk(method, image)
    for chunks in [37, 128]:
        got = _cs(method, da.from_array(image, chunks=chunks))
        if method in ("mean", "li") and image.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=1e-6)
        else:
            _assert_same(got, want)


def _random(dtype, shape, seed):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        # bimodal, like a fluorescence image
        a = np.concatenate([rng.normal(10, 3, 10**6), rng.normal(40, 8, 10**6)])
        return rng.choice(a, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -300), min(info.max, 700)
    a = np.concatenate([rng.integers(lo, (lo + hi) // 3, 10**5), rng.integers((lo + hi) // 2, hi, 10**5)])
    return rng.choice(a, size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(97, 131), (23, 41, 37)])
@pytest.mark.parametrize("method", HIST_METHODS + ["multiotsu", "minimum", "mean"])
def test_random_bit_identical_over_chunkings(dtype, shape, method):
    # a fixed seed per case (str hashes change from process to process)
    image = _random(dtype, shape, seed=zlib.crc32(f"{np.dtype(dtype).name}{shape}".encode()))
    try:
        want = _sk(method, image)
    except RuntimeError:
        with pytest.raises(ValueError, match="maxima"):
            _cs(method, da.from_array(image, chunks=17))
        return
    for chunks in [17, (50, 7, 9)[: len(shape)], shape]:
        got = _cs(method, da.from_array(image, chunks=chunks))
        if method in ("mean", "li") and np.dtype(dtype).kind == "f":
            rtol = 1e-6 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(got, want, rtol=rtol)
        else:
            _assert_same(got, want)
    # numpy input passes through too
    got = _cs(method, image)
    if not (method in ("mean", "li") and np.dtype(dtype).kind == "f"):
        _assert_same(got, want)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int8, np.int16])
@pytest.mark.parametrize("method", HIST_METHODS + ["minimum", "mean"])
def test_pending_threshold_equals_the_computed_one(dtype, method):
    """The threshold computed inside a task from the histogram: same value, same type,
    same error; a constant image too."""
    from chunkseg.threshold import pending_threshold

    for image in (_random(dtype, (97, 131), seed=7), np.full((20, 30), 7, dtype=dtype)):
        x = da.from_array(image, chunks=17)
        try:
            want = chunkseg.threshold(x, method)
        except ValueError as exc:
            with pytest.raises(ValueError, match=str(exc)):
                pending_threshold(x, method).compute()
            continue
        pending = pending_threshold(x, method)
        assert isinstance(pending, da.Array) and pending.shape == ()
        got = pending.compute()[()]
        assert type(got) is type(want)
        _assert_same(got, want)


def test_pending_threshold_only_where_one_histogram_decides():
    from chunkseg.threshold import pending_threshold

    assert pending_threshold(da.zeros((8, 8), dtype=np.float32, chunks=4), "otsu") is None
    assert pending_threshold(da.zeros((8, 8), dtype=np.int32, chunks=4), "otsu") is None
    assert pending_threshold(da.zeros((8, 8), dtype=np.uint8, chunks=4), "multiotsu") is None


def test_signed_wraparound_li_matches():
    # int8 from -128 to 127: scikit-image shifts in int8 and wraps; so do we
    image = np.random.default_rng(1).integers(-128, 128, (60, 60)).astype(np.int8)
    _assert_same(chunkseg.threshold_li(da.from_array(image, chunks=16)), skimage.filters.threshold_li(image))


@pytest.mark.parametrize("method", ["otsu", "yen", "isodata", "triangle", "li", "mean"])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_constant_image(method, dtype):
    image = np.full((20, 30), 7, dtype=dtype)
    try:
        want = _sk(method, image)
    except IndexError:  # scikit-image's isodata on a constant float image
        with pytest.raises(ValueError, match="finds no threshold"):
            _cs(method, da.from_array(image, chunks=8))
        return
    got = _cs(method, da.from_array(image, chunks=8))
    _assert_same(got, want)


def test_multiotsu_classes_and_nbins():
    image = real_image("human-mitosis")
    for classes in (2, 3, 4):
        _assert_same(
            chunkseg.threshold_multiotsu(da.from_array(image, chunks=100), classes=classes),
            skimage.filters.threshold_multiotsu(image, classes=classes),
        )
    f = image.astype(np.float32) / 7
    for nbins in (16, 100):
        _assert_same(
            chunkseg.threshold_otsu(da.from_array(f, chunks=100), nbins=nbins),
            skimage.filters.threshold_otsu(f, nbins=nbins),
        )


def test_histogram_path_agrees_with_image_path():
    image = real_image("dsb2018")
    counts, centers = image_histogram(da.from_array(image, chunks=100))
    want_counts, want_centers = skimage.exposure.histogram(image)
    _assert_same(counts, want_counts)
    _assert_same(centers, want_centers)
    _assert_same(chunkseg.threshold_otsu(hist=(counts, centers)), chunkseg.threshold_otsu(image))


def test_multiotsu_too_few_values_raises():
    image = np.array([[0, 0, 5, 5]] * 4, dtype=np.uint8)
    with pytest.raises(ValueError, match="cannot be thresholded"):
        chunkseg.threshold_multiotsu(da.from_array(image, chunks=2), classes=3)


def test_threshold_dispatch_and_unknown_method():
    image = real_image("bbbc038")
    _assert_same(chunkseg.threshold(image, "yen"), skimage.filters.threshold_yen(image))
    with pytest.raises(ValueError, match="unknown threshold method 'otsuu'"):
        chunkseg.threshold(image, "otsuu")


def test_nan_is_refused_with_location():
    image = np.ones((50, 60), dtype=np.float32)
    image[10:12, 30] = np.nan
    image[44, 2] = np.inf
    with pytest.raises(ValueError, match=r"3 NaN or infinite values \(first at index \(10, 30\)\)"):
        chunkseg.threshold_otsu(da.from_array(image, chunks=(7, 9)))


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((0, 5)), "empty"),
        (np.zeros((4, 4), dtype=complex), "complex"),
        (np.zeros((4, 4), dtype=bool), "boolean"),
        (np.array([["a"]]), "not numeric"),
    ],
)
def test_bad_images_are_refused(image, match):
    with pytest.raises(ValueError, match=match):
        chunkseg.threshold_otsu(image)


@pytest.mark.parametrize("method, param", [("gaussian", None), ("gaussian", 2.5), ("mean", None), ("median", None)])
@pytest.mark.parametrize("mode", ["reflect", "constant", "nearest", "mirror", "wrap"])
def test_threshold_local_equals_skimage(method, param, mode):
    image = real_image("human-mitosis")[:200, :230]
    want = skimage.filters.threshold_local(image, 15, method, offset=3, mode=mode, param=param)
    # chunks of 7, thinner than the halo, are merged first: that path once per method
    for chunks in [(64, 50), 7, 200] if mode == "reflect" else [(64, 50), (37, 61)]:
        got = chunkseg.threshold_local(
            da.from_array(image, chunks=chunks), 15, method, offset=3, mode=mode, param=param
        ).compute()
        assert got.dtype == want.dtype
        if method == "mean":  # scipy's running sum rounds by position in the line
            np.testing.assert_allclose(got, want, rtol=1e-12)
        else:
            _assert_same(got, want)


def test_threshold_local_3d():
    image = real_image("idr853-3d")[:40]
    want = skimage.filters.threshold_local(image, (5, 7, 7), "mean")
    got = chunkseg.threshold_local(da.from_array(image, chunks=(11, 30, 40)), (5, 7, 7), "mean")
    np.testing.assert_allclose(got.compute(), want, rtol=1e-6)
    want = skimage.filters.threshold_local(image, (5, 7, 7), "gaussian")
    got = chunkseg.threshold_local(da.from_array(image, chunks=(11, 30, 40)), (5, 7, 7))
    _assert_same(got.compute(), want)


@pytest.mark.parametrize("chunks", [7, 3, (12, (2, 6, 6, 3), (9, 9, 5))])
def test_threshold_local_3d_thin_last_chunks(chunks):
    """Chunks thinner than the halo are merged with their neighbours, whatever the grid."""
    image = np.random.default_rng(5).random((12, 17, 23))
    want = skimage.filters.threshold_local(image, 11, "gaussian")
    got = chunkseg.threshold_local(da.from_array(image, chunks=chunks), 11, "gaussian")
    _assert_same(got.compute(), want)


def test_threshold_local_even_block_raises():
    with pytest.raises(ValueError, match="block_size must be odd"):
        chunkseg.threshold_local(np.zeros((10, 10)), 4)
