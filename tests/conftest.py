from pathlib import Path

import numpy as np
import tifffile

#: The real images the tests use, carried in the repository (each folder has its SOURCE.txt).
DATA = Path(__file__).resolve().parent / "data"
#: Where a checkout beside the project's shared folder finds more (never the only copy).
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

_FILES = {
    "dsb2018": "dsb2018-stardist/img2d.tif",
    "s-biad634": "s-biad634/Ganglioneuroblastoma_0.tif",  # channel 0 of the three identical
    "bbbc034": "bbbc034-dna/AICS_12_134_C2.tif",
    "bbbc038": "bbbc038/0bf4b1.tif",
    "bbbc022": "bbbc022/IXMtest_A02_s9.tif",
    "cells3d": "cells3d-nuclei-plane/nuclei.tif",
    "idr853-3d": "idr853-3d/c5image.tif",
    "stardist-3d": "stardist-3d-synthetic/img3d.tif",
}


def real_path(name: str) -> Path:
    """The file of a real image the tests carry (``human-mitosis``: the package's own)."""
    if name == "human-mitosis":
        import chunkseg

        return Path(chunkseg.__file__).parent / "data" / "human_mitosis.tif"
    path = DATA / _FILES[name]
    assert path.exists(), f"{path} is missing from the repository"
    return path


def real_image(name: str) -> np.ndarray:
    """A real image, as the 2D/3D grayscale array tests use (bbbc022: its Hoechst channel)."""
    image = tifffile.imread(real_path(name))
    if name == "bbbc022":
        image = image[0]
    return np.ascontiguousarray(image)


REAL_2D = ["dsb2018", "s-biad634", "human-mitosis", "bbbc034", "bbbc038", "bbbc022", "cells3d"]
REAL_3D = ["idr853-3d", "stardist-3d"]
