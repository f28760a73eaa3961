"""Tissue detection: where a slide holds tissue, so that the glass is neither read nor
segmented.

``detect(level)`` finds the tissue on one low-resolution level (in memory:
it is small) as Otsu's threshold of the optical density summed over R, G and
B (glass is bright and colourless: near 0; stained tissue absorbs), capped at
:data:`GLASS_OD` so that a slide that is all tissue keeps all of it, then a
closing and a dilation by :data:`MARGIN` low-resolution pixels so that no
nucleus on the edge of the tissue is cut. Single-channel images use the
image itself (inverted for dark objects) instead of the optical density.

The mask is used at full resolution by nearest-neighbour upsampling
(:func:`upsample`: full-resolution pixel ``y`` looks at low-resolution row
``y * h_low // h``); :func:`restrict` then gives the image the run
segments: chunks without tissue become background without being read, and
every non-tissue pixel is set to the background value. The answer is defined
as the whole-image pipeline on that image, with the threshold taken over the
tissue pixels only and objects only inside the tissue (tested).
"""

from __future__ import annotations

import dataclasses

import dask.array as da
import numpy as np

from . import _graph
from ._validate import InputError

__all__ = ["GLASS_OD", "MARGIN", "Tissue", "detect", "pick_level", "restrict", "upsample"]

#: Largest summed optical density (R+G+B, base 10) the tissue threshold may take:
#: clean glass is 0.0-0.1; pale eosin about 0.3.
GLASS_OD = 0.2
#: Low-resolution pixels the mask is grown by (closing radius, and then dilation).
MARGIN = 2
#: Most pixels of the level the tissue is found on (:func:`pick_level`).
DETECT_PIXELS = 2**20


@dataclasses.dataclass
class Tissue:
    """The tissue of an image: a mask at some resolution, and how it was made."""

    #: the mask (numpy, low resolution for detected tissue; or a dask array at full resolution)
    mask: object
    how: dict

    def blocks(self, shape, chunks) -> np.ndarray:
        """Per chunk of ``chunks``: 0 without tissue, 1 partly tissue, 2 all tissue (no
        pixel of the image read)."""
        if isinstance(self.mask, da.Array):
            m = self.mask.rechunk(chunks)
            return m.map_blocks(_coverage, dtype=np.uint8,
                                chunks=tuple((1,) * len(c) for c in m.chunks)).compute()
        starts = [np.cumsum((0,) + tuple(c)) for c in chunks]
        grid = np.zeros(tuple(len(c) for c in chunks), dtype=np.uint8)
        for idx in np.ndindex(*grid.shape):
            region = tuple(slice(int(s[i]) * lo // n, (int(s[i + 1]) - 1) * lo // n + 1)
                           for s, i, lo, n in zip(starts, idx, self.mask.shape, shape))
            grid[idx] = _coverage(self.mask[region]).item()
        return grid


def _coverage(block):
    """0 (no tissue), 1 (some) or 2 (all), shaped like a block of one element."""
    value = 2 if block.all() else int(block.any())
    return np.array(value, dtype=np.uint8).reshape((1,) * block.ndim)


def pick_level(shapes: list) -> int:
    """The largest level with at most :data:`DETECT_PIXELS` pixels (else the smallest)."""
    sizes = [int(np.prod(s)) for s in shapes]
    fits = [i for i, n in enumerate(sizes) if n <= DETECT_PIXELS]
    return fits[0] if fits else len(shapes) - 1


def detect(level: np.ndarray, *, rgb: bool, polarity: str = "bright") -> tuple[np.ndarray, dict]:
    """The tissue mask of one low-resolution level (numpy) and how it was found."""
    from skimage.filters import threshold_otsu
    from skimage.morphology import closing, dilation, disk

    level = np.asarray(level)
    if rgb:
        x = level.astype(np.float64)
        if level.dtype.kind in "ui":
            x = x / np.iinfo(level.dtype).max
        signal = -np.log10(np.clip(x, 1 / 256, 1)).sum(axis=-1)
        what = "summed optical density"
    else:
        signal = level.astype(np.float64)
        if polarity == "dark":
            signal = -signal
        what = "intensity" if polarity == "bright" else "inverted intensity"
    if signal.min() == signal.max():  # constant: all tissue (unless it is glass)
        t = GLASS_OD if rgb else signal.min() - 1
    else:
        t = float(threshold_otsu(signal))
    if rgb:
        t = min(t, GLASS_OD)
    mask = signal > t
    footprint = disk(MARGIN) if mask.ndim == 2 else None
    mask = dilation(closing(mask, footprint), footprint)
    how = {"method": f"otsu of the {what}" + (f", at most {GLASS_OD}" if rgb else "") +
           f", closed and dilated by {MARGIN} px", "threshold": round(t, 6),
           "shape": list(mask.shape), "tissue_fraction": round(float(mask.mean()), 6)}
    return mask, how


def upsample(mask: np.ndarray, shape, chunks) -> da.Array:
    """``mask`` (low resolution) at ``shape`` by nearest neighbour, lazily, in ``chunks``."""
    template = da.empty(shape, dtype=bool, chunks=chunks)
    g = _graph.Graph("tissue-upsampled")
    low = g.data("low", (), mask)
    for idx, region in _regions(template.chunks):
        g.task("mask", idx, _upsampled, low, region=region, full=tuple(shape))
    return g.array("mask", template.chunks, bool)


def _regions(chunks):
    starts = [np.cumsum((0,) + tuple(c)) for c in chunks]
    for idx in np.ndindex(*[len(c) for c in chunks]):
        yield idx, tuple((int(s[i]), int(s[i + 1])) for s, i in zip(starts, idx))


def _upsampled(mask, *, region, full):
    index = np.ix_(*[np.arange(a, b) * lo // n for (a, b), lo, n in zip(region, mask.shape, full)])
    return mask[index]


def _in_tissue(block, mask, *, fill):
    return np.where(mask, block, block.dtype.type(fill))


def background_value(dtype, polarity: str):
    """What a non-tissue pixel is set to: 0 for bright objects (the dtype's minimum where 0
    is not in it); for dark objects the dtype's maximum (integers) or 1.0 (floats)."""
    dtype = np.dtype(dtype)
    if polarity == "dark":
        return np.iinfo(dtype).max if dtype.kind in "ui" else 1.0
    return np.iinfo(dtype).min if dtype.kind == "i" and np.iinfo(dtype).min > 0 else 0


def restrict(image: da.Array, tissue: Tissue, polarity: str = "bright"):
    """``(image, mask, skipped)``: the image with every non-tissue pixel at the background
    value, the chunks without tissue never read; the tissue mask at full resolution; and
    the number of chunks skipped. One hand-built layer (its keys never fuse differently
    from one computation to the next), the low-resolution mask in it once."""
    cover = tissue.blocks(image.shape, image.chunks)
    fill = background_value(image.dtype, polarity)
    given = isinstance(tissue.mask, da.Array)
    if given:
        full = tissue.mask.astype(bool).rechunk(image.chunks)
        if full.shape != image.shape:
            raise InputError(f"the tissue mask (shape {full.shape}) must have the shape of the "
                             f"image ({image.shape})")
    g = _graph.Graph("tissue", image, *([full] if given else []))
    low = None if given else g.shared("low", tissue.mask)
    for idx, region in _regions(image.chunks):
        shape = tuple(b - a for a, b in region)
        if given:
            mask = (full.name, *idx)
        elif cover[idx] == 1:
            mask = g.task("mask", idx, _upsampled, low, region=region, full=tuple(image.shape))
        else:  # a chunk all glass or all tissue: its mask is a constant
            mask = g.task("mask", idx, np.full, shape=shape, fill_value=bool(cover[idx]),
                          dtype=bool)
        if cover[idx] == 2:
            g.task("image", idx, _same, (image.name, *idx))
        elif cover[idx] == 1:
            g.task("image", idx, _in_tissue, (image.name, *idx), mask, fill=fill)
        else:
            g.task("image", idx, np.full, shape=shape, fill_value=fill, dtype=image.dtype)
    restricted = g.array("image", image.chunks, image.dtype)
    return restricted, full if given else g.array("mask", image.chunks, bool), \
        int((cover == 0).sum())


def _same(block):
    return block
