"""Small helpers shared by the graph modules (threshold, segment, stitch, measure).

They build dask graphs and compute nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import dask.array as da
import numpy as np


def as_dask(image) -> da.Array:
    """A dask array for ``image`` (numpy arrays get dask's automatic chunks)."""
    if isinstance(image, da.Array):
        return image
    array = np.asarray(image)
    return da.from_array(array, chunks="auto")


def _block_partial(block: np.ndarray, *, func: Callable, ndim: int, kwargs: dict) -> np.ndarray:
    out = np.asarray(func(block, **kwargs))
    return out.reshape((1,) * ndim + out.shape)


def summed_partials(
    x: da.Array, func: Callable, size: int, dtype, *, kwargs: dict | None = None,
    split_every: int = 8,
) -> da.Array:
    """Sum of ``func(block, **kwargs)`` (a 1-D array of ``size``) over all blocks.

    Each block yields a small partial; the partials are added in a tree
    (``split_every`` at a time), so no task ever holds more than a few of them.
    """
    kernel = functools.partial(_block_partial, func=func, ndim=x.ndim, kwargs=kwargs or {})
    chunks = tuple((1,) * len(c) for c in x.chunks) + ((size,),)
    partials = x.map_blocks(kernel, chunks=chunks, new_axis=x.ndim, dtype=dtype,
                            meta=np.empty((0,) * (x.ndim + 1), dtype=dtype))
    return partials.sum(axis=tuple(range(x.ndim)), split_every=split_every, dtype=dtype)


def rechunk_for_depth(x: da.Array, depth: Sequence[int]) -> da.Array:
    """Merge chunks thinner than the halo ``depth`` with their neighbours.

    ``map_overlap`` needs every chunk at least as thick as the halo along each
    axis; the merged chunks keep the original cuts wherever they can.
    """
    new_chunks = []
    changed = False
    for sizes, d in zip(x.chunks, depth):
        if d == 0 or min(sizes) >= d or len(sizes) == 1:
            new_chunks.append(sizes)
            continue
        merged: list[int] = []
        for s in sizes:
            if merged and merged[-1] < d:
                merged[-1] += s
            else:
                merged.append(s)
        if len(merged) > 1 and merged[-1] < d:
            merged[-2] += merged.pop()
        new_chunks.append(tuple(merged))
        changed = True
    return x.rechunk(tuple(new_chunks)) if changed else x


def block_origins(chunks: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Start index of every chunk along each axis."""
    return [np.concatenate([[0], np.cumsum(c)[:-1]]).astype(np.int64) for c in chunks]


def chunk_slices(chunks: Sequence[Sequence[int]], index: Sequence[int]) -> tuple[slice, ...]:
    """Global slices of the chunk at block ``index``."""
    out = []
    for sizes, i in zip(chunks, index):
        start = int(sum(sizes[:i]))
        out.append(slice(start, start + int(sizes[i])))
    return tuple(out)


def _assemble(region_start, region_shape, dtype, placements, *blocks):
    out = np.empty(region_shape, dtype=dtype)
    for (dst, src), block in zip(placements, blocks):
        out[dst] = block[src]
    return out


def padded_block(x: da.Array, index: Sequence[int], halo: Sequence[int], blocks=None):
    """A delayed numpy array: chunk ``index`` of ``x`` padded by ``halo`` per axis.

    The padding stops at the image edges (nothing is invented there), and the
    halo may be larger than the neighbouring chunks. Returns
    ``(delayed_array, region_slices, core_slices_within_region)``. ``blocks``
    is ``x.to_delayed()``, passed in when building many of these.
    """
    import dask

    if blocks is None:
        blocks = x.to_delayed()
    core = chunk_slices(x.chunks, index)
    region = tuple(
        slice(max(c.start - h, 0), min(c.stop + h, n)) for c, h, n in zip(core, halo, x.shape)
    )
    origins = block_origins(x.chunks)
    ranges = []
    for axis, r in enumerate(region):
        starts = origins[axis]
        stops = starts + np.asarray(x.chunks[axis])
        first = int(np.searchsorted(stops, r.start, side="right"))
        last = int(np.searchsorted(starts, r.stop, side="left"))
        ranges.append(range(first, last))
    placements, deps = [], []
    for bidx in np.ndindex(*[len(r) for r in ranges]):
        bi = tuple(rng[k] for rng, k in zip(ranges, bidx))
        dst, src = [], []
        for axis, i in enumerate(bi):
            b0 = int(origins[axis][i])
            b1 = b0 + int(x.chunks[axis][i])
            lo, hi = max(b0, region[axis].start), min(b1, region[axis].stop)
            dst.append(slice(lo - region[axis].start, hi - region[axis].start))
            src.append(slice(lo - b0, hi - b0))
        placements.append((tuple(dst), tuple(src)))
        deps.append(blocks[bi])
    shape = tuple(r.stop - r.start for r in region)
    inner = tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(core, region))
    task = dask.delayed(_assemble, pure=True)(
        tuple(r.start for r in region), shape, x.dtype, placements, *deps
    )
    return task, region, inner
