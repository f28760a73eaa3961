"""Euclidean distance transform of a (padded) block, and where it is exact."""

from __future__ import annotations

import edt
import numpy as np
import scipy.ndimage as ndi


def is_isotropic(sampling) -> bool:
    return sampling is None or all(float(s) == 1.0 for s in sampling)


def levels(mask: np.ndarray, sampling=None) -> np.ndarray:
    """Flooding levels of the distance map: larger means farther from background.

    Isotropic grids give the exact squared distance as float32 integers (the
    ``edt`` package, 3-4x faster than scipy; exact while the distance stays
    below 4096 px); anisotropic ``sampling`` gives
    scipy's float64 distance itself. Either is order-equivalent to the
    distance scikit-image's pipeline uses, ties included. A block without any
    background gives ``inf`` everywhere (nothing can be proven there).
    """
    if mask.all():
        return np.full(mask.shape, np.inf)
    if is_isotropic(sampling):
        # one label of uint8 (a view of the booleans): 1.2x (2D) to 1.8x (3D) faster
        # than edt's path for bool input, same values
        return edt.edtsq(np.ascontiguousarray(mask, dtype=bool).view(np.uint8), black_border=False)
    return ndi.distance_transform_edt(mask, sampling=sampling)


def distance_from_levels(lv: np.ndarray, sampling=None) -> np.ndarray:
    """The Euclidean distance, bit-identical to ``scipy.ndimage.distance_transform_edt``."""
    return np.sqrt(np.asarray(lv, dtype=np.float64)) if is_isotropic(sampling) else lv


def cut_distance(shape, cuts, sampling=None) -> np.ndarray:
    """Per pixel, the distance to the nearest pixel beyond an interior cut.

    ``cuts`` is a sequence of ``(low, high)`` booleans per axis: True where
    that side of the block is a cut through the image (data lies beyond it),
    False where it is the image's own edge. A distance computed inside the
    block is exact wherever it is no larger than this.
    """
    sampling = (1.0,) * len(shape) if sampling is None else tuple(float(s) for s in sampling)
    out = None
    for axis, (n, (low, high), s) in enumerate(zip(shape, cuts, sampling)):
        if not (low or high):
            continue
        idx = np.arange(n, dtype=np.float64)
        vec = np.full(n, np.inf)
        if low:
            vec = np.minimum(vec, (idx + 1) * s)
        if high:
            vec = np.minimum(vec, (n - idx) * s)
        view = [1] * len(shape)
        view[axis] = n
        vec = vec.reshape(view).astype(np.float32 if sampling == (1.0,) * len(shape) else np.float64)
        out = vec if out is None else np.minimum(out, vec)
    if out is None:
        return np.full(shape, np.inf)
    return np.broadcast_to(out, shape)


def proven(lv: np.ndarray, cuts, sampling=None) -> np.ndarray:
    """Where the block's distance equals the whole image's distance."""
    if is_isotropic(sampling):
        # compare squared integers: no square root, no float64 copy
        cut = cut_distance(lv.shape, cuts, None)
        return lv <= np.square(cut, dtype=np.float32)
    return lv <= cut_distance(lv.shape, cuts, sampling)


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


def box_max(a: np.ndarray, size: int) -> np.ndarray:
    """Maximum over an all-ones window of side ``size``, clipped at the edges.

    Equals ``scipy.ndimage.maximum_filter(a, size, mode="nearest")`` (for a
    maximum, repeating the edge value is the same as clipping the window),
    as separable shifted maxima: several times faster for small windows.
    """
    if size > 9:
        return ndi.maximum_filter(a, size=size, mode="nearest")
    out = a.copy()
    lo, hi = size // 2, (size - 1) // 2
    for axis in range(a.ndim):
        src = out.copy() if lo + hi else out
        for shift in range(1, lo + 1):  # window reaches back
            dst = [slice(None)] * a.ndim
            sl = [slice(None)] * a.ndim
            dst[axis], sl[axis] = slice(shift, None), slice(None, -shift)
            np.maximum(out[tuple(dst)], src[tuple(sl)], out=out[tuple(dst)])
        for shift in range(1, hi + 1):  # and forward
            dst = [slice(None)] * a.ndim
            sl = [slice(None)] * a.ndim
            dst[axis], sl[axis] = slice(None, -shift), slice(shift, None)
            np.maximum(out[tuple(dst)], src[tuple(sl)], out=out[tuple(dst)])
    return out
