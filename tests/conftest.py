from pathlib import Path

import numpy as np
import pytest
import tifffile

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def real_path(name: str) -> Path:
    """The file of a real image in ../shared/data (the test is skipped where it is absent)."""
    paths = {
        "dsb2018": "dsb2018-stardist/img2d.tif",
        "s-biad634": "s-biad634/images/Ganglioneuroblastoma_0.tif",
        "human-mitosis": "human-mitosis/human_mitosis.tif",
        "bbbc034": "bbbc034-dna/AICS_12_134_C2.tif",
        "bbbc038": "bbbc038/0bf4b1.tif",
        "bbbc022": "bbbc022/IXMtest_A02_s9.tif",
        "cells3d": "cells3d-nuclei-plane/nuclei.tif",
        "idr853-3d": "idr853-3d/c5image.tif",
        "stardist-3d": "stardist-3d-synthetic/img3d.tif",
    }
    path = DATA / paths[name]
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def real_image(name: str) -> np.ndarray:
    """A real image from ../shared/data, as the 2D/3D grayscale array tests use."""
    image = tifffile.imread(real_path(name))
    if name == "s-biad634":
        image = image[..., 0]
    if name == "bbbc022":
        image = image[0]
    return np.ascontiguousarray(image)


REAL_2D = ["dsb2018", "s-biad634", "human-mitosis", "bbbc034", "bbbc038", "bbbc022", "cells3d"]
REAL_3D = ["idr853-3d", "stardist-3d"]
