
import dataclasses
import sys
import dask
import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi

import chunkseg
from chunkseg.datasets import synthetic_nuclei
from chunkseg.segment import label_dtype

from ._reference import f1_at_iou, reference
from .conftest import real_image

SEGMENT_MODULE = sys.modules["chunkseg.segment"]  # the function chunkseg.segment hides it

# (image, min_distance, sampling, chunkings): chunkings include uneven ones and
# ones smaller than the halo
REAL_CASES = [
    ("dsb2018", 5, None, [512, 37, (200, 77)]),
    ("s-biad634", 7, None, [128, (300, 41)]),
    ("human-mitosis", 7, None, [100, 33]),
    ("bbbc034", 10, None, [256, (300, 170)]),
    ("bbbc038", 5, None, [50]),
    ("bbbc022", 8, None, [128, 60]),
    ("cells3d", 8, None, [64, 29]),
    ("idr853-3d", 4, None, [(40, 50, 47), 23]),
    ("idr853-3d", 4, (2.0, 1.0, 1.0), [(31, 43, 50)]),
    ("stardist-3d", 4, None, [(16, 30, 29), 11]),
]


def _check_against_reference(image, labels, min_distance, sampling, seeds=None):
    mask, flat, ref = reference(image, min_distance=min_distance, sampling=sampling)
    if seeds is not None:
        np.testing.assert_array_equal(seeds.flat, flat)  # identical seeds, raster ids
    fg = mask.sum()
    agree = np.count_nonzero((labels == ref) & mask) / fg
    assert agree >= 0.998, f"only {agree:.5f} of foreground pixels carry the reference label"
    assert f1_at_iou(labels, ref) >= 0.995
    assert np.array_equal(labels > 0, ref > 0)


@pytest.mark.parametrize("name, md, sampling, chunkings", REAL_CASES,
                         ids=[f"{c[0]}-md{c[1]}{'-aniso' if c[2] else ''}" for c in REAL_CASES])
def test_real_images_equal_whole_image_pipeline(name, md, sampling, chunkings):
    image = real_image(name)
    first = None
    # the watershed pass takes pass 1's distances (kept) or computes its own: both,
    # the first chunking twice
    runs = [(chunkings[0], True), (chunkings[0], False)] + \
        [(c, bool(i % 2)) for i, c in enumerate(chunkings[1:])]
    for chunks, keep in runs:
        x = da.from_array(image, chunks=chunks)
        mask, _ = chunkseg.foreground(x)
        seeds = chunkseg.find_seeds(mask, min_distance=md, sampling=sampling, keep_distances=keep)
        assert (seeds.distances is not None) == keep
        labels = chunkseg.watershed(mask, seeds, sampling=sampling, min_distance=md).compute()
        if first is None:
            _check_against_reference(image, labels, md, sampling, seeds)
            first = labels
        else:  # bit-identical at every chunking, either way
            np.testing.assert_array_equal(labels, first)


@pytest.mark.parametrize("shape, chunkings, md", [
    ((600, 700), [(128, 128), (100, 333), 45], 7),
    ((48, 90, 100), [(24, 45, 50), (17, 31, 40)], 5),
])
def test_synthetic_touching_nuclei_across_edges_and_corners(shape, chunkings, md):
    radius = (6, 12) if len(shape) == 2 else (5, 9)
    image = synthetic_nuclei(shape, seed=11, radius=radius, density=0.45)
    first = None
    for chunks in chunkings:
        labels = chunkseg.segment(da.from_array(image, chunks=chunks), min_distance=md).compute()
        if first is None:
            _check_against_reference(image, labels, md, None)
            first = labels
        else:
            np.testing.assert_array_equal(labels, first)
    # objects really do cross chunk edges and corners here
    grid = np.zeros(shape, dtype=bool)
    for axis, c in enumerate(chunkings[0]):
        sl = [slice(None)] * len(shape)
        sl[axis] = slice(c, None, c)
        grid[tuple(sl)] = True
    crossing = np.unique(first[grid & (first > 0)])
    assert len(crossing) > 20


@pytest.mark.parametrize("sampling", [None, (2.0, 1.0, 1.0)])
def test_kept_levels_are_the_whole_image_distance(sampling):
    image = synthetic_nuclei((40, 90, 100), seed=3, radius=(5, 9), density=0.45)
    mask, _ = chunkseg.foreground(da.from_array(image, chunks=(17, 31, 40)))
    seeds = chunkseg.find_seeds(mask, min_distance=5, sampling=sampling)  # auto: small, kept
    expected = ndi.distance_transform_edt(mask.compute(), sampling=sampling)
    levels = seeds.distances.compute()
    distance = np.sqrt(levels.astype(np.float64)) if sampling is None else levels
    np.testing.assert_array_equal(distance, expected)


def _kept_levels_are_exact(image, dtype):
    """Seeds that keep the levels of ``image > 100`` in ``dtype``: the levels are the
    squared distances, and the watershed on them equals the one that recomputes them."""
    mask, _ = chunkseg.foreground(da.from_array(image, chunks=128), 100)
    kept = chunkseg.find_seeds(mask, min_distance=5, keep_distances=True)
    assert kept.held.dtype == dtype
    levels = kept.distances.compute()
    np.testing.assert_array_equal(np.sqrt(levels.astype(np.float64)),
                                  ndi.distance_transform_edt(image > 100))
    a = chunkseg.watershed(mask, kept, min_distance=5).compute()
    b = chunkseg.watershed(mask, chunkseg.find_seeds(mask, min_distance=5, keep_distances=False),
                           min_distance=5).compute()
    np.testing.assert_array_equal(a, b)
    assert a.max() == kept.count >= 3
    return kept


@pytest.mark.parametrize("radius, dtype", [(12, np.uint8), (40, np.uint16)])
def test_kept_levels_take_the_fewest_bytes_that_hold_them(radius, dtype):
    """Distances below 16 px (most nuclei) are kept as one byte a pixel, below 256 px as
    two."""
    rng = np.random.default_rng(radius)
    yy, xx = np.mgrid[:300, :340]
    image = np.zeros((300, 340), np.uint8)
    for cy, cx in rng.integers(radius, (300 - radius, 340 - radius), size=(6, 2)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2] = 200
    kept = _kept_levels_are_exact(image, dtype)
    assert (kept.max_distance < 16) == (dtype == np.uint8) and kept.max_distance < 256


def test_kept_levels_beyond_uint16_distances():
    """Distances over 256 px: levels no longer fit uint16 (halos move as float32);
    kept or recomputed, the labels are the same."""
    yy, xx = np.mgrid[:700, :760]
    image = ((yy - 350) ** 2 + (xx - 380) ** 2 < 290**2).astype(np.uint8) * 200
    image[5:25, 5:40] = 200  # and two small objects
    image[680:695, 700:750] = 200
    assert _kept_levels_are_exact(image, np.float32).max_distance > 256


def test_kept_levels_follow_the_memory_budget_and_the_mask(monkeypatch):
    image = synthetic_nuclei((300, 400), seed=5)
    mask, _ = chunkseg.foreground(da.from_array(image, chunks=90))
    monkeypatch.setattr(SEGMENT_MODULE, "distances_budget", lambda: 300 * 400 * 4 - 1)
    assert chunkseg.find_seeds(mask, min_distance=6).distances is None
    monkeypatch.setattr(SEGMENT_MODULE, "distances_budget", lambda: 300 * 400 * 4)
    seeds = chunkseg.find_seeds(mask, min_distance=6)
    assert seeds.distances is not None
    # another mask (a different graph) never takes these levels: its own distance is used
    other = da.from_array(image, chunks=90) > 200
    labels = chunkseg.watershed(other, seeds, min_distance=6).compute()
    assert not np.any(labels[~other.compute()])


def test_labels_are_1_to_n_sequential_and_uint32():
    image = synthetic_nuclei((300, 400), seed=5)
    labels = chunkseg.segment(da.from_array(image, chunks=90), min_distance=6)
    assert labels.dtype == np.uint32
    out = labels.compute()
    ids = np.unique(out)
    np.testing.assert_array_equal(ids, np.arange(0, ids[-1] + 1))
    # raster order of seeds: the first pixel in raster order of each object
    # need not be the seed, but seeds are numbered in raster order
    seeds = chunkseg.find_seeds(chunkseg.foreground(da.from_array(image, chunks=90))[0], min_distance=6)
    assert np.all(np.diff(seeds.flat) > 0)
    np.testing.assert_array_equal(out.flat[seeds.flat], np.arange(1, seeds.count + 1))


def test_label_dtype_grows_beyond_uint32():
    assert label_dtype(2**32 - 1) == np.uint32
    assert label_dtype(2**32) == np.uint64


def test_deterministic_across_schedulers_threads_and_sync():
    image = synthetic_nuclei((256, 300), seed=9)
    x = da.from_array(image, chunks=64)
    with dask.config.set(scheduler="sync"):
        a = chunkseg.segment(x, min_distance=6).compute()
    with dask.config.set(scheduler="threads", num_workers=4):
        b = chunkseg.segment(x, min_distance=6).compute()
    np.testing.assert_array_equal(a, b)


def test_distance_transform_edt_equals_scipy():
    mask = real_image("dsb2018") > 40
    want = ndi.distance_transform_edt(mask)
    got = chunkseg.distance_transform_edt(da.from_array(mask, chunks=(100, 77)), halo=40).compute()
    np.testing.assert_array_equal(got, want)
    image3 = real_image("idr853-3d")
    mask3 = image3 > chunkseg.threshold_otsu(image3)
    want = ndi.distance_transform_edt(mask3, sampling=(2, 1, 1))
    got = chunkseg.distance_transform_edt(da.from_array(mask3, chunks=30), sampling=(2, 1, 1), halo=20)
    np.testing.assert_allclose(got.compute(), want, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"chunk \(\d+, \d+\): distances reach beyond the halo"):
        chunkseg.distance_transform_edt(da.from_array(mask, chunks=64), halo=2).compute()


def test_halo_too_small_is_reported_with_chunk_and_advice():
    image = synthetic_nuclei((256, 256), seed=2, radius=(14, 20), density=0.5)
    x = da.from_array(image, chunks=64)
    with pytest.raises(ValueError, match=r"seeds of chunks? \(\d+, \d+\).*halo of 3 px.*a `halo` of 6"):
        chunkseg.segment(x, min_distance=5, halo=3)
    mask, _ = chunkseg.foreground(x)
    seeds = chunkseg.find_seeds(mask, min_distance=5)
    with pytest.raises(ValueError, match=r"chunk \(\d+, \d+\): the watershed could not be proven with a halo of 8 px"):
        chunkseg.watershed(mask, seeds, halo=4, min_distance=5).compute()


def test_no_foreground_gives_empty_labels_and_a_warning():
    image = np.zeros((100, 120), dtype=np.uint8)
    image[5, 5] = 9
    with pytest.warns(UserWarning, match="no foreground"):
        labels = chunkseg.segment(da.from_array(image, chunks=50), threshold=200)
    assert labels.compute().max() == 0


def test_threshold_forms():
    image = synthetic_nuclei((200, 200), seed=4)
    x = da.from_array(image, chunks=64)
    by_name = chunkseg.segment(x, threshold="otsu", min_distance=6).compute()
    t = chunkseg.threshold_otsu(x)
    np.testing.assert_array_equal(chunkseg.segment(x, threshold=t, min_distance=6).compute(), by_name)
    np.testing.assert_array_equal(
        chunkseg.segment(x, threshold=chunkseg.threshold_otsu, min_distance=6).compute(), by_name)
    _, _, ref = reference(image, min_distance=6, threshold=chunkseg.threshold_li(x))
    got = chunkseg.segment(x, threshold="li", min_distance=6).compute()
    assert f1_at_iou(got, ref) >= 0.995


def test_smooth_equals_scipy_gaussian_then_pipeline():
    image = real_image("human-mitosis")
    smoothed = ndi.gaussian_filter(image.astype(np.float64), 1.5, mode="nearest")
    got_mask, t = chunkseg.foreground(da.from_array(image, chunks=70), smooth=1.5)
    assert t == chunkseg.threshold_otsu(smoothed)
    np.testing.assert_array_equal(got_mask.compute(), smoothed > t)


@pytest.mark.parametrize("kwargs, match", [
    ({"min_distance": 0}, "`min_distance` must be a positive integer"),
    ({"footprint": -1}, "`footprint` must be a positive integer"),
    ({"threshold": "otsuu"}, "unknown `threshold` method 'otsuu'"),
    ({"threshold": float("nan")}, "`threshold` must be finite"),
    ({"method": "cellpose"}, "unknown `method` 'cellpose'"),
    ({"sampling": (0, 1)}, "`sampling` must be positive"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        chunkseg.segment(da.from_array(synthetic_nuclei((64, 64)), chunks=32), **kwargs)


def test_nan_image_refused_before_work():
    image = np.ones((40, 40), np.float32)
    image[7, 9] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN or infinite value \(first at index \(7, 9\)\)"):
        chunkseg.segment(image)


def test_seeds_settled_globally_match_on_dense_plateaus():
    # bbbc034's noisy mask has ~124k candidates; small chunks leave thousands
    # undecided near cuts, which the global step must settle exactly
    image = real_image("bbbc034")
    mask, flat, _ = reference(image, min_distance=10)
    seeds = chunkseg.find_seeds(da.from_array(mask, chunks=100), min_distance=10)
    assert seeds.undecided > 1000
    np.testing.assert_array_equal(seeds.flat, flat)


@pytest.mark.parametrize("bands", [None, 1, 2, 3])
def test_padded_blocks_are_the_same_with_faces_or_whole_neighbours(bands):
    from chunkseg import _graph

    rng = np.random.default_rng(3)
    x = da.from_array(rng.integers(0, 255, (50, 61, 17), dtype=np.uint8), chunks=(11, 20, 9))
    graph = _graph.Graph("t", x)
    halo = (7, 25, 4)
    keys = {}
    for idx in np.ndindex(*x.numblocks):
        keys[idx] = _graph.padded_task(graph, "p", x, idx, halo, lambda b, **kw: (b, kw["start"]),
                                       bands=bands)
    out = graph.compute(list(keys.values()))
    data = x.compute()
    origins = _graph.block_origins(x.chunks)
    for (block, start), idx in zip(out, keys):
        region = tuple(slice(max(int(o[i]) - h, 0), min(int(o[i]) + c[i] + h, n))
                       for o, c, i, h, n in zip(origins, x.chunks, idx, halo, x.shape))
        assert tuple(start) == tuple(r.start for r in region)
        np.testing.assert_array_equal(block, data[region])
    faces = [k for k in graph.dsk if k[0].endswith("-faces")]
    if bands == 1:
        assert not faces  # one memory: neighbours are used whole
    elif bands is None:
        assert faces


def test_a_persisted_array_of_a_hand_built_graph_is_not_recomputed_through_a_sibling():
    """Two arrays of one Graph, one made from the other (the restricted image from the
    tissue mask): after persisting the first, a computation that also takes the second
    runs none of the first's tasks again, whatever the order its layers merge in."""
    import dask

    from chunkseg import _graph

    calls = []

    def made(block, mask):
        calls.append(1)
        return np.where(mask, block, 7)

    x = da.zeros((4, 6), dtype=np.uint8, chunks=(2, 3))
    graph = _graph.Graph("t", x)
    for idx in np.ndindex(*x.numblocks):
        mask = graph.task("mask", idx, np.full, shape=(2, 3), fill_value=idx[0] == 0, dtype=bool)
        graph.task("made", idx, made, (x.name, *idx), mask)
    kept, mask = graph.array("made", x.chunks, x.dtype), graph.array("mask", x.chunks, bool)
    (kept,) = dask.persist(kept, scheduler="sync")
    assert len(calls) == 4
    summed = np.repeat([1, 7], 2)[:, None] * np.ones(6, np.uint8)  # top rows: 0 + True
    for both in (kept + mask, mask + kept, da.stack([mask, kept]).sum(0)):
        # every layer's definition of a kept block is its value: none is a task any more
        for layer in both.__dask_graph__().layers.values():
            assert all(isinstance(layer[k], np.ndarray) for k in kept.__dask_keys__()[1]
                       if k in layer)
        np.testing.assert_array_equal(both.compute(scheduler="sync"), summed)
    assert len(calls) == 4


@pytest.mark.parametrize("grid,parts", [((8, 8), 2), ((5, 3), 4), ((1, 7), 3), ((3, 4, 5), 7), ((2,), 5)])
def test_bands_are_contiguous_and_even(grid, parts):
    from chunkseg import _graph

    bands = [_graph.band(idx, grid, parts) for idx in np.ndindex(*grid)]  # raster order
    assert bands == sorted(bands)  # contiguous in raster order
    sizes = np.bincount(bands, minlength=parts)
    n = int(np.prod(grid))
    assert sizes.max() - sizes[sizes > 0].min() <= 1 and sizes.sum() == n
    assert (sizes > 0).sum() == min(parts, n)


@pytest.mark.parametrize("radius, rounds, halo", [(10, 0, 16), (24, 0, 32), (45, 1, 64)])
def test_a_larger_seed_halo_is_tried_in_the_same_task(caplog, radius, rounds, halo):
    """The first seed halo is 16 px; a chunk it cannot prove is tried again with
    twice it inside its own task (one round through the client, not two), and only
    wider objects take another round. Seeds equal peak_local_max's throughout."""
    import logging

    rng = np.random.default_rng(radius)
    yy, xx = np.mgrid[:320, :384]
    image = np.zeros((320, 384), np.uint8)
    for cy, cx in rng.integers(radius, (320 - radius, 384 - radius), (6, 2)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = 200
    mask, flat, _ = reference(image, min_distance=5, threshold=100)
    with caplog.at_level(logging.INFO, logger="chunkseg.segment"):
        seeds = chunkseg.find_seeds(da.from_array(mask, chunks=64), min_distance=5)
    np.testing.assert_array_equal(seeds.flat, flat)
    assert caplog.text.count("retrying") == rounds
    assert seeds.halo == (halo, halo)


def test_watershed_tasks_share_one_seed_table():
    """The seeds are one key of the graph (scattered once on a cluster), each task
    finds its own in it: the graph's size does not grow with the seeds."""
    import pickle

    image = synthetic_nuclei((400, 400), seed=6)
    mask, _ = chunkseg.foreground(da.from_array(image, chunks=100))
    seeds = chunkseg.find_seeds(mask, min_distance=6, keep_distances=False)
    labels = chunkseg.watershed(mask, seeds, min_distance=6)
    graph = dict(labels.__dask_graph__())
    tables = [k for k, v in graph.items() if isinstance(v, np.ndarray) and v.dtype == np.int64
              and len(v) == seeds.count]
    assert len(tables) == 1 and seeds.count > 100
    np.testing.assert_array_equal(graph[tables[0]], seeds.flat)
    rest = {k: v for k, v in graph.items() if k != tables[0]}
    few = dataclasses.replace(seeds, flat=seeds.flat[:3])
    fewer = dict(chunkseg.watershed(mask, few, min_distance=6).__dask_graph__())
    assert abs(len(pickle.dumps(rest)) - len(pickle.dumps(fewer))) < 8 * seeds.count
    with dask.config.set(scheduler="sync"):
        _, _, want = reference(image, min_distance=6)
    assert f1_at_iou(labels.compute(), want) == 1.0


def test_image_read_once_for_the_threshold_and_seeds_where_it_fits(tmp_path, monkeypatch):
    """An Otsu run reads each chunk once when the image (and the distances) fit the
    budget: the threshold's histogram and the seeds use the kept image; past the budget
    each of the two passes (uint8: no range pass) reads it. The same labels either way."""
    import zarr

    import importlib

    seg = importlib.import_module("chunkseg.segment")
    from chunkseg.io import readers
    from chunkseg.run import run_segment

    image = synthetic_nuclei((256, 384), seed=6)
    src = tmp_path / "in.zarr"
    zarr.create_array(str(src), data=image, chunks=(128, 128))
    want = np.asarray(chunkseg.segment(da.from_array(image, chunks=(128, 128)), min_distance=5))
    original = readers._ZarrChunks.__getitem__
    reads = []

    def counting(self, key):
        reads.append(tuple((k.start, k.stop) for k in key))
        return original(self, key)

    monkeypatch.setattr(readers._ZarrChunks, "__getitem__", counting)
    counts = {}
    for fits in (True, False):
        if not fits:
            monkeypatch.setattr(seg, "distances_budget", lambda: image.size * 4)
        reads.clear()
        out = tmp_path / f"labels_{fits}.zarr"
        run_segment(src, out, min_distance=5, scheduler="threads", workers=2, report=False)
        np.testing.assert_array_equal(zarr.open_array(str(out / "0"), mode="r")[:], want)
        counts[fits] = len(reads)
        assert len(set(reads)) == 6
    probes = counts[True] - 6  # the run's checks of the first and last chunk when it opens
    assert 0 <= probes <= 2
    assert counts[False] == 2 * 6 + probes


def test_a_3d_watershed_grows_its_blocks_from_small_storage_chunks(tmp_path):
    """Without ``chunks``, a 3D watershed run processes (and writes) blocks grown from the
    storage chunks while the image keeps 8 of them (chunkseg.run.auto_blocks): the labels
    are those of the storage chunks; a 2D run, a label run and given chunks keep theirs."""
    import zarr

    from chunkseg.run import auto_blocks, run_segment

    assert auto_blocks((512,) * 3, (128,) * 3) == (256,) * 3
    assert auto_blocks((256,) * 3, (128,) * 3) == (128,) * 3  # 8 blocks already
    assert auto_blocks((200, 2048, 2048), (16, 512, 512)) == (64, 512, 512)
    assert auto_blocks((100, 4096, 4096), (1, 1024, 1024)) == (16, 1024, 1024)  # 256^3 voxels
    image = synthetic_nuclei((48, 64, 64), seed=4, radius=(4.0, 7.0))
    src = tmp_path / "stack.zarr"
    zarr.create_array(str(src), data=image, chunks=(12, 16, 16))
    want = np.asarray(chunkseg.segment(da.from_array(image, chunks=(12, 16, 16)),
                                       min_distance=3))
    report = run_segment(src, tmp_path / "auto.zarr", min_distance=3, report=False)
    assert report.chunks == (24, 32, 32) and report.params["chunks"] == [24, 32, 32]
    out = zarr.open_array(str(tmp_path / "auto.zarr" / "0"), mode="r")
    assert out.chunks == (24, 32, 32)
    np.testing.assert_array_equal(out[:], want)
    given = run_segment(src, tmp_path / "given.zarr", min_distance=3, chunks=(12, 16, 16),
                        report=False)
    label = run_segment(src, tmp_path / "label.zarr", method="label", report=False)
    assert given.chunks == label.chunks == (12, 16, 16)


def test_spacing_auto_segments_in_the_images_physical_distances(tmp_path, capsys):
    """``spacing="auto"`` (``--spacing auto``) takes an anisotropic OME-TIFF's physical
    sizes: the labels of ``sampling=(2, 0.5, 0.5)``, recorded in the report. Without it
    the run segments isotropic voxels and says once that the metadata's spacing was not
    used; on an image without physical sizes, auto says so and uses 1."""
    import warnings

    import tifffile

    from chunkseg.cli import main
    from chunkseg.run import run_segment

    image = synthetic_nuclei((32, 96, 96), seed=2, radius=(4.0, 8.0))
    src = tmp_path / "stack.ome.tif"
    tifffile.imwrite(src, image, metadata={"axes": "ZYX", "PhysicalSizeZ": 2.0,
                                           "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.5})
    x = da.from_array(image, chunks=(16, 48, 48))
    physical = np.asarray(chunkseg.segment(x, min_distance=3, sampling=(2.0, 0.5, 0.5)))
    isotropic = np.asarray(chunkseg.segment(x, min_distance=3))
    assert not np.array_equal(physical, isotropic)

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        report = run_segment(src, tmp_path / "auto.zarr", spacing="auto", min_distance=3,
                             chunks=(16, 48, 48), report=False)
    np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "auto.zarr").compute(),
                                  physical)
    assert report.params["spacing"] == [2.0, 0.5, 0.5] and not report.warnings

    with pytest.warns(UserWarning, match=r"spacing of 2,0.5,0.5 micrometer \(Z,Y,X\).*"
                                         r"`spacing` auto") as caught:
        report = run_segment(src, tmp_path / "plain.zarr", min_distance=3,
                             chunks=(16, 48, 48), report=False)
    assert len([w for w in caught if "`spacing` auto" in str(w.message)]) == 1
    assert report.params["spacing"] is None and len(report.warnings) == 1
    np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "plain.zarr").compute(),
                                  isotropic)

    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, image)
    assert main(["segment", str(src), str(tmp_path / "cli.zarr"), "--min-distance", "3",
                 "--chunks", "16,48,48", "--no-report"]) == 0
    assert "not used for the segmentation: pass --spacing auto" in capsys.readouterr().err
    assert main(["segment", str(flat), str(tmp_path / "flat.zarr"), "--spacing", "auto",
                 "--min-distance", "3", "--chunks", "16,48,48", "--no-report"]) == 0
    assert "gives no physical pixel sizes" in capsys.readouterr().err
    np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "flat.zarr").compute(),
                                  isotropic)
