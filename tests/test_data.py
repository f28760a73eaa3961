"""The real images the tests carry equal the originals in ../shared/data, where it exists."""

import hashlib

import numpy as np
import pytest
import tifffile

from chunkseg.datasets import human_mitosis

from .conftest import _FILES, SHARED, real_image, real_path

_ORIGINAL = dict(_FILES, **{"s-biad634": "s-biad634/images/Ganglioneuroblastoma_0.tif",
                            "human-mitosis": "human-mitosis/human_mitosis.tif"})


@pytest.mark.parametrize("name", sorted(_ORIGINAL))
def test_carried_image_has_its_source_and_is_an_image(name):
    path = real_path(name)
    assert (path.parent / "SOURCE.txt").exists() or name == "human-mitosis"
    image = real_image(name)
    assert image.ndim in (2, 3) and image.size > 0 and np.ptp(image) > 0


def test_bundled_human_mitosis_is_scikit_image_s():
    # skimage/data/_registry.py lists data/mitosis.tif with this sha256
    digest = hashlib.sha256(real_path("human-mitosis").read_bytes()).hexdigest()
    assert digest.startswith("2751ba667c") and digest.endswith("cb456")
    assert human_mitosis().shape == (512, 512)


#: sha256 (first 16 digits) of each original's pixels (s-biad634: channel 0), read from
#: ../shared/data when the images were copied in
_PIXELS = {
    "dsb2018": "8952cab7611450bd",
    "s-biad634": "f9fb2d3e93603efc",
    "bbbc034": "871744254a6f87b7",
    "bbbc038": "840c3154fee74efb",
    "bbbc022": "f833f7f217bf7434",
    "cells3d": "3a6354cfce5dbd6c",
    "idr853-3d": "6a4c55d68bd58504",
    "stardist-3d": "9fc635b29b1a5c41",
    "human-mitosis": "868c3327e26eb8e1",
}


def _pixels(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(_ORIGINAL))
def test_carried_pixels_equal_the_original(name):
    carried = tifffile.imread(real_path(name))
    assert _pixels(carried) == _PIXELS[name]
    original = SHARED / _ORIGINAL[name]
    if original.exists():  # beside the shared folder: against the file itself too
        want = tifffile.imread(original)
        np.testing.assert_array_equal(carried, want[..., 0] if name == "s-biad634" else want)
