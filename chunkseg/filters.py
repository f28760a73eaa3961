"""Pre-filters and threshold specs: chunked with the exact halo each kernel needs.

Every filter equals its scipy twin on the whole image: each chunk is padded
with the kernel's reach (``map_overlap`` with ``boundary="none"``, so the
image edges use the filter's own mode exactly as on the whole image).
"""

from __future__ import annotations

import functools
import math

import dask.array as da
import numpy as np
import scipy.ndimage as ndi

from . import _graph
from ._validate import InputError, check_int

__all__ = [
    "background_subtract",
    "gaussian",
    "median",
    "parse_filter",
    "parse_threshold",
    "prefilter",
]

_LOCAL_METHODS = ("gaussian", "mean", "median")


def _gaussian_block(block, *, sigma):
    return ndi.gaussian_filter(block.astype(np.float64), sigma, mode="nearest")


def _median_block(block, *, size):
    return ndi.median_filter(block, size=size, mode="reflect")


def _background_block(block, *, sigma):
    values = block.astype(np.float64)
    return values - ndi.gaussian_filter(values, sigma, mode="nearest")


def _overlap(x: da.Array, kernel, depth, dtype) -> da.Array:
    x = _graph.rechunk_for_depth(x, depth)
    return x.map_overlap(kernel, depth=depth, boundary="none", dtype=dtype,
                         meta=np.empty((0,) * x.ndim, dtype=dtype))


def _sigma(sigma, ndim, name):
    sig = tuple(float(s) for s in np.broadcast_to(np.asarray(sigma, dtype=float), (ndim,)))
    if not all(s >= 0 and math.isfinite(s) for s in sig):
        raise InputError(f"{name} sigma must be non-negative and finite, got {sigma!r}")
    return sig


def gaussian_reach(sigma) -> tuple[int, ...]:
    """The halo of a Gaussian filter per axis: scipy's radius ``int(4 * sigma + 0.5)``
    (``truncate=4``, scikit-image's and scipy's default)."""
    return tuple(int(4.0 * float(s) + 0.5) for s in sigma)


def gaussian(image, sigma) -> da.Array:
    """``scipy.ndimage.gaussian_filter(image.astype(float64), sigma, mode="nearest")``, chunked."""
    x = _graph.as_dask(image)
    sig = _sigma(sigma, x.ndim, "gaussian")
    return _overlap(x, functools.partial(_gaussian_block, sigma=sig), gaussian_reach(sig),
                    np.float64)


def median(image, size: int) -> da.Array:
    """``scipy.ndimage.median_filter(image, size, mode="reflect")``, chunked (dtype kept)."""
    x = _graph.as_dask(image)
    size = check_int("size", size)
    depth = (size // 2,) * x.ndim
    return _overlap(x, functools.partial(_median_block, size=size), depth, x.dtype)


def background_subtract(image, sigma) -> da.Array:
    """``image - gaussian_filter(image, sigma, mode="nearest")`` in float64, chunked."""
    x = _graph.as_dask(image)
    sig = _sigma(sigma, x.ndim, "background")
    return _overlap(x, functools.partial(_background_block, sigma=sig), gaussian_reach(sig),
                    np.float64)


def parse_filter(spec, *, name: str = "smooth"):
    """``"gaussian:SIGMA"``, ``"median:SIZE"`` or a bare number (a Gaussian sigma)."""
    if spec is None:
        return None
    if isinstance(spec, (int, float, np.number)) and not isinstance(spec, bool):
        return ("gaussian", float(spec))
    if isinstance(spec, tuple) and len(spec) == 2:
        return spec
    text = str(spec)
    kind, _, value = text.partition(":")
    try:
        if kind == "gaussian" and value:
            return ("gaussian", float(value))
        if kind == "median" and value and name == "smooth":
            return ("median", int(value))
        if not value:
            return ("gaussian", float(kind))
    except ValueError:
        pass
    allowed = "gaussian:SIGMA or median:SIZE" if name == "smooth" else "gaussian:SIGMA"
    raise InputError(f"`{name}` must be {allowed}, got {text!r}")


def prefilter(image: da.Array, *, smooth=None, background=None) -> da.Array:
    """Background subtraction, then smoothing, as a lazy chunked image."""
    x = image
    bg = parse_filter(background, name="background")
    if bg is not None:
        if bg[0] != "gaussian":
            raise InputError(f"`background` must be gaussian:SIGMA, got {background!r}")
        x = background_subtract(x, bg[1])
    sm = parse_filter(smooth)
    if sm is not None:
        x = gaussian(x, sm[1]) if sm[0] == "gaussian" else median(x, sm[1])
    return x


def parse_threshold(spec):
    """A threshold spec: a method name, a number, a callable, or ``local:BLOCK[:OFFSET[:METHOD]]``.

    Returns the spec unchanged, except local specs, which become
    ``("local", block, offset, method)``.
    """
    if isinstance(spec, tuple) and spec and spec[0] == "local":
        return spec
    if not (isinstance(spec, str) and spec.startswith("local")):
        return spec
    parts = spec.split(":")
    usage = f"`threshold` must be local:BLOCK[:OFFSET[:METHOD]] (odd BLOCK, METHOD {'/'.join(_LOCAL_METHODS)}), got {spec!r}"
    if len(parts) < 2 or len(parts) > 4 or parts[0] != "local":
        raise InputError(usage)
    try:
        block = int(parts[1])
        offset = float(parts[2]) if len(parts) > 2 and parts[2] else 0.0
    except ValueError:
        raise InputError(usage) from None
    method = parts[3] if len(parts) > 3 else "gaussian"
    if block < 3 or block % 2 == 0 or method not in _LOCAL_METHODS:
        raise InputError(usage)
    return ("local", block, offset, method)


def describe_threshold(spec) -> str:
    if isinstance(spec, tuple) and spec and spec[0] == "local":
        return f"local:{spec[1]}:{spec[2]:g}:{spec[3]}"
    return str(spec)
