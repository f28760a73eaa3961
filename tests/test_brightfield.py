"""Brightfield slides: stains (colour deconvolution), dark objects, tissue detection.

Every answer is compared with the whole-image scikit-image computation it is
defined by: ``rgb2hed`` bit for bit, thresholds bit for bit, labels by the
reference pipeline on the same mask.
"""

import json

import dask.array as da
import numpy as np
import pytest
import skimage.color
import skimage.data
import skimage.filters
import tifffile
import zarr

import chunkseg
from chunkseg import stain, tissue
from chunkseg.datasets import synthetic_he, synthetic_tissue, write_synthetic_he
from chunkseg.run import run_segment

from ._reference import f1_at_iou, reference
from .conftest import DATA


def he_histo():
    return tifffile.imread(DATA / "he-histo" / "histo.tif")


def _assert_matches_reference(labels, mask, min_distance):
    _, _, ref = reference(None, mask=mask, min_distance=min_distance)
    assert np.array_equal(labels > 0, ref > 0)
    agree = np.count_nonzero((labels == ref) & mask) / mask.sum()
    assert agree >= 0.998, agree
    assert f1_at_iou(labels, ref) >= 0.995


@pytest.mark.parametrize("name", ["ihc", "he-histo", "synthetic"])
def test_stain_equals_rgb2hed_bit_for_bit_at_any_chunking(name):
    rgb = {"ihc": skimage.data.immunohistochemistry, "he-histo": he_histo,
           "synthetic": lambda: synthetic_he((300, 420), seed=3)}[name]()
    ref = skimage.color.rgb2hed(rgb)
    for chunks in [(64, 64, 3), (100, 333, 3), (1, 97, 3), (97, 1, 3), (37, 41, 1)]:
        crop = slice(None) if 1 not in chunks[:2] else slice(60, 157)  # thin blocks: a band
        x = da.from_array(rgb[crop, crop], chunks=chunks)
        for k, name_ in enumerate(stain.STAINS):
            np.testing.assert_array_equal(stain.separate(x, name_).compute(), ref[crop, crop, k])
    # blocks of one pixel: numpy multiplies a row of one pixel by another path (half of them
    # differ in the last bit unless the kernel doubles it)
    corner = da.from_array(rgb[:16, :16], chunks=(1, 1, 3))
    np.testing.assert_array_equal(stain.separate(corner).compute(), ref[:16, :16, 0])


def test_table_of_every_colour_gives_rgb2hed_of_every_colour(monkeypatch):
    """Past ``_TABLE_AFTER`` pixels a process looks 8-bit colours up in a table of all
    256^3 (filled by the product the blocks use): the same values as rgb2hed of an image
    of every colour, for each stain, in blocks of either layout, and for custom vectors."""
    from chunkseg._kernels import stain as kernels

    monkeypatch.setattr(kernels, "_TABLE_AFTER", 0)
    monkeypatch.setattr(kernels, "_colour_tables", {})
    v = np.arange(256, dtype=np.uint8)
    every = np.stack(np.meshgrid(v, v, v, indexing="ij"), axis=-1).reshape(4096, 4096, 3)
    ref = skimage.color.rgb2hed(every)
    for k, name in enumerate(stain.STAINS):
        out = stain.separate(da.from_array(every, chunks=(1024, 4096, 3)), name).compute()
        np.testing.assert_array_equal(out, ref[..., k])
    assert len(kernels._colour_tables) == 2  # the latest two kept
    del ref
    planes = da.from_array(np.moveaxis(every, -1, 0).copy(), chunks=(3, 1000, 1000))
    conv = stain.stain_matrix("0.65,0.70,0.29; 0.27,0.57,0.78")
    np.testing.assert_array_equal(stain.separate(planes, "dab", conv=conv, channel_axis=0)
                                  [::7, ::5].compute(),
                                  skimage.color.separate_stains(every[::7, ::5], conv)[..., 2])


def test_stain_of_other_dtypes_and_custom_vectors_equals_separate_stains():
    rgb = skimage.data.immunohistochemistry()[:200, :300]
    for image in (rgb.astype(np.uint16) * 257, rgb.astype(np.float32) / 255, rgb / 255.0):
        np.testing.assert_array_equal(stain.separate(da.from_array(image, chunks=(64, 77, 3)),
                                                     "eosin").compute(),
                                      skimage.color.rgb2hed(image)[..., 1])
    conv = stain.stain_matrix("0.65,0.70,0.29; 0.27,0.57,0.78")  # H and DAB, third the cross
    assert np.allclose(np.linalg.inv(conv)[0], np.array([0.65, 0.70, 0.29]) / np.linalg.norm(
        [0.65, 0.70, 0.29]))
    out = stain.separate(da.from_array(rgb, chunks=50), "eosin", conv=conv).compute()
    np.testing.assert_array_equal(out, skimage.color.separate_stains(rgb, conv)[..., 1])
    np.testing.assert_array_equal(stain.stain_matrix(skimage.color.rgb_from_hed),
                                  np.linalg.inv(skimage.color.rgb_from_hed /
                                                np.linalg.norm(skimage.color.rgb_from_hed,
                                                               axis=1)[:, None]))


def test_macenko_finds_the_vectors_the_image_was_stained_with():
    # synthetic H&E is composed with Ruifrok-Johnston's H and E vectors
    conv, used = stain.estimate_vectors(synthetic_he((1024, 1024), seed=2, tissue=1.0))
    found = np.asarray(used["estimated"])
    truth = skimage.color.rgb_from_hed[:2] / np.linalg.norm(skimage.color.rgb_from_hed[:2],
                                                            axis=1)[:, None]
    cosines = (found * truth).sum(axis=1)
    assert (cosines > 0.98).all(), cosines
    # the IHC image is hematoxylin and DAB: the second vector found is DAB's
    _, used = stain.estimate_vectors(skimage.data.immunohistochemistry())
    dab = skimage.color.rgb_from_hed[2] / np.linalg.norm(skimage.color.rgb_from_hed[2])
    assert np.dot(used["estimated"][1], dab) > 0.98


@pytest.mark.parametrize("vectors, match", [
    ("1,2,3;4,5", "must be numbers|3x3"), ("1,0,0;2,0,0;0,0,1", "singular"),
    ([[1, 2], [3, 4]], "3x3"), ("0,0,0;0,1,0;0,0,1", "zeros"), ("a,b,c", "numbers"),
    ("missing.json", "does not exist"),
])
def test_bad_stain_vectors(vectors, match):
    with pytest.raises(chunkseg.InputError, match=match):
        stain.stain_matrix(vectors)


def test_stain_of_a_single_channel_or_rgba_image_is_refused():
    with pytest.raises(chunkseg.InputError, match="RGB"):
        stain.separate(da.zeros((10, 10)), "hematoxylin")
    with pytest.raises(chunkseg.InputError, match="RGBA"):
        stain.separate(da.zeros((10, 10, 4)), "hematoxylin")
    with pytest.raises(chunkseg.InputError, match="unknown `stain`"):
        stain.separate(da.zeros((10, 10, 3)), "haematoxylin")


@pytest.mark.parametrize("method", ["otsu", "li", "yen", "triangle", 120])
def test_dark_objects_are_the_complement_with_the_same_threshold(method):
    image = chunkseg.datasets.human_mitosis()
    inverted_ish = (255 - image).astype(np.uint8)  # dark nuclei on a bright field
    x = da.from_array(inverted_ish, chunks=(100, 130))
    mask, t = chunkseg.foreground(x, method, polarity="dark")
    expected = method if not isinstance(method, str) else \
        getattr(skimage.filters, f"threshold_{method}")(inverted_ish)
    assert t == expected
    np.testing.assert_array_equal(mask.compute(), inverted_ish <= expected)


def test_dark_objects_segment_like_the_reference_and_local_and_class_maps_follow():
    image = 255 - chunkseg.datasets.human_mitosis()
    x = da.from_array(image, chunks=(128, 100))
    labels = chunkseg.segment(x, polarity="dark", min_distance=7).compute()
    _assert_matches_reference(labels, image <= skimage.filters.threshold_otsu(image), 7)
    local = chunkseg.foreground(x, "local:51:-3", polarity="dark")[0].compute()
    np.testing.assert_array_equal(
        local, image <= skimage.filters.threshold_local(image, 51, offset=-3))
    classes = chunkseg.segment(x, method="threshold", threshold="multiotsu", classes=3,
                               polarity="dark").compute()
    t = skimage.filters.threshold_multiotsu(image, 3)
    np.testing.assert_array_equal(classes, 2 - np.digitize(image, t))


def _tissue_reference(image, mask, polarity="bright"):
    """The definition: non-tissue pixels set to background, threshold over tissue pixels,
    objects only inside the tissue."""
    fill = tissue.background_value(image.dtype, polarity)
    restricted = np.where(mask, image, fill)
    t = skimage.filters.threshold_otsu(restricted[mask])
    side = restricted <= t if polarity == "dark" else restricted > t
    return t, side & mask


@pytest.mark.parametrize("polarity", ["bright", "dark"])
def test_tissue_mask_defines_the_answer(polarity):
    image = chunkseg.datasets.synthetic_nuclei((512, 600), seed=5)
    if polarity == "dark":
        image = 255 - image
    where = synthetic_tissue((512, 600), seed=5, fraction=0.5)
    where[:, :300] = False  # whole chunks of glass
    x = da.from_array(image, chunks=(128, 100))
    mask, t = chunkseg.foreground(x, polarity=polarity, tissue=where)
    t_ref, mask_ref = _tissue_reference(image, where, polarity)
    assert t == t_ref
    np.testing.assert_array_equal(mask.compute(), mask_ref)
    labels = chunkseg.segment(x, polarity=polarity, tissue=where, min_distance=7).compute()
    _assert_matches_reference(labels, mask_ref, 7)


def test_detected_tissue_covers_the_tissue_and_leaves_the_glass():
    shape = (4096, 4096)
    level = synthetic_he(shape, seed=4, tissue=0.4)[::8, ::8]  # a pyramid level, 512^2
    found, how = tissue.detect(level, rgb=True)
    truth = synthetic_tissue(shape, seed=4, fraction=0.4)[::8, ::8]
    assert found[truth].all()  # no tissue lost (the margin covers the edges)
    assert found[~truth].mean() < 0.05  # little glass kept
    assert 0.38 < how["tissue_fraction"] < 0.48
    # a slide that is all tissue keeps all of it (the threshold is capped at GLASS_OD)
    allt, how = tissue.detect(synthetic_he((512, 512), seed=4, tissue=1.0), rgb=True)
    assert allt.all() and how["threshold"] <= tissue.GLASS_OD
    blank, _ = tissue.detect(np.full((64, 64, 3), 242, np.uint8), rgb=True)
    assert not blank.any()


def test_upsampled_mask_is_nearest_neighbour_and_blocks_agree():
    rng = np.random.default_rng(0)
    low = rng.random((13, 17)) > 0.7
    low[:6, :8], low[8:, 9:] = True, False  # chunks all tissue, chunks all glass
    shape, chunks = (101, 150), (30, 40)
    up = tissue.upsample(low, shape, chunks).compute()
    yy, xx = np.meshgrid(np.arange(shape[0]) * 13 // 101, np.arange(shape[1]) * 17 // 150,
                         indexing="ij")
    np.testing.assert_array_equal(up, low[yy, xx])
    t = tissue.Tissue(low, {})
    blocks = t.blocks(shape, da.zeros(shape, chunks=chunks).chunks)
    expected = da.from_array(up, chunks=chunks).map_blocks(
        lambda b: np.array(2 if b.all() else int(b.any())).reshape(1, 1), chunks=(1, 1),
        dtype=np.uint8).compute()
    np.testing.assert_array_equal(blocks, expected)
    assert {0, 1, 2} <= set(np.unique(blocks).tolist())
    image = rng.integers(1, 255, shape, dtype=np.uint8)
    restricted, mask, skipped = tissue.restrict(da.from_array(image, chunks=chunks), t, "dark")
    np.testing.assert_array_equal(mask.compute(), up)
    np.testing.assert_array_equal(restricted.compute(), np.where(up, image, 255))
    assert skipped == int((blocks == 0).sum())


def _slide(tmp_path, shape=(2048, 3072), tissue_fraction=0.4, levels=4):
    return write_synthetic_he(tmp_path / "slide.zarr", shape, chunks=(512, 512), seed=7,
                              tissue=tissue_fraction, levels=levels)


def test_run_with_stain_and_tissue_auto_equals_the_definition_and_skips_glass(tmp_path):
    slide = _slide(tmp_path)
    report = run_segment(slide, tmp_path / "labels.zarr", stain="hematoxylin", tissue="auto",
                         min_distance=5, scheduler="threads")
    how = report.to_dict()["tissue"]
    assert how["level"] == 2 and how["shape"] == [512, 768]  # the largest level <= 1 Mpx
    assert how["chunks_skipped"] > 0 and how["chunks"] == 24
    labels = chunkseg.open_labels(tmp_path / "labels.zarr").compute()
    rgb = np.moveaxis(zarr.open_array(str(slide / "0"))[:], 0, -1)
    h = skimage.color.rgb2hed(rgb)[..., 0]
    low = np.moveaxis(zarr.open_array(str(slide / "2"))[:], 0, -1)
    found, _ = tissue.detect(low, rgb=True)
    where = tissue.upsample(found, h.shape, 512).compute()
    t, mask = _tissue_reference(h, where)
    assert report.threshold == pytest.approx(t, abs=0) and report.objects == labels.max()
    _assert_matches_reference(labels, mask, 5)
    # at the same threshold, the same objects as without tissue detection (no glass pixel
    # is stained)
    run_segment(slide, tmp_path / "plain.zarr", stain="hematoxylin", min_distance=5,
                threshold=report.threshold)
    np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "plain.zarr").compute(),
                                  labels)


def test_chunks_without_tissue_are_not_read(tmp_path, monkeypatch):
    slide = _slide(tmp_path, shape=(1024, 2048), levels=3)
    from chunkseg.io import readers

    read = []
    original = readers._ZarrChunks.__getitem__

    def counting(self, key):
        if self.shape[-1] == 2048:
            read.append(key)
        return original(self, key)

    monkeypatch.setattr(readers._ZarrChunks, "__getitem__", counting)
    report = run_segment(slide, tmp_path / "labels.zarr", stain="hematoxylin", tissue="auto",
                         scheduler="threads", workers=1, report=False)
    skipped = report.found["tissue"]["chunks_skipped"]
    assert skipped > 0
    starts = {(k[1].start, k[2].start) for k in read}
    assert len(starts) == 8 - skipped  # each chunk with tissue read, the glass never
    # and read once (the input's fingerprint for resume reads its first and last chunk too):
    # the restricted image is kept from the threshold's passes to the seeds
    assert len(read) <= len(starts) + 2


# ----------------------------------------------------------------- slides, polygons, CLI

FIXTURES = DATA / "openslide-fixtures"


def test_openslide_formats_open_with_their_microns_per_pixel():
    from chunkseg.io import inspect_image, readers

    svs = inspect_image(FIXTURES / "small.svs")
    assert svs.format == "aperio (tiff)" and svs.scale[:2] == (0.499, 0.499)
    dcm = readers.read_image(FIXTURES / "boxes_0.dcm", rgb=True)
    assert dcm.info.format == "dicom (openslide)" and dcm.array.shape == (16, 16, 3)
    assert dcm.info.scale[:2] == (0.499, 0.499)
    import openslide

    slide = openslide.OpenSlide(str(FIXTURES / "boxes_0.dcm"))
    expected = np.asarray(slide.read_region((0, 0), 0, (16, 16)))[..., :3]
    np.testing.assert_array_equal(dcm.array.compute(), expected)
    # a generic pyramidal TIFF: every level's own pixels, through tifffile
    tiff = inspect_image(FIXTURES / "boxes.tiff")
    assert len(tiff.levels) == 4
    np.testing.assert_array_equal(readers.open_image(FIXTURES / "boxes.tiff", level=2,
                                                     channel=0).compute(),
                                  tifffile.imread(FIXTURES / "boxes.tiff", level=2)[..., 0])


def test_openslide_reads_are_the_same_in_any_blocks_at_whole_number_levels():
    import openslide

    from chunkseg.io.readers import _SlideLevel

    path = str(FIXTURES / "boxes.tiff")
    slide = openslide.OpenSlide(path)
    for level in (0, 1):  # downsample 1 and 2
        (w, h), ds = slide.level_dimensions[level], slide.level_downsamples[level]
        reader = _SlideLevel(path, level, (h, w, 3), ds)
        whole = np.asarray(slide.read_region((0, 0), level, (w, h)))[..., :3]
        x = da.from_array(reader, chunks=(37, 41, 3))
        np.testing.assert_array_equal(x.compute(), whole)


def test_slide_segmented_with_physical_areas_and_scale(tmp_path):
    out = tmp_path / "labels.zarr"
    report = run_segment(FIXTURES / "small.svs", out, stain="hematoxylin", threshold=0.01,
                         table=tmp_path / "objects.csv", min_distance=2)
    attrs = zarr.open_group(str(out)).attrs.asdict()["ome"]["multiscales"][0]
    assert attrs["datasets"][0]["coordinateTransformations"][0]["scale"] == [0.499, 0.499]
    assert attrs["axes"][0]["unit"] == "micrometer"
    import pandas as pd

    table = pd.read_csv(tmp_path / "objects.csv")
    labels = chunkseg.open_labels(out).compute()
    if report.objects:
        areas = np.bincount(labels.ravel())[1:]
        np.testing.assert_allclose(table["area"], areas * 0.499 * 0.499)


def test_non_integer_openslide_level_is_refused_for_segmenting():
    from chunkseg.io import readers

    # boxes.tiff through OpenSlide (as a non-TIFF slide would be): level 2 is 4.016x
    with pytest.raises(chunkseg.InputError, match="not a whole number"):
        readers._open_slide(readers.store.location(str(FIXTURES / "boxes.tiff")), 2,
                            "generic-tiff", approximate=False)
    readers._open_slide(readers.store.location(str(FIXTURES / "boxes.tiff")), 2,
                        "generic-tiff", approximate=True)


def _rasterised(geometry, shape):
    import shapely

    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return shapely.contains_xy(geometry, xx + 0.5, yy + 0.5)


def test_geojson_has_every_object_once_valid_and_covering_it(tmp_path):
    import shapely

    image = chunkseg.datasets.synthetic_nuclei((700, 900), seed=8, density=0.45)
    x = da.from_array(image, chunks=(128, 200))
    labels = chunkseg.segment(x, min_distance=6).compute()
    n = chunkseg.to_geojson(da.from_array(labels, chunks=(128, 200)), tmp_path / "o.geojson",
                            image=x)
    data = json.loads((tmp_path / "o.geojson").read_text())
    assert data["type"] == "FeatureCollection"
    ids = [f["id"] for f in data["features"]]
    assert n == len(ids) == labels.max() and sorted(ids) == list(range(1, n + 1))
    areas = np.bincount(labels.ravel())
    means = np.bincount(labels.ravel(), weights=image.ravel()) / np.maximum(areas, 1)
    for f in data["features"]:
        geometry = shapely.geometry.shape(f["geometry"])
        assert geometry.is_valid
        k = f["id"]
        rows, cols = np.nonzero(labels == k)
        window = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        obj = labels[window] == k
        moved = shapely.affinity.translate(geometry, -cols.min(), -rows.min())
        drawn = _rasterised(moved, obj.shape)
        iou = (drawn & obj).sum() / (drawn | obj).sum()
        assert iou >= 0.9, (k, iou)
        assert f["properties"]["objectType"] == "detection"
        m = f["properties"]["measurements"]
        assert m["area"] == areas[k] and m["intensity_mean"] == pytest.approx(means[k], rel=1e-6)


def test_outline_kernel_is_exact_on_random_shapes():

    from chunkseg._kernels.polygons import outline

    rng = np.random.default_rng(0)
    for _ in range(200):
        mask = rng.random((9, 11)) > 0.45
        geometry = outline(mask)
        assert geometry.is_valid and geometry.area == mask.sum()
        np.testing.assert_array_equal(_rasterised(geometry, mask.shape), mask)
    ring = np.ones((5, 5), bool)
    ring[2, 2] = False
    hole = outline(ring)
    assert hole.geom_type == "Polygon" and len(hole.interiors) == 1 and hole.area == 24


def test_cli_brightfield_run_with_tissue_geojson_and_preview(tmp_path, capsys):
    from chunkseg.cli import main

    slide = _slide(tmp_path, shape=(1024, 2048), levels=3)
    out = tmp_path / "labels.zarr"
    code = main(["segment", str(slide), str(out), "--stain", "hematoxylin", "--tissue", "auto",
                 "--geojson", str(tmp_path / "nuclei.geojson"), "--min-distance", "5", "-q"])
    assert code == 0
    line = capsys.readouterr().out
    assert "not read" in line and "polygons ->" in line
    report = json.loads((tmp_path / "labels.zarr.report.json").read_text())
    assert report["tissue"]["chunks_skipped"] > 0 and report["stain"]["stain"] == "hematoxylin"
    data = json.loads((tmp_path / "nuclei.geojson").read_text())
    assert len(data["features"]) == report["objects"]
    assert "hematoxylin_od_mean" in data["features"][0]["properties"]["measurements"]
    assert main(["preview", str(out), str(tmp_path / "p.png"), "--image", str(slide)]) == 0
    from PIL import Image

    picture = np.asarray(Image.open(tmp_path / "p.png"))
    assert picture.shape == (1024, 2048, 3)
    glass = picture[chunkseg.open_labels(out).compute() == 0]
    assert np.median(glass, axis=0).min() > 200  # the slide's own colours, not grey


@pytest.mark.parametrize("args, match", [
    (["--stain", "hematoxylin"], "RGB image"),            # single-channel input
    (["--stain", "haematoxylin"], "unknown --stain"),
    (["--stain", "hematoxylin", "--stain-vectors", "1,0,0;2,0,0;0,0,1"], "singular"),
    (["--stain", "hematoxylin", "--stain-vectors", "1,2,3,4;5,6,7,8;1,1,1,1"], "3x3"),
    (["--stain-vectors", "1,0,0;0,1,0;0,0,1"], "needs --stain"),
    (["--objects", "darker"], "--objects must be bright"),
    (["--tissue", "{tmp}/mask.zarr"], "shape"),
    (["--geojson", "{tmp}/o.geojson", "--method", "threshold"], "objects"),
])
def test_cli_bad_brightfield_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, args,
                                                                      match):
    from chunkseg.cli import main
    from chunkseg.io import writers

    image = tmp_path / "grey.zarr"
    writers.write_mosaic(image, np.zeros((64, 64), np.uint8), (32, 32))
    writers.write_mosaic(tmp_path / "mask.zarr", np.ones((32, 64), np.uint8), (32, 32))
    code = main(["segment", str(image), str(tmp_path / "out.zarr"),
                 *[a.format(tmp=tmp_path) for a in args]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert __import__("re").search(match, err), err
    assert not (tmp_path / "out.zarr").exists() and not (tmp_path / "o.geojson").exists()


def test_cli_rgba_and_unopenable_slides_are_refused(tmp_path, capsys):
    from chunkseg.cli import main

    rgba = tmp_path / "rgba.tif"
    tifffile.imwrite(rgba, np.zeros((32, 32, 4), np.uint8), photometric="rgb", extrasamples=[2])
    assert main(["segment", str(rgba), str(tmp_path / "a.zarr"), "--stain", "eosin"]) == 2
    assert "RGBA" in capsys.readouterr().err
    assert main(["segment", str(FIXTURES / "unopenable.tiff"), str(tmp_path / "b.zarr"),
                 "--stain", "eosin"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "unopenable.tiff" in err
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_local_workers_run_one_blas_thread():
    # a forked worker keeps this process's OpenBLAS threads, which spin: the stain's matrix
    # product took 15-40x longer there
    from chunkseg.cluster import scheduler

    def blas_threads():
        from threadpoolctl import threadpool_info

        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    with scheduler("processes", workers=1) as client:
        (threads,) = client.run(blas_threads).values()
    assert threads and all(n == 1 for n in threads)


def test_a_float_image_is_read_once_for_the_nan_check_and_once_for_the_histogram():
    image = chunkseg.datasets.synthetic_nuclei((256, 256), seed=1).astype(np.float64) / 7
    seen = []

    def counted(block):
        seen.append(block.shape)
        return block

    x = da.from_array(image, chunks=128).map_blocks(counted, meta=np.empty((0, 0)))
    _, t = chunkseg.foreground(x)
    assert t == skimage.filters.threshold_otsu(image)
    assert len(seen) == 2 * 4  # the range (with the NaN count), then the histogram


def test_rgb_stored_a_colour_per_chunk_read_in_one_task_per_block(tmp_path):
    """An OME-Zarr RGB image chunked one colour per chunk (as bioformats2raw writes it):
    the stain's blocks are each one read of the three stored chunks (no concatenation
    task whose pieces may sit on other workers), and the density equals rgb2hed's."""
    from dask.core import flatten

    from chunkseg.io import readers, writers

    rgb = synthetic_he((96, 128), seed=5, tissue=1.0)
    path = tmp_path / "rgb.ome.zarr"
    group = writers.create_image(path, shape=(3, 96, 128), chunks=(1, 48, 64), dtype=np.uint8,
                                 axes="cyx")
    group["0"][:] = np.moveaxis(rgb, -1, 0)
    opened = readers.read_image(path, rgb=True)
    x = stain.separate(opened.array, "hematoxylin", channel_axis=opened.axes.index("c"))
    graph = x.__dask_graph__().cull(set(flatten(x.__dask_keys__())))
    kinds = [str(k[0]).split("-")[0] for k in dict(graph) if isinstance(k, tuple)]
    assert kinds.count("zarr") == x.npartitions == 4 and "rechunk" not in kinds
    np.testing.assert_array_equal(x.compute(), skimage.color.rgb2hed(rgb)[..., 0])
