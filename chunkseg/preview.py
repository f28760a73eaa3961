"""A picture of a label image: random label colours over the grey image (or the colours of
an RGB slide), downsampled.

The labels come from the coarsest-but-large-enough pyramid level of the
label group (or are strided chunk by chunk); the image is strided chunk by
chunk to the same grid. Nothing full-size is ever in memory.
"""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np

from ._layout import level_steps
from .io import readers
from ._validate import InputError, check_int

__all__ = ["preview", "label_colours"]

_LUT_SIZE = 4096


def label_colours(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """RGB uint8 colours for label ids: a fixed table of random colours, id 0 black."""
    rng = np.random.default_rng(seed)
    lut = rng.integers(40, 256, size=(_LUT_SIZE, 3), dtype=np.uint8)
    rgb = lut[(labels.astype(np.uint64) % np.uint64(_LUT_SIZE)).astype(np.intp)]
    rgb[labels == 0] = 0
    return rgb


def _grey(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float64)
    lo, hi = np.percentile(image, (0.5, 99.5)) if image.size else (0.0, 1.0)
    scaled = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def _colour(image: np.ndarray) -> np.ndarray:
    """An RGB image as 8-bit colours (other integer and float ranges scaled)."""
    if image.dtype == np.uint8:
        return image
    top = np.iinfo(image.dtype).max if image.dtype.kind in "ui" else 1.0
    return (np.clip(image.astype(np.float64) / top, 0, 1) * 255).astype(np.uint8)


def _pick_level(levels, max_size: int) -> int:
    """The finest level whose Y and X fit in ``max_size``, or the coarsest one."""
    for level, x in enumerate(levels):
        if max(x.shape[-2:]) <= max_size:
            return level
    return len(levels) - 1


def _plane(x, z):
    if x.ndim == 3:
        z = x.shape[0] // 2 if z is None else z
        if not 0 <= z < x.shape[0]:
            raise InputError(f"`z` {z} is outside the stack (0..{x.shape[0] - 1})")
        return x[z]
    return x


def preview(labels, out=None, *, image=None, max_size: int = 2048, z: int | None = None,
            alpha: float = 0.5, channel=None) -> np.ndarray:
    """Render a downsampled overlay of a chunkseg label output (and write it as PNG).

    Parameters
    ----------
    labels : path of a label output (``chunkseg segment``'s OME-Zarr labels)
    out : path of the PNG to write (optional)
    image : path of the image the labels belong to (optional; grey background)
    max_size : largest side of the picture in pixels
    z : plane of a 3D stack (default: the middle one)

    Returns the RGB picture as a uint8 array.
    """
    max_size = check_int("max_size", max_size, minimum=16)
    if out is not None and not str(out).lower().endswith(".png"):
        raise InputError(f"preview {out} must end in .png")
    full = readers.open_labels(labels)  # checks presence and completeness
    levels = readers.label_levels(labels)
    level = _pick_level(levels, max_size)
    shapes = [x.shape for x in levels[: level + 1]]
    strides = np.prod([(1,) * full.ndim] + level_steps(shapes), axis=0)  # level 0 -> level
    if full.ndim == 3 and z is not None:
        if not 0 <= z < full.shape[0]:
            raise InputError(f"`z` {z} is outside the stack (0..{full.shape[0] - 1})")
        z = z // int(strides[0])
    lab = _plane(levels[level], z)
    step = max(1, -(-max(lab.shape) // max_size))
    lab = lab[::step, ::step]
    total = [int(s) * step for s in strides[-2:]]  # level-0 pixels per preview pixel
    im, colour = None, False
    if image is not None:
        info = readers.inspect_image(image)
        colour = channel is None and any(
            a in "cs" and n == 3 for a, n in zip(info.axes, info.shape))
        if colour:  # a brightfield slide: the labels over its own colours
            opened = readers.read_image(image, rgb=True)
            im = da.moveaxis(opened.array, next(i for i, a in enumerate(opened.axes)
                                                if a in "cs"), -1)
            spatial = im.shape[:-1]
        else:
            im = readers.open_image(image, channel=channel)
            spatial = im.shape
        if spatial != full.shape:
            raise InputError(f"`image` (shape {spatial}) must have the shape of the labels "
                             f"({full.shape})")
        zi = None if full.ndim == 2 else (z if z is None else z * int(strides[0]))
        if full.ndim == 3 and zi is None:
            zi = (levels[level].shape[0] // 2) * int(strides[0])
        im = (im if colour else _plane(im, zi))[::total[0], ::total[1]]
    lab, im = dask.compute(lab, im)
    rgb = label_colours(lab)
    if im is not None:
        grey = (_colour(im) if colour else np.repeat(_grey(im)[..., None], 3, axis=2)) \
            .astype(np.float64)
        blend = np.where(lab[..., None] > 0, (1 - alpha) * grey + alpha * rgb, grey)
        rgb = np.round(blend).astype(np.uint8)
    if out is not None:
        from PIL import Image

        Image.fromarray(rgb, mode="RGB").save(Path(out))
    return rgb
