"""Euclidean distance transform of a (padded) block, and where it is exact."""

from __future__ import annotations

import edt
import numpy as np
import scipy.ndimage as ndi


def is_isotropic(sampling) -> bool:
    return sampling is None or all(float(s) == 1.0 for s in sampling)


def levels(mask: np.ndarray, sampling=None) -> np.ndarray:
    """Flooding levels of the distance map: larger means farther from background.

    Isotropic grids give the exact squared distance as float64 integers (the
    ``edt`` package, 3-4x faster than scipy); anisotropic ``sampling`` gives
    scipy's float64 distance itself. Either is order-equivalent to the
    distance scikit-image's pipeline uses, ties included. A block without any
    background gives ``inf`` everywhere (nothing can be proven there).
    """
    if mask.all():
        return np.full(mask.shape, np.inf)
    if is_isotropic(sampling):
        return edt.edtsq(np.ascontiguousarray(mask), black_border=False).astype(np.float64)
    return ndi.distance_transform_edt(mask, sampling=sampling)


def distance_from_levels(lv: np.ndarray, sampling=None) -> np.ndarray:
    """The Euclidean distance, bit-identical to ``scipy.ndimage.distance_transform_edt``."""
    return np.sqrt(lv) if is_isotropic(sampling) else lv


def cut_distance(shape, cuts, sampling=None) -> np.ndarray:
    """Per pixel, the distance to the nearest pixel beyond an interior cut.

    ``cuts`` is a sequence of ``(low, high)`` booleans per axis: True where
    that side of the block is a cut through the image (data lies beyond it),
    False where it is the image's own edge. A distance computed inside the
    block is exact wherever it is no larger than this.
    """
    sampling = (1.0,) * len(shape) if sampling is None else tuple(float(s) for s in sampling)
    out = np.full(shape, np.inf)
    for axis, (n, (low, high), s) in enumerate(zip(shape, cuts, sampling)):
        idx = np.arange(n, dtype=np.float64)
        vec = np.full(n, np.inf)
        if low:
            vec = np.minimum(vec, (idx + 1) * s)
        if high:
            vec = np.minimum(vec, (n - idx) * s)
        view = [1] * len(shape)
        view[axis] = n
        out = np.minimum(out, vec.reshape(view))
    return out


def proven(lv: np.ndarray, cuts, sampling=None) -> np.ndarray:
    """Where the block's distance equals the whole image's distance."""
    d = distance_from_levels(lv, sampling)
    return d <= cut_distance(lv.shape, cuts, sampling)


def edge_band(shape, cuts, width: int) -> np.ndarray:
    """Pixels within ``width`` of an interior cut of the block."""
    band = np.zeros(shape, dtype=bool)
    if width <= 0:
        return band
    for axis, (low, high) in enumerate(cuts):
        sl = [slice(None)] * len(shape)
        if low:
            sl[axis] = slice(0, width)
            band[tuple(sl)] = True
        if high:
            sl[axis] = slice(max(shape[axis] - width, 0), None)
            band[tuple(sl)] = True
    return band
