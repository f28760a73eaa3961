"""The per-block kernels alone (no dask): each against its whole-array twin.

A kernel sees one block; where the block is the whole image (no cuts), its
answer must be the library's own on that image, and its partials must add up
to the whole image's when the image is split by hand.
"""

import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.feature import peak_local_max
from skimage.measure import regionprops_table

from chunkseg._kernels import components, distance, histogram, regions, seeds

from .conftest import real_image


def _halves(a: np.ndarray, axis: int = 0):
    cut = a.shape[axis] // 3
    return np.split(a, [cut], axis=axis), cut


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_bincount_partials_add_up_to_the_whole_image(dtype):
    image = np.random.default_rng(3).integers(-50 if dtype == np.int16 else 0, 200,
                                              (61, 47)).astype(dtype)
    lo, n = int(image.min()), int(image.max()) - int(image.min()) + 1
    (a, b), _ = _halves(image)
    total = histogram.bincount(a, offset=lo, length=n) + histogram.bincount(b, offset=lo, length=n)
    np.testing.assert_array_equal(total, np.bincount(image.ravel().astype(np.int64) - lo))


def test_float64_histogram_bins_every_value_as_numpy_does():
    """The compiled float64 binning against numpy's: values on and a ulp off every edge,
    NaN and infinities (dropped), one value repeated (numpy widens the range by 0.5),
    one bin, and a range narrower than the values (as a block sees the global one)."""
    rng = np.random.default_rng(8)
    lo, hi = 0.0123, 0.4567
    _, edges = np.histogram(np.empty(0), bins=256, range=(lo, hi))
    on_edges = np.concatenate([edges, np.nextafter(edges, -1), np.nextafter(edges, 2)])
    values = np.concatenate([rng.gamma(2, 0.05, 20_000), on_edges, [np.nan, np.inf, -np.inf]])
    rng.shuffle(values)
    for nbins, low, high in [(256, lo, hi), (1, lo, hi), (7, 0.1, 0.2), (256, 0.25, 0.25)]:
        want, _ = np.histogram(values, bins=nbins, range=(low, high))
        got = histogram.histogram(values, nbins=nbins, low=low, high=high)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want)


def test_float_histogram_partials_equal_numpy_on_the_whole_image():
    image = np.random.default_rng(4).normal(size=(53, 40)).astype(np.float32)
    lo, hi = image.min(), image.max()
    (a, b), _ = _halves(image, axis=1)
    total = (histogram.histogram(a, nbins=64, low=lo, high=hi)
             + histogram.histogram(b, nbins=64, low=lo, high=hi))
    want, edges = np.histogram(image, bins=64, range=(lo, hi))
    np.testing.assert_array_equal(total, want)
    np.testing.assert_array_equal(histogram.histogram_centers(image.dtype, nbins=64, low=lo,
                                                              high=hi),
                                  (edges[:-1] + edges[1:]) / 2)


def test_unique_union_and_nonfinite():
    a = np.array([3.0, np.nan, 1.0, 3.0, np.inf])
    b = np.array([2.0, 1.0])
    np.testing.assert_array_equal(histogram.union(histogram.unique(a), histogram.unique(b)),
                                  [1.0, 2.0, 3.0])
    assert histogram.count_nonfinite(a)[0] == 2 and histogram.count_nonfinite(b)[0] == 0
    assert histogram.first_nonfinite(a.reshape(1, 5)) == (0, 1)
    assert histogram.first_nonfinite(b) is None


@pytest.mark.parametrize("connectivity", [1, 2])
def test_label_block_and_first_pixels_are_scipys(connectivity):
    mask = real_image("human-mitosis") > 40
    labels, n = components.label_block(mask, connectivity=connectivity)
    want, m = ndi.label(mask, structure=ndi.generate_binary_structure(2, connectivity))
    assert n == m
    np.testing.assert_array_equal(labels, want)
    first = components.first_pixels(labels, n, origin=(0, 0), image_shape=mask.shape)
    flat = want.ravel()
    np.testing.assert_array_equal(first, [np.flatnonzero(flat == k)[0] for k in range(1, n + 1)])


def test_merge_components_and_its_tree_form_agree():
    # face pairs (id_a, id_b) with the first pixel of each side; 1-2-3 one component, 7-8 another
    ids_a, ids_b = np.array([1, 2, 7]), np.array([2, 3, 8])
    first_a, first_b = np.array([10, 20, 70]), np.array([20, 5, 80])
    ids, keys = components.merge_components(ids_a, ids_b, first_a, first_b)
    np.testing.assert_array_equal(ids, [1, 2, 3, 7, 8])
    np.testing.assert_array_equal(keys, [5, 5, 5, 70, 70])
    # a union given back as pairs, merged with more pairs, is the union of all the pairs
    again = components.as_pairs(ids, keys)
    more = (np.array([8]), np.array([9]), np.array([80]), np.array([1]))
    merged = components.merge_components(*(np.concatenate([x, y]) for x, y in zip(again, more)))
    whole = components.merge_components(*(np.concatenate([x, y]) for x, y in
                                          zip((ids_a, ids_b, first_a, first_b), more)))
    np.testing.assert_array_equal(merged[0], whole[0])
    np.testing.assert_array_equal(merged[1], whole[1])
    assert components.as_pairs(np.empty(0, np.int64), np.empty(0, np.int64))[0].size == 0


@pytest.mark.parametrize("sampling", [None, (2.0, 0.5)])
def test_levels_are_scipys_distance_and_proven_without_cuts(sampling):
    mask = real_image("dsb2018") > 20
    lv = distance.levels(mask, sampling)
    want = ndi.distance_transform_edt(mask, sampling=sampling)
    np.testing.assert_array_equal(distance.distance_from_levels(lv, sampling), want)
    no_cuts = [(False, False)] * 2
    assert distance.proven(lv, no_cuts, sampling).all()
    # a cut on the right: pixels farther from it than from background stay proven
    cut = [(False, False), (False, True)]
    ok = distance.proven(lv, cut, sampling)
    assert ok[:, 0].all() and not ok.all()


def test_seed_block_on_the_whole_image_is_peak_local_max():
    mask = real_image("human-mitosis") > 40
    d = ndi.distance_transform_edt(mask)
    want = peak_local_max(d, min_distance=7, footprint=np.ones((3, 3)), exclude_border=False)
    want = np.sort(np.ravel_multi_index(tuple(want.T), mask.shape))
    core = tuple(slice(0, n) for n in mask.shape)
    got = seeds.seed_block(mask, start=(0, 0), image_shape=mask.shape, core=core,
                           min_distance=7, footprint=3)
    assert got.ok and got.undecided.size == 0
    np.testing.assert_array_equal(got.seeds, want)
    assert got.max_level == pytest.approx(float(d.max()) ** 2)


def test_seed_block_refuses_what_it_cannot_prove():
    mask = np.ones((40, 40), bool)
    mask[0, 0] = False
    core = (slice(10, 30), slice(10, 30))
    got = seeds.seed_block(mask, start=(100, 100), image_shape=(400, 400), core=core,
                           min_distance=3, footprint=3)
    assert not got.ok and got.seeds.size == 0


def test_region_partials_merge_to_regionprops():
    labels = ndi.label(real_image("human-mitosis") > 40)[0]
    image = real_image("human-mitosis")
    (la, lb), cut = _halves(labels)
    (ia, ib), _ = _halves(image)
    merged = regions.merge(regions.block_partial(la, ia, origin=(0, 0)),
                           regions.block_partial(lb, ib, origin=(cut, 0)))
    want = regionprops_table(labels, image, properties=("label", "area", "centroid", "bbox",
                                                        "intensity_mean", "intensity_max"))
    np.testing.assert_array_equal(merged["label"], want["label"])
    np.testing.assert_array_equal(merged["count"], want["area"])
    np.testing.assert_allclose(merged["coord_sum"][:, 0] / merged["count"], want["centroid-0"])
    np.testing.assert_array_equal(merged["bbox_min"][:, 1], want["bbox-1"])
    np.testing.assert_array_equal(merged["bbox_max"][:, 0], want["bbox-2"])
    np.testing.assert_allclose(merged["mean"], want["intensity_mean"])
    np.testing.assert_array_equal(merged["max"], want["intensity_max"])
    assert regions.merge(None, regions.empty_partial(2, True)) is None


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_region_intensities_same_in_either_channel_layout_and_as_numpy(dtype):
    """The compiled per-channel statistics read channels-first storage and contiguous
    channels-last blocks alike, and equal numpy's reductions per object; a NaN makes
    every statistic of its object NaN, as numpy's do."""
    rng = np.random.default_rng(7)
    labels = ndi.label(real_image("human-mitosis")[:200, :200] > 40)[0]
    first = rng.integers(-100 if dtype == np.int16 else 0, 200, (5,) + labels.shape)
    first = first.astype(dtype)
    if dtype == np.float32:
        first[2, labels == 3] = np.where(np.arange((labels == 3).sum()) == 4, np.nan, 1.0)
    views = (np.moveaxis(first, 0, -1), np.ascontiguousarray(np.moveaxis(first, 0, -1)))
    got = [regions.block_partial(labels, v, origin=(0, 0)) for v in views]
    for key in ("mean", "m2", "min", "max"):
        np.testing.assert_array_equal(got[0][key], got[1][key])
    for row, k in enumerate(got[0]["label"]):
        pixels = first[:, labels == k].astype(np.float64)
        np.testing.assert_array_equal(got[0]["min"][row], pixels.min(axis=1))
        np.testing.assert_array_equal(got[0]["max"][row], pixels.max(axis=1))
        np.testing.assert_allclose(got[0]["mean"][row], pixels.mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(got[0]["m2"][row], pixels.var(axis=1) * pixels.shape[1],
                                   rtol=1e-9, atol=1e-9)
    if dtype == np.float32:
        row = int(np.flatnonzero(got[0]["label"] == 3)[0])
        assert all(np.isnan(got[0][key][row, 2]) for key in ("mean", "m2", "min", "max"))


def _heap_flood(level, mask, order, labels, top, connectivity):
    """The flooding the kernel promises, written plainly: a heap of (max(priority, priority of
    the pixel popped), push count), markers pushed first in the given order."""
    import heapq

    from chunkseg._kernels import flood

    prio = top - level
    out = np.zeros(level.shape, np.int32)
    steps = [np.array(v) for v in np.ndindex(*(3,) * level.ndim)
             if 0 < sum(abs(np.array(v) - 1)) <= connectivity]
    padded = tuple(s + 2 for s in level.shape)
    raveled = flood.neighbour_offsets(padded, connectivity)
    strides = np.array([int(np.prod(padded[a + 1:])) for a in range(level.ndim)])
    by_offset = {int(np.dot(v - 1, strides)): v - 1 for v in steps}
    heap, count = [], 0
    for flat, lab in zip(order, labels):
        c = np.unravel_index(flat, level.shape)
        if mask[c]:
            out[c] = lab
            heapq.heappush(heap, (prio[c], count, c))
            count += 1
    while heap:
        p, _, c = heapq.heappop(heap)
        for o in raveled:  # the kernel's neighbour order
            n = tuple(np.asarray(c) + by_offset[int(o)])
            if any(i < 0 or i >= s for i, s in zip(n, level.shape)) or not mask[n] or out[n]:
                continue
            out[n] = out[c]
            heapq.heappush(heap, (max(prio[n], p), count, n))
            count += 1
    return out


def test_flood_pops_in_priority_then_age_order():
    """The bucket queue is exactly a (clamped priority, age) heap, ties and plateaus too."""
    from chunkseg._kernels import flood

    rng = np.random.default_rng(3)
    for trial in range(60):
        ndim = 2 if trial % 3 else 3
        shape = tuple(rng.integers(4, 24 if ndim == 2 else 9, ndim))
        top = int(rng.choice([1, 3, 12]))
        level = rng.integers(0, top + 1, shape)
        mask = rng.random(shape) < 0.85
        order = rng.choice(int(np.prod(shape)), int(rng.integers(2, 12)), replace=False)
        labels = rng.integers(1, 5, len(order)).astype(np.int32)
        conn = int(rng.integers(1, ndim + 1))
        np.testing.assert_array_equal(
            flood.flood(level, mask, order, labels, top=top, connectivity=conn),
            _heap_flood(level, mask, order, labels, top, conn))
