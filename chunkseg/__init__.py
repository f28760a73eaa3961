"""chunkseg: segment images far larger than memory, chunk by chunk on Dask.

The labels equal those of the whole-image scikit-image pipeline, and memory
is bounded by the chunk, not the image.
"""

import sys
import types
from importlib.metadata import PackageNotFoundError, version

from ._lazy import attach
from ._validate import InputError

try:
    __version__ = version("chunkseg")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

#: Where each public name lives, imported on first use (:mod:`chunkseg._lazy`).
_PUBLIC = {
    "inspect_image": "io", "open_image": "io", "open_labels": "io", "to_zarr": "io",
    "measure": "table", "to_geojson": "geojson",
    "clear_border": "relabel", "relabel_sequential": "relabel",
    "remove_small_objects": "relabel", "renumber": "relabel",
    "label": "stitch",
    "cells_from_nuclei": "cells", "elevation_of": "cells", "expand_labels": "cells",
    "seeded_watershed": "cells",
    "HaloTooSmallError": "segment", "Seeds": "segment",
    "distance_transform_edt": "segment", "find_seeds": "segment", "foreground": "segment",
    "segment": "segment", "watershed": "segment",
    "METHODS": "threshold", "threshold": "threshold", "threshold_isodata": "threshold",
    "threshold_li": "threshold", "threshold_local": "threshold",
    "threshold_mean": "threshold", "threshold_minimum": "threshold",
    "threshold_multiotsu": "threshold", "threshold_otsu": "threshold",
    "threshold_triangle": "threshold", "threshold_yen": "threshold",
}


#: Public names that are also the names of their modules (chunkseg.segment, chunkseg.threshold)
_SHADOWED = {name for name, module in _PUBLIC.items() if name == module}


class _Package(types.ModuleType):
    """``chunkseg.segment`` and ``chunkseg.threshold`` are functions, though modules of
    those names exist: importing the module sets the package's attribute to it, and here
    the function is kept instead (as the eager ``from .segment import segment`` did)."""

    def __setattr__(self, name, value):
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
__getattr__, __dir__ = attach(__name__, _PUBLIC)


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
    "to_geojson",
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
