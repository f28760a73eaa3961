"""Label outputs are OME-Zarr label images that the field's readers accept."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import zarr

import chunkseg
from chunkseg.cli import main

from ._stores import write_ome_zarr
from .conftest import real_image


def _tree_digest(root: Path, skip: str | None = None) -> dict:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not (skip and rel.startswith(skip)):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    tile = real_image("human-mitosis")
    image = np.block([[tile, tile[::-1]], [tile[:, ::-1], tile]])  # 1024 x 1024
    path = tmp_path_factory.mktemp("in") / "mosaic.zarr"
    zarr.create_array(str(path), data=image, chunks=(128, 128))
    return path, image


def test_output_is_valid_ome_zarr_label_image_with_pyramid(tmp_path, mosaic):
    from ome_zarr_models import open_ome_zarr
    from ome_zarr_models.v05.image_label import ImageLabel

    path, _ = mosaic
    out = tmp_path / "labels.zarr"
    assert main(["-q", "segment", str(path), str(out), "--min-distance", "7"]) == 0
    model = open_ome_zarr(zarr.open_group(str(out), mode="r"))
    assert isinstance(model, ImageLabel)
    group = zarr.open_group(str(out), mode="r")
    ms = group.attrs["ome"]["multiscales"][0]
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2", "3"]  # 1024 -> 128 in one chunk
    assert [a["name"] for a in ms["axes"]] == ["y", "x"]
    full = group["0"][:]
    for level, d in enumerate(ms["datasets"]):
        np.testing.assert_array_equal(group[d["path"]][:], full[::2**level, ::2**level])
        assert d["coordinateTransformations"][0]["scale"] == [2.0**level] * 2
    assert group["0"].metadata.dimension_names == ("y", "x")


def test_ome_zarr_reader_reads_labels(tmp_path, mosaic):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    path, _ = mosaic
    out = tmp_path / "labels.zarr"
    assert main(["-q", "segment", str(path), str(out), "--min-distance", "7"]) == 0
    nodes = list(Reader(parse_url(str(out)))())
    assert nodes, "ome_zarr found no image"
    node = nodes[0]
    assert len(node.data) == 4
    np.testing.assert_array_equal(np.asarray(node.data[1]), chunkseg.open_labels(out)[::2, ::2])
    assert node.metadata.get("visible") is not False


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_into_input_writes_labels_group_and_nothing_else(tmp_path, version, capsys):
    from ome_zarr_models import open_ome_zarr

    image = real_image("human-mitosis")
    src = write_ome_zarr(tmp_path / "img.ome.zarr", image[None], version=version, axes="cyx",
                         chunks=(1, 128, 128), unit="micrometer")
    before = _tree_digest(src)
    assert main(["-q", "segment", str(src), "--into-input", "nuclei", "--min-distance", "7"]) == 0
    assert _tree_digest(src, skip="labels") == before
    labels = chunkseg.open_labels(src / "labels" / "nuclei")
    direct = chunkseg.segment(chunkseg.open_image(src, channel=0), min_distance=7)
    np.testing.assert_array_equal(labels.compute(), direct.compute())
    model = open_ome_zarr(zarr.open_group(str(src), mode="r"), version=version)
    assert type(model).__name__ == "Image"
    label_model = open_ome_zarr(zarr.open_group(str(src / "labels" / "nuclei"), mode="r"),
                                version=version)
    assert type(label_model).__name__ == "ImageLabel"
    lgroup = zarr.open_group(str(src / "labels"), mode="r")
    names = lgroup.attrs["ome"]["labels"] if version == "0.5" else lgroup.attrs["labels"]
    assert names == ["nuclei"]
    attrs = zarr.open_group(str(src / "labels" / "nuclei"), mode="r").attrs.asdict()
    meta = attrs["ome"] if version == "0.5" else attrs
    assert meta["image-label"]["source"] == {"image": "../../"}
    assert [a.get("unit") for a in meta["multiscales"][0]["axes"]] == ["micrometer"] * 2
    # a second label image joins the list; the first is refused without --overwrite
    assert main(["-q", "segment", str(src), "--into-input", "cells", "--method", "label"]) == 0
    lgroup = zarr.open_group(str(src / "labels"), mode="r")
    names = lgroup.attrs["ome"]["labels"] if version == "0.5" else lgroup.attrs["labels"]
    assert names == ["nuclei", "cells"]
    capsys.readouterr()
    assert main(["-q", "segment", str(src), "--into-input", "nuclei"]) == 2
    assert "nuclei exists; pass --overwrite" in capsys.readouterr().err
    assert _tree_digest(src, skip="labels") == before


def test_into_input_bad_uses(tmp_path, capsys):
    image = real_image("human-mitosis")
    plain = tmp_path / "plain.zarr"
    zarr.create_array(str(plain), data=image, chunks=(128, 128))
    assert main(["segment", str(plain), "--into-input", "nuclei"]) == 2
    assert "needs an OME-Zarr image" in capsys.readouterr().err
    src = write_ome_zarr(tmp_path / "img.zarr", image[None], axes="cyx", chunks=(1, 128, 128))
    assert main(["segment", str(src), str(tmp_path / "o.zarr"), "--into-input", "x"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["segment", str(src)]) == 2
    assert "give an OUTPUT" in capsys.readouterr().err
    assert main(["segment", str(src), "--into-input", "../evil"]) == 2
    assert "--into-input must be a plain name like 'nuclei', got '../evil'" in \
        capsys.readouterr().err
    assert main(["segment", str(src), "--into-input", "n", "--level", "1"]) == 2
    assert not (src / "labels").exists()


def test_preview_uses_pyramid_and_matches_strided_overlay(tmp_path, mosaic):
    from PIL import Image

    from chunkseg.preview import _grey, label_colours

    path, image = mosaic
    out = tmp_path / "labels.zarr"
    assert main(["-q", "segment", str(path), str(out), "--min-distance", "7"]) == 0
    png = tmp_path / "p.png"
    assert main(["-q", "preview", str(out), str(png), "--image", str(path), "--max-size",
                 "300"]) == 0
    rgb = np.asarray(Image.open(png))
    labels = chunkseg.open_labels(out).compute()
    lab, im = labels[::4, ::4], image[::4, ::4]  # level 2 (256 px) is the finest that fits
    assert rgb.shape == (256, 256, 3)
    grey = np.repeat(_grey(im)[..., None], 3, axis=2).astype(float)
    want = np.where(lab[..., None] > 0, 0.5 * grey + 0.5 * label_colours(lab), grey)
    np.testing.assert_array_equal(rgb, np.round(want).astype(np.uint8))
    # a size between levels: the level above is strided chunk by chunk
    assert main(["-q", "preview", str(out), str(tmp_path / "q.png"), "--max-size", "100"]) == 0
    q = np.asarray(Image.open(tmp_path / "q.png"))
    np.testing.assert_array_equal(q, label_colours(labels[::16, ::16]))
    assert q.shape == (64, 64, 3)
    assert main(["preview", str(out), str(tmp_path / "x.jpg")]) == 2
    assert main(["preview", str(out), str(png)]) == 2  # exists


def test_preview_3d_plane(tmp_path):
    from PIL import Image

    from chunkseg.datasets import synthetic_nuclei
    from chunkseg.preview import label_colours

    stack = synthetic_nuclei((16, 96, 96), seed=1)
    src = tmp_path / "stack.zarr"
    zarr.create_array(str(src), data=stack, chunks=(8, 48, 48))
    out = tmp_path / "labels.zarr"
    assert main(["-q", "segment", str(src), str(out), "--min-distance", "4"]) == 0
    assert main(["-q", "preview", str(out), str(tmp_path / "p.png"), "--z", "5"]) == 0
    labels = chunkseg.open_labels(out).compute()
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "p.png")),
                                  label_colours(labels[5]))
    assert main(["-q", "preview", str(out), str(tmp_path / "z.png"), "--z", "99"]) == 2


@pytest.mark.parametrize("shape, chunks, levels", [
    ((1000, 1300), (128, 100), None),  # default: Y and X halved, odd sizes, uneven chunks
    ((7, 300, 290), (3, 64, 64), None),  # 3D: Z kept
    ((300, 290), (64, 50), [((300, 290), [1, 1]), ((100, 97), [3, 3]), ((34, 33), [9, 9])]),
])
def test_pyramid_written_with_the_labels_equals_strided_labels(tmp_path, shape, chunks, levels):
    import dask.array as da

    from chunkseg.io.writers import create_labels, label_arrays, write_block
    from chunkseg.pyramid import store_blocks

    labels = np.random.default_rng(0).integers(0, 2**31, size=shape, dtype=np.uint32)
    out = tmp_path / "l.zarr"
    create_labels(out, shape=shape, chunks=chunks, dtype=np.uint32, axes="zyx"[-len(shape):],
                  levels=levels)
    store_blocks(da.from_array(labels, chunks=chunks), label_arrays(out),
                 write=write_block).compute()
    group = zarr.open_group(str(out), mode="r")
    nlevels = len([k for k in group.attrs["ome"]["multiscales"][0]["datasets"]])
    assert nlevels >= 3
    stride = 1
    for level in range(nlevels):
        want = labels[..., ::stride, ::stride]
        np.testing.assert_array_equal(group[str(level)][:], want, err_msg=f"level {level}")
        stride *= 2 if levels is None else 3


@pytest.mark.parametrize("fuse", [False, True])
def test_watershed_blocks_made_inside_their_write_tasks(tmp_path, fuse):
    """``fuse``: each watershed block is made by the task that writes it (one task a
    chunk fewer); the written labels and the pyramid are the same either way."""
    import dask
    import dask.array as da
    from dask.callbacks import Callback

    import chunkseg
    from chunkseg.datasets import synthetic_nuclei
    from chunkseg.io.writers import create_labels, label_arrays, write_block
    from chunkseg.pyramid import store_blocks

    x = da.from_array(synthetic_nuclei((300, 340), seed=4), chunks=(100, 120))
    with dask.config.set(scheduler="threads"):
        labels = chunkseg.segment(x, min_distance=6)
        want = labels.compute()
        out = tmp_path / "l.zarr"
        create_labels(out, shape=labels.shape, chunks=(100, 120), dtype=labels.dtype, axes="yx")
        store = store_blocks(labels, label_arrays(out), write=write_block, fuse=fuse)
        ran = []
        with Callback(pretask=lambda key, dsk, state: ran.append(key)):
            store.compute()
    made_apart = [k for k in ran if isinstance(k, tuple) and k[0] == labels.name]
    assert bool(made_apart) is not fuse
    np.testing.assert_array_equal(zarr.open_group(str(out), mode="r")["0"][:], want)
    np.testing.assert_array_equal(zarr.open_group(str(out), mode="r")["1"][:], want[::2, ::2])


def test_background_chunks_are_written_so_an_output_reads_back_as_an_image(tmp_path):
    """zarr's write_empty_chunks is a setting of the open array: every array chunkseg writes
    labels into must carry it, or an all-background chunk is left out of the store."""
    from chunkseg.datasets import synthetic_nuclei

    image = synthetic_nuclei((256, 256), seed=1)
    image[:128, :128] = 0  # four empty chunks of 64x64
    zarr.create_array(str(tmp_path / "in.zarr"), data=image, chunks=(64, 64),
                      config={"write_empty_chunks": True})
    assert main(["-q", "segment", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"),
                 "--min-distance", "5"]) == 0
    assert (tmp_path / "out.zarr" / "0" / "c" / "0" / "0").exists()
    again = chunkseg.open_image(tmp_path / "out.zarr")  # missing chunks are an error here
    np.testing.assert_array_equal(again.compute(),
                                  chunkseg.open_labels(tmp_path / "out.zarr").compute())
