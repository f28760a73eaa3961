"""Colour deconvolution of one RGB block: the optical density of one stain.

``optical_density(block, conv, k)`` equals
``skimage.color.separate_stains(block, conv)[..., k]`` bit for bit, for any
block of any image: the per-value part (float conversion, the floor at
1e-6, the log and its scaling) is looked up for 8- and 16-bit images from a
table that scikit-image's own arithmetic filled, and the product with the
matrix is numpy's, on the block as one row of pixels (a row of one pixel
takes another product path in numpy, so it is doubled: tested).
"""

from __future__ import annotations

import functools

import numpy as np

#: the floor scikit-image puts under every value before the log (separate_stains)
_FLOOR = 1e-6


def _log_scaled(rgb: np.ndarray) -> np.ndarray:
    """``log(max(img_as_float(rgb), 1e-6)) / log(1e-6)``, as skimage.color computes it."""
    from skimage.color.colorconv import _prepare_colorarray

    x = _prepare_colorarray(rgb, force_copy=True, channel_axis=-1)
    np.maximum(x, _FLOOR, out=x)
    return np.log(x) / np.log(_FLOOR)


@functools.lru_cache(maxsize=4)
def _table(dtype: str) -> np.ndarray:
    """The per-value part for every value of an 8- or 16-bit dtype."""
    info = np.iinfo(np.dtype(dtype))
    v = np.arange(info.min, int(info.max) + 1).astype(dtype)
    return np.ascontiguousarray(_log_scaled(np.stack([v, v, v], axis=-1)[None])[0, :, 0])


def optical_density(block: np.ndarray, conv: np.ndarray, k: int) -> np.ndarray:
    """Stain ``k`` of an (..., 3) RGB block under the stain-from-RGB matrix ``conv``."""
    shape = block.shape[:-1]
    flat = block.reshape(1, -1, 3)
    if flat.dtype.kind in "ui" and flat.dtype.itemsize <= 2:
        table = _table(flat.dtype.str)
        index = flat.astype(np.int64) - np.iinfo(flat.dtype).min if flat.dtype.kind == "i" \
            else flat
        x = table[index]
    else:
        x = _log_scaled(flat)
    n = x.shape[1]
    if n == 1:
        x = np.concatenate([x, x], axis=1)
    stains = x @ conv  # float64 matrix, as scikit-image passes it
    out = np.maximum(stains[0, :n, k], 0)
    return out.reshape(shape)


def macenko(rgb: np.ndarray, *, beta: float = 0.15, alpha: float = 1.0) -> np.ndarray:
    """Two stain vectors (rows, unit length, in RGB optical density) by Macenko's method.

    Pixels whose optical density has a norm of at least ``beta`` (not glass;
    a floor in every channel, as some implementations have, drops the pixels
    of eosin alone, which absorbs little red and blue) give the plane of their two main directions; the stains are the
    directions at the ``alpha`` and ``100 - alpha`` percentiles of the
    angle within that plane. The first row is the one absorbing more red
    (hematoxylin, blue-purple), the second eosin. M. Macenko et al., "A method
    for normalizing histology slides for quantitative analysis", ISBI 2009.
    """
    od = -np.log((rgb.reshape(-1, 3).astype(np.float64) + 1.0) / 256.0)
    od = od[np.linalg.norm(od, axis=1) >= beta]
    if len(od) < 100:
        raise ValueError(f"only {len(od)} pixels are stained (optical density of norm >= "
                         f"{beta}): too few to estimate stain vectors")
    _, vectors = np.linalg.eigh(np.cov(od, rowvar=False))
    plane = vectors[:, 1:3]  # the two largest
    projected = od @ plane
    phi = np.arctan2(projected[:, 1], projected[:, 0])
    lo, hi = np.percentile(phi, [alpha, 100 - alpha])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    v1, v2 = (v1 if v1.sum() >= 0 else -v1), (v2 if v2.sum() >= 0 else -v2)
    first, second = (v1, v2) if v1[0] >= v2[0] else (v2, v1)
    return np.stack([first / np.linalg.norm(first), second / np.linalg.norm(second)])
