"""Cells from nuclei: the chunked seeded watershed and label expansion against scikit-image
on the whole image, the compartments, the `cells` command and its bad input."""

import json

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import scipy.ndimage as ndi
import tifffile
import zarr
from skimage.filters import sobel, threshold_otsu
from skimage.measure import regionprops_table
from skimage.segmentation import expand_labels as sk_expand
from skimage.segmentation import watershed as sk_watershed
from skimage.util import invert

import chunkseg
from chunkseg.cells import cells_from_nuclei, elevation_of, expand_labels, seeded_watershed
from chunkseg.cli import main
from chunkseg.datasets import synthetic_cells

from ._stores import write_ome_zarr
from .conftest import real_path

CHUNKINGS = [(64, 64), (100, 128), (37, 91)]


@pytest.fixture(scope="module")
def bbbc022():
    """The Cell Painting crop: Hoechst, a cytoplasm stain, and nuclei labelled from the first."""
    image = tifffile.imread(real_path("bbbc022"))
    dna, cyto = image[0], image[1]
    nuclei = ndi.label(dna > threshold_otsu(dna))[0]
    mask = (cyto > threshold_otsu(cyto)) | (nuclei > 0)
    return {"image": image, "dna": dna, "cyto": cyto, "nuclei": nuclei, "mask": mask}


def _chunked(array, chunks):
    return da.from_array(array, chunks=chunks)


@pytest.mark.parametrize("kind", ["image", "inverted", "sobel"])
def test_elevations_equal_scikit_image_bit_for_bit(bbbc022, kind):
    want = {"image": bbbc022["cyto"], "inverted": invert(bbbc022["cyto"]),
            "sobel": sobel(bbbc022["cyto"])}[kind]
    for chunks in CHUNKINGS:
        got = elevation_of(_chunked(bbbc022["cyto"], chunks), kind).compute()
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", ["image", "inverted", "sobel"])
@pytest.mark.parametrize("connectivity", [1, 2])
def test_seeded_watershed_of_a_real_image_equals_scikit_image(bbbc022, kind, connectivity):
    elev = {"image": bbbc022["cyto"], "inverted": invert(bbbc022["cyto"]),
            "sobel": sobel(bbbc022["cyto"])}[kind]
    nuclei, mask = bbbc022["nuclei"], bbbc022["mask"]
    want = sk_watershed(elev, nuclei, mask=mask, connectivity=connectivity)
    results = [seeded_watershed(_chunked(elev, c), _chunked(nuclei, c), mask=_chunked(mask, c),
                                connectivity=connectivity, halo=16, max_halo=256).compute()
               for c in CHUNKINGS]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])  # every chunking: the same labels
    assert results[0].dtype == nuclei.dtype
    agree = (results[0] == want)[mask].mean()
    assert agree >= 0.995, agree
    assert set(np.unique(results[0])) == set(np.unique(nuclei))  # every cell keeps its id


def test_seeded_watershed_with_ties_and_unmarked_basins_is_chunk_invariant():
    """Synthetic cells, their membrane stain quantized to 8 levels (wide plateaus: ties), one
    nucleus in five dropped (cells flooded from their neighbours), a float elevation too."""
    image, nuclei = synthetic_cells((300, 340), seed=5, spacing=24)
    rng = np.random.default_rng(0)
    ids = np.unique(nuclei)[1:]
    dropped = rng.choice(ids, len(ids) // 5, replace=False)
    markers = np.where(np.isin(nuclei, dropped), 0, nuclei)
    mask = (image[1] > 30) | (markers > 0)
    for elev in (image[1] // 32, ndi.gaussian_filter(image[1].astype(np.float32), 1.0)):
        want = sk_watershed(elev, markers, mask=mask)
        results = [seeded_watershed(_chunked(elev, c), _chunked(markers, c),
                                    mask=_chunked(mask, c), halo=16, max_halo=512).compute()
                   for c in CHUNKINGS]
        for r in results[1:]:
            np.testing.assert_array_equal(r, results[0])
        assert (results[0] == want)[mask].mean() >= 0.995


def test_seeded_watershed_3d_and_without_a_mask():
    image, nuclei = synthetic_cells((40, 48, 44), seed=2, spacing=16)
    elev = image[1]
    want = sk_watershed(elev, nuclei)
    results = [seeded_watershed(_chunked(elev, c), _chunked(nuclei, c), halo=8,
                                max_halo=64).compute() for c in [(20, 24, 22), (13, 48, 17)]]
    np.testing.assert_array_equal(results[1], results[0])
    assert (results[0] == want).mean() >= 0.995


def test_seeded_watershed_retries_with_twice_the_halo_then_names_the_chunk():
    # one marker in a corner floods the whole image: no halo short of the image proves a chunk
    elev = np.add.outer(np.arange(120), np.arange(130)).astype(np.uint16)
    markers = np.zeros(elev.shape, np.int32)
    markers[0, 0] = 7
    x = seeded_watershed(_chunked(elev, (40, 40)), _chunked(markers, (40, 40)), halo=8,
                         max_halo=32)
    with pytest.raises(chunkseg.HaloTooSmallError, match=r"chunk \(\d+, \d+\).*`max_halo` of 64"):
        x.compute()
    # a halo as large as the image proves every chunk: the whole-image answer
    got = seeded_watershed(_chunked(elev, (40, 40)), _chunked(markers, (40, 40)), halo=8,
                           max_halo=256).compute()
    np.testing.assert_array_equal(got, sk_watershed(elev, markers))


def test_seeded_watershed_bad_input():
    a = np.zeros((20, 20), np.uint8)
    with pytest.raises(chunkseg.InputError, match="must have the shape of the image"):
        seeded_watershed(a, np.zeros((20, 21), np.int32))
    with pytest.raises(chunkseg.InputError, match="integer label image"):
        seeded_watershed(a, np.zeros((20, 20), np.float32))
    with pytest.raises(chunkseg.InputError, match="connectivity"):
        seeded_watershed(a, np.zeros((20, 20), np.int32), connectivity=3)
    with pytest.raises(chunkseg.InputError, match="`max_halo`"):
        seeded_watershed(a, np.zeros((20, 20), np.int32), halo=64, max_halo=32)
    with pytest.raises(chunkseg.InputError, match="unknown `elevation`"):
        elevation_of(a, "gradient")


@pytest.mark.parametrize("distance", [1, 3, 5.5, 12])
def test_expand_labels_equals_scikit_image_with_ties(distance):
    rng = np.random.default_rng(int(distance * 10))
    labels = np.zeros((200, 190), np.int32)
    # points on a lattice of step 4: many background pixels at equal distance from two labels
    ys, xs = rng.integers(0, 50, 300) * 4, rng.integers(0, 47, 300) * 4
    labels[ys, xs] = rng.permutation(300) + 1
    labels = sk_expand(labels, 1)
    want = sk_expand(labels, distance)
    for chunks in CHUNKINGS:
        np.testing.assert_array_equal(expand_labels(_chunked(labels, chunks), distance).compute(),
                                      want)


def test_expand_labels_3d_anisotropic_and_bad_input():
    _, nuclei = synthetic_cells((30, 40, 36), seed=4, spacing=14)
    want = sk_expand(nuclei, 4, spacing=(2.0, 1.0, 1.0))
    got = expand_labels(_chunked(nuclei, (10, 16, 12)), 4, spacing=(2.0, 1.0, 1.0)).compute()
    np.testing.assert_array_equal(got, want)
    with pytest.raises(chunkseg.InputError, match="non-negative"):
        expand_labels(nuclei, -1)
    with pytest.raises(chunkseg.InputError, match="integer label image"):
        expand_labels(nuclei.astype(float), 2)


def test_every_cell_holds_its_whole_nucleus(bbbc022):
    nuclei = bbbc022["nuclei"]
    for method in ("watershed", "expand"):
        cells, cyto, t = cells_from_nuclei(_chunked(nuclei, (100, 128)),
                                           _chunked(bbbc022["cyto"], (100, 128)), method=method,
                                           distance=4, threshold="otsu")
        cells, cyto = cells.compute(), cyto.compute()
        inside = nuclei > 0
        np.testing.assert_array_equal(cells[inside], nuclei[inside])
        assert not cyto[inside].any()
        np.testing.assert_array_equal(cyto[~inside], cells[~inside])
        assert t == threshold_otsu(bbbc022["cyto"])


def _write_stores(tmp_path, bbbc022):
    zarr.create_array(str(tmp_path / "dna.zarr"), data=bbbc022["dna"], chunks=(128, 128))
    zarr.create_array(str(tmp_path / "cyto.zarr"), data=bbbc022["cyto"], chunks=(128, 128))
    assert main(["-q", "segment", str(tmp_path / "dna.zarr"), str(tmp_path / "nuclei.zarr"),
                 "--min-distance", "5"]) == 0
    return chunkseg.open_labels(tmp_path / "nuclei.zarr").compute()


def test_cells_command_watershed_writes_compartments_and_their_table(tmp_path, bbbc022, capsys):
    nuclei = _write_stores(tmp_path, bbbc022)
    out, table = tmp_path / "cells.zarr", tmp_path / "cells.csv"
    assert main(["cells", str(tmp_path / "nuclei.zarr"), str(tmp_path / "cyto.zarr"), str(out),
                 "--table", str(table)]) == 0
    assert "cells" in capsys.readouterr().out
    cyto_image = bbbc022["cyto"]
    mask = (cyto_image > threshold_otsu(cyto_image)) | (nuclei > 0)
    want = sk_watershed(invert(cyto_image), nuclei, mask=mask)
    cells = chunkseg.open_labels(out / "cells").compute()
    cytoplasm = chunkseg.open_labels(out / "cytoplasm").compute()
    assert (cells == want)[mask].mean() >= 0.995
    np.testing.assert_array_equal(cytoplasm, np.where(nuclei == 0, cells, 0))
    # an OME-Zarr labels group listing both, each a valid image-label (ome-zarr-models)
    from ome_zarr_models import open_ome_zarr
    from ome_zarr_models.v05.image_label import ImageLabel

    attrs = zarr.open_group(str(out), mode="r").attrs.asdict()
    assert attrs["ome"]["labels"] == ["cells", "cytoplasm"]
    for name in ("cells", "cytoplasm"):
        assert isinstance(open_ome_zarr(zarr.open_group(str(out / name), mode="r")), ImageLabel)
    report = json.loads((out / "cells.report.json").read_text())
    assert report["cells"] == len(np.unique(nuclei)) - 1
    # the table: each compartment equal to regionprops_table on the whole image
    got = pd.read_csv(table)
    assert len(got) == len(np.unique(nuclei)) - 1
    props = ("label", "area", "centroid", "intensity_mean", "intensity_max")
    for comp, labels in (("nucleus", nuclei), ("cell", cells), ("cytoplasm", cytoplasm)):
        ref = pd.DataFrame(regionprops_table(labels, intensity_image=cyto_image,
                                             properties=props))
        merged = got.merge(ref, on="label", how="inner")
        assert len(merged) == len(ref)
        for col in ("area", "centroid-0", "centroid-1", "intensity_mean", "intensity_max"):
            np.testing.assert_allclose(merged[f"{comp}_{col}"], merged[col], rtol=1e-9)
    empty = got[~got["label"].isin(np.unique(cytoplasm))]
    assert (empty["cytoplasm_area"] == 0).all() and empty["cytoplasm_intensity_mean"].isna().all()


def test_cells_command_expand_into_an_ome_zarr_image(tmp_path, bbbc022):
    image = write_ome_zarr(tmp_path / "plate.ome.zarr", bbbc022["image"], axes="cyx",
                           chunks=(1, 128, 128), levels=2)
    assert main(["-q", "segment", str(image), "--channel", "0", "--into-input", "nuclei",
                 "--min-distance", "5"]) == 0
    nuclei = chunkseg.open_labels(image / "labels" / "nuclei").compute()
    assert main(["-q", "cells", str(image / "labels" / "nuclei"), str(image), "--channel", "1",
                 "--method", "expand", "--distance", "6", "--threshold", "none",
                 "--into-input"]) == 0
    labels = zarr.open_group(str(image / "labels"), mode="r").attrs.asdict()["ome"]["labels"]
    assert labels == ["nuclei", "cells", "cytoplasm"]
    cells = chunkseg.open_labels(image / "labels" / "cells").compute()
    np.testing.assert_array_equal(cells, sk_expand(nuclei, 6))
    # the pyramid follows the image's own levels
    assert zarr.open_group(str(image / "labels" / "cells"), mode="r")["1"].shape == (198, 348)


def test_cells_command_on_worker_processes_equals_threads(tmp_path):
    image, nuclei = synthetic_cells((256, 300), seed=8, spacing=28)
    zarr.create_array(str(tmp_path / "img.zarr"), data=image[1], chunks=(64, 96))
    zarr.create_array(str(tmp_path / "nuc.zarr"), data=nuclei, chunks=(64, 96))
    common = [str(tmp_path / "nuc.zarr"), str(tmp_path / "img.zarr")]
    # a membrane stain: the cells are what is brighter than the glass (Otsu would keep only
    # the membranes, one network across the image that no nucleus touches)
    args = ["--elevation", "image", "--threshold", "30"]
    assert main(["-q", "cells", *common, str(tmp_path / "a.zarr"), *args]) == 0
    assert main(["-q", "cells", *common, str(tmp_path / "b.zarr"), *args, "--scheduler",
                 "processes", "--workers", "2", "--chunks", "50,70"]) == 0
    a = chunkseg.open_labels(tmp_path / "a.zarr" / "cells").compute()
    b = chunkseg.open_labels(tmp_path / "b.zarr" / "cells").compute()
    np.testing.assert_array_equal(a, b)
    mask = (image[1] > 30) | (nuclei > 0)
    assert (a == sk_watershed(image[1], nuclei, mask=mask))[mask].mean() >= 0.995


def test_cells_command_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, bbbc022, capsys):
    _write_stores(tmp_path, bbbc022)
    nuc, cyto = str(tmp_path / "nuclei.zarr"), str(tmp_path / "cyto.zarr")
    zarr.create_array(str(tmp_path / "small.zarr"), data=bbbc022["cyto"][:100], chunks=(64, 64))
    zarr.create_array(str(tmp_path / "float.zarr"), data=bbbc022["dna"].astype(np.float32),
                      chunks=(128, 128))
    # an incomplete nuclei store: a run that did not finish
    incomplete = tmp_path / "incomplete.zarr"
    assert main(["-q", "segment", str(tmp_path / "dna.zarr"), str(incomplete), "--min-distance",
                 "5"]) == 0
    group = zarr.open_group(str(incomplete), mode="r+")
    group.attrs["chunkseg"] = dict(group.attrs["chunkseg"], complete=False)
    cases = [
        ([nuc, str(tmp_path / "small.zarr")], "must have the shape of the image"),
        ([str(tmp_path / "float.zarr"), cyto], "integer label image"),
        ([nuc, cyto, "--method", "expand", "--distance", "-2"], "non-negative"),
        ([nuc, cyto, "--elevation", "gradient"], "unknown --elevation 'gradient'"),
        ([nuc, cyto, "--method", "grow"], "unknown cells --method 'grow'"),
        ([str(incomplete), cyto], "is incomplete"),
        ([nuc, cyto, "--threshold", "local:31"], "global --threshold"),
    ]
    for args, message in cases:
        out = tmp_path / "out.zarr"
        assert main(["cells", *args[:2], str(out), *args[2:]]) == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not out.exists()
    # an output that exists needs --overwrite
    (tmp_path / "taken.zarr").mkdir()
    assert main(["cells", nuc, cyto, str(tmp_path / "taken.zarr")]) == 2
    assert "--overwrite" in capsys.readouterr().err
