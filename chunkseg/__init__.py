"""chunkseg: segment images far larger than memory, chunk by chunk on Dask.

The labels equal those of the whole-image scikit-image pipeline, and memory
is bounded by the chunk, not the image.
"""

from importlib.metadata import PackageNotFoundError, version

from ._validate import InputError
from .io import inspect_image, open_image, open_labels, to_zarr
from .table import measure
from .relabel import clear_border, relabel_sequential, remove_small_objects, renumber
from .stitch import label
from .cells import cells_from_nuclei, elevation_of, expand_labels, seeded_watershed
from .segment import (
    HaloTooSmallError,
    Seeds,
    distance_transform_edt,
    find_seeds,
    foreground,
    segment,
    watershed,
)
from .threshold import (
    METHODS,
    threshold,
    threshold_isodata,
    threshold_li,
    threshold_local,
    threshold_mean,
    threshold_minimum,
    threshold_multiotsu,
    threshold_otsu,
    threshold_triangle,
    threshold_yen,
)

try:
    __version__ = version("chunkseg")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "HaloTooSmallError",
    "cells_from_nuclei",
    "elevation_of",
    "expand_labels",
    "seeded_watershed",
    "clear_border",
    "label",
    "measure",
    "relabel_sequential",
    "remove_small_objects",
    "renumber",
    "InputError",
    "Seeds",
    "distance_transform_edt",
    "find_seeds",
    "foreground",
    "inspect_image",
    "open_image",
    "open_labels",
    "segment",
    "to_zarr",
    "watershed",
    "METHODS",
    "threshold",
    "threshold_isodata",
    "threshold_li",
    "threshold_local",
    "threshold_mean",
    "threshold_minimum",
    "threshold_multiotsu",
    "threshold_otsu",
    "threshold_triangle",
    "threshold_yen",
]
