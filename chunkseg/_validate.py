"""Checks on input that run before any work starts, with one clear message each."""

from __future__ import annotations

import numpy as np


class InputError(ValueError):
    """Input chunkseg cannot work on; the message names the problem and the fix."""


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
    if any(int(s) == 0 for s in shape):
        raise InputError(f"`{name}` is empty (shape {tuple(shape)}); give a non-empty image")


def check_int(name: str, value, *, minimum: int = 1) -> int:
    """An integer parameter of at least ``minimum``; ``name`` as the message shows it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = ("a positive integer" if minimum == 1 else
                "a non-negative integer" if minimum == 0 else f"an integer of at least {minimum}")
        raise InputError(f"{name} must be {what}, got {value!r}")
    return int(value)


def check_numeric_for_threshold(dtype, *, name: str = "image") -> None:
    if np.dtype(dtype).kind == "b":
        raise InputError(
            f"`{name}` is boolean, so it is already a mask; threshold an intensity image"
        )
