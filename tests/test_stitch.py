import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.morphology import remove_small_objects as sk_remove_small_objects
from skimage.segmentation import clear_border as sk_clear_border
from skimage.segmentation import relabel_sequential as sk_relabel_sequential

import chunkseg
from chunkseg.stitch import label, label_with_count

from .conftest import REAL_2D, REAL_3D, real_image


def _scipy_label(mask, connectivity):
    return ndi.label(mask, ndi.generate_binary_structure(mask.ndim, connectivity))[0]


def _near_percolation(shape, seed):
    # random masks near the percolation threshold: long winding components
    rng = np.random.default_rng(seed)
    p = 0.59 if len(shape) == 2 else 0.31
    return rng.random(shape) < p


@pytest.mark.parametrize("shape, chunkings", [
    ((240, 330), [(37, 50), 64, (240, 330), (1, 330), (240, 7)]),
    ((24, 40, 50), [(7, 11, 13), 16, (24, 40, 50)]),
])
def test_identical_to_scipy_label_on_percolating_masks(shape, chunkings):
    for seed in (0, 1):
        mask = _near_percolation(shape, seed)
        for connectivity in range(1, len(shape) + 1):
            want = _scipy_label(mask, connectivity)
            for chunks in chunkings:
                got = label(da.from_array(mask, chunks=chunks), connectivity=connectivity).compute()
                np.testing.assert_array_equal(got, want, err_msg=f"{chunks} conn {connectivity}")


@pytest.mark.parametrize("name", REAL_2D + REAL_3D)
def test_identical_on_real_masks(name):
    image = real_image(name)
    mask = image > chunkseg.threshold_otsu(image)
    want = _scipy_label(mask, image.ndim)
    chunks = 45 if image.ndim == 2 else 17
    got = label(da.from_array(mask, chunks=chunks), connectivity=image.ndim).compute()
    np.testing.assert_array_equal(got, want)


def test_empty_full_and_single_chunk():
    empty = np.zeros((50, 60), bool)
    assert label(da.from_array(empty, chunks=16)).compute().max() == 0
    full = np.ones((50, 60), bool)
    np.testing.assert_array_equal(label(da.from_array(full, chunks=16)).compute(), np.ones((50, 60)))
    mask = _near_percolation((50, 60), 3)
    mask[:, 20:40] = False  # empty chunks in the middle
    np.testing.assert_array_equal(label(da.from_array(mask, chunks=20)).compute(), _scipy_label(mask, 1))


def test_count_and_dtype_and_large_raw_offset():
    mask = _near_percolation((120, 130), 5)
    want = _scipy_label(mask, 1)
    labels, count = label_with_count(da.from_array(mask, chunks=40))
    assert labels.dtype == np.uint32
    assert count.compute() == want.max()
    # raw (pre-merge) ids beyond 2**32 go through the same offset, pairing
    # and remap logic in uint64 and still give scipy's ids
    big = label(da.from_array(mask, chunks=40), _raw_offset=2**40).compute()
    np.testing.assert_array_equal(big, want)
    from chunkseg.stitch import _out_dtype, max_components

    assert max_components((65536, 65536)) < 2**32
    assert _out_dtype((65536, 65536)) == np.uint32
    assert _out_dtype((2**17, 2**17)) == np.uint64


def test_connectivity_validated():
    with pytest.raises(ValueError, match=r"`connectivity` must be an integer in 1\.\.2, got 3"):
        label(np.ones((4, 4), bool), connectivity=3)


def _labels(seed=0, shape=(200, 300)):
    return _scipy_label(_near_percolation(shape, seed), 1).astype(np.uint32)


def test_remove_small_objects_by_global_size():
    lab = _labels()
    x = da.from_array(lab, chunks=(37, 64))
    for min_size in (0, 2, 5, 40):
        want = sk_relabel_sequential(sk_remove_small_objects(lab, max_size=max(min_size - 1, 0)))[0] \
            if min_size else lab
        np.testing.assert_array_equal(chunkseg.remove_small_objects(x, min_size).compute(), want)
    # an object spanning many chunks survives although each piece is small
    snake = np.zeros((40, 200), np.uint32)
    snake[5, 3:197] = 1
    got = chunkseg.remove_small_objects(da.from_array(snake, chunks=10), 150).compute()
    np.testing.assert_array_equal(got, snake)


def test_clear_border_globally():
    lab = _labels(1)
    got = chunkseg.clear_border(da.from_array(lab, chunks=(37, 64))).compute()
    np.testing.assert_array_equal(got, sk_relabel_sequential(sk_clear_border(lab))[0])
    lab3 = _scipy_label(_near_percolation((20, 30, 40), 2), 1).astype(np.uint32)
    got = chunkseg.clear_border(da.from_array(lab3, chunks=9)).compute()
    np.testing.assert_array_equal(got, sk_relabel_sequential(sk_clear_border(lab3))[0])


def test_renumber_orders_by_first_pixel():
    lab = _labels(2)
    n = int(lab.max())
    rng = np.random.default_rng(0)
    scramble = np.concatenate([[0], rng.permutation(n) * 11 + 5]).astype(np.uint64)
    got = chunkseg.renumber(da.from_array(scramble[lab], chunks=(50, 70))).compute()
    np.testing.assert_array_equal(got, lab)
    assert got.dtype == np.uint32


@pytest.mark.parametrize("chunks", [(50, 70), 23, 1000])
def test_relabel_sequential_equals_skimage(chunks):
    lab = _labels(2)
    rng = np.random.default_rng(1)
    scramble = np.concatenate([[0], rng.permutation(int(lab.max())) * 11 + 5]).astype(np.int64)
    image = scramble[lab]
    want, want_fw, want_inv = sk_relabel_sequential(image)
    got, fw, inv = chunkseg.relabel_sequential(da.from_array(image, chunks=chunks))
    np.testing.assert_array_equal(got.compute(), want)
    np.testing.assert_array_equal(fw.in_values, want_fw.in_values)
    np.testing.assert_array_equal(fw.out_values, want_fw.out_values)
    np.testing.assert_array_equal(inv.out_values, want_inv.out_values)


@pytest.mark.parametrize("func", [chunkseg.relabel_sequential, chunkseg.renumber,
                                  chunkseg.clear_border,
                                  lambda x: chunkseg.remove_small_objects(x, 2)])
@pytest.mark.parametrize("chunks", [1, 2, 3])
def test_negative_labels_are_refused_at_every_chunking(func, chunks):
    image = np.array([[0, -3, 2], [1, 1, 0], [4, 0, 4]], dtype=np.int32)
    with pytest.raises(chunkseg.InputError, match=r"`labels` has negative values \(the smallest is -3\)"):
        func(da.from_array(image, chunks=chunks))


def test_segment_method_label_equals_scipy():
    image = real_image("human-mitosis")
    t = chunkseg.threshold_otsu(image)
    got = chunkseg.segment(da.from_array(image, chunks=100), method="label").compute()
    np.testing.assert_array_equal(got, _scipy_label(image > t, 1))
