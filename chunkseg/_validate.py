"""Checks on input that run before any work starts, with one clear message each."""

from __future__ import annotations

import numpy as np


class InputError(ValueError):
    """Input chunkseg cannot work on; the message names the problem and the fix."""


class HaloTooSmallError(ValueError):
    """The objects in the data reach farther than the halo allows (names the chunk and a halo
    that would do)."""


class ChunkWriteError(RuntimeError):
    """An output chunk could not be written (the store went away, or refused it); names the
    chunk and the store. The output stays incomplete and resumable."""


class ChunkReadError(RuntimeError):
    """An input chunk could not be read (corrupt or missing); names the chunk and the store."""


def check_image_array(shape, dtype, *, name: str = "image") -> None:
    """Refuse empty arrays and dtypes that are not real numbers."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise InputError(
            f"`{name}` has complex dtype {dtype}; segment a real-valued image "
            "(e.g. numpy.abs(image) for a magnitude)"
        )
    if dtype.kind not in "biuf":
        raise InputError(
            f"`{name}` has dtype {dtype}, which is not numeric; convert it to an "
            "integer or float dtype"
        )
    if len(shape) == 0:
        raise InputError(f"`{name}` is a 0-d scalar; give a 2D or 3D image")
    if any(s == s and int(s) == 0 for s in shape):  # NaN: a size known only when computed
        raise InputError(f"`{name}` is empty (shape {tuple(shape)}); give a non-empty image")


def check_int(name: str, value, *, minimum: int = 1) -> int:
    """An integer parameter of at least ``minimum``; ``name`` is the Python parameter.

    Messages name parameters in backticks (```min_size```); the CLI shows
    each as its flag (``--min-size``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = ("a positive integer" if minimum == 1 else
                "a non-negative integer" if minimum == 0 else f"an integer of at least {minimum}")
        raise InputError(f"`{name}` must be {what}, got {value!r}")
    return int(value)


def check_sampling(sampling, ndim: int, *, name: str = "sampling"):
    """Voxel spacing: one positive finite number per axis (or one for all); None where the
    grid is isotropic (every pipeline step then takes its exact integer path)."""
    if sampling is None:
        return None
    try:
        values = np.broadcast_to(np.asarray(sampling, dtype=float), (ndim,))
    except (TypeError, ValueError):
        raise InputError(f"`{name}` must be {ndim} positive numbers (or one), got "
                         f"{sampling!r}") from None
    sampling = tuple(float(s) for s in values)
    if not all(s > 0 and np.isfinite(s) for s in sampling):
        raise InputError(f"`{name}` must be positive and finite, got {sampling}")
    return None if len(set(sampling)) == 1 and sampling[0] == 1.0 else sampling


def check_classes(method, threshold, classes) -> None:
    """``classes`` belongs to class maps: method threshold with multiotsu."""
    if classes is None:
        if threshold == "multiotsu" and method != "threshold":
            raise InputError("multiotsu gives a class map: use `method` threshold (with "
                             "`classes` N)")
        return
    if threshold != "multiotsu" or method != "threshold":
        raise InputError("`classes` goes with `method` threshold and `threshold` multiotsu")
    check_int("classes", classes, minimum=2)


def check_numeric_for_threshold(dtype, *, name: str = "image") -> None:
    if np.dtype(dtype).kind == "b":
        raise InputError(
            f"`{name}` is boolean, so it is already a mask; threshold an intensity image"
        )


def time_text(time):
    """A time selection as a run records and shows it: ``A:B`` for a ``(start, stop)``
    pair (either end may be empty), anything else as it is."""
    if isinstance(time, tuple):
        return ":".join("" if v is None else str(v) for v in time)
    return time
