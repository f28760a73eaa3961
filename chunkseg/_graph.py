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


def getitem(obj, i):
    """``obj[i]`` as a task."""
    return obj[i]


def barrier(*_):
    """A task that waits for its arguments and returns nothing."""
    return None


def _call(func, kwargs, *args):
    return func(*args, **kwargs)


class Graph:
    """A task graph built by hand: one layer, linear in the number of chunks.

    ``dask.delayed`` merges the graphs of every argument at each call, which
    made building and culling quadratic (76 s for 600 chunks); here each task
    is one dict entry. Arguments that are keys (or lists of keys) are
    resolved by dask; everything else is bound into the task with
    ``functools.partial`` so it is never mistaken for a key.
    """

    def __init__(self, name: str, *inputs: da.Array):
        from dask.base import tokenize

        self.name = f"{name}-{tokenize(name, *inputs, object())[:12]}"
        self.dsk: dict = {}
        self.inputs = list(inputs)
        self._count = 0

    def key(self, kind: str, *index) -> tuple:
        return (f"{self.name}-{kind}", *index)

    def task(self, kind: str, index, func: Callable, *keys, **literals) -> tuple:
        """Add ``func(*values of keys, **literals)`` under key (kind, *index)."""
        key = self.key(kind, *index)
        fn = functools.partial(_call, func, literals) if literals else func
        self.dsk[key] = (fn, *keys)
        return key

    def data(self, kind: str, index, value) -> tuple:
        """A literal value (e.g. a small array) every task can refer to by key."""
        key = self.key(kind, *index)
        self.dsk[key] = value
        return key

    def _hlg(self):
        from dask.highlevelgraph import HighLevelGraph

        return HighLevelGraph.from_collections(self.name, self.dsk, dependencies=self.inputs)

    def delayed(self, key):
        from dask.delayed import Delayed

        return Delayed(key, self._hlg(), layer=self.name)

    def compute(self, keys: list):
        """Compute several keys in one go; returns their values in order."""
        import dask

        graph = self._hlg()
        from dask.delayed import Delayed

        return dask.compute(*[Delayed(k, graph, layer=self.name) for k in keys])

    def array(self, kind: str, chunks, dtype) -> da.Array:
        """The blocks ``(kind, *index)`` already added, as one dask array."""
        from dask.highlevelgraph import HighLevelGraph

        name = f"{self.name}-{kind}"
        layer = {k: v for k, v in self.dsk.items()}
        graph = HighLevelGraph.from_collections(name, layer, dependencies=self.inputs)
        meta = np.empty((0,) * len(chunks), dtype=dtype)
        return da.Array(graph, name, chunks=chunks, dtype=dtype, meta=meta)


def _slabs(block: np.ndarray, *, width) -> dict:
    """The faces of a block that neighbours need: per axis, the first and last ``width`` planes."""
    out = {}
    for axis, w in enumerate(width):
        n = block.shape[axis]
        w = min(w, n)
        lo = [slice(None)] * block.ndim
        hi = [slice(None)] * block.ndim
        lo[axis] = slice(0, w)
        hi[axis] = slice(n - w, n)
        out[(axis, 0)] = np.ascontiguousarray(block[tuple(lo)])
        out[(axis, 1)] = np.ascontiguousarray(block[tuple(hi)])
    return out


def _face_source(src, shape, width):
    """Which slab of a neighbour holds ``src`` (its slices in the block), and its slices there."""
    for axis, (sl, n, w) in enumerate(zip(src, shape, width)):
        w = min(w, n)
        if sl.stop <= w:
            return (axis, 0), src
        if sl.start >= n - w:
            shifted = list(src)
            shifted[axis] = slice(sl.start - (n - w), sl.stop - (n - w))
            return (axis, 1), tuple(shifted)
    return None, src


def _assemble_faces(*parts, shape, dtype, placements):
    out = np.empty(shape, dtype=dtype)
    for (dst, src, face), part in zip(placements, parts):
        out[dst] = (part[face] if face is not None else part)[src]
    return out


def padded_block(graph: Graph, x: da.Array, index: Sequence[int], halo: Sequence[int],
                 kind: str = "padded"):
    """Add a task to ``graph``: chunk ``index`` of ``x`` padded by ``halo`` per axis.

    The padding stops at the image edges (nothing is invented there), and the
    halo may be larger than the neighbouring chunks. Neighbours contribute
    only their faces (one small task per neighbour and halo, shared by every
    block that needs it), so between worker processes a halo moves, not
    whole chunks. Returns ``(key, region_slices, core_slices_within_region)``.
    """
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
    width = tuple(int(h) for h in halo)
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
        shape_bi = tuple(int(x.chunks[a][i]) for a, i in enumerate(bi))
        face, src = (None, tuple(src)) if bi == tuple(index) else \
            _face_source(tuple(src), shape_bi, width)
        if face is None:
            deps.append((x.name, *bi))
        else:
            key = graph.key(f"{kind}-faces", *bi, *width)
            if key not in graph.dsk:
                graph.task(f"{kind}-faces", (*bi, *width), _slabs, (x.name, *bi), width=width)
            deps.append(key)
        placements.append((tuple(dst), src, face))
    shape = tuple(r.stop - r.start for r in region)
    inner = tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(core, region))
    key = graph.task(kind, tuple(index), _assemble_faces, *deps, shape=shape, dtype=x.dtype,
                     placements=placements)
    return key, region, inner
