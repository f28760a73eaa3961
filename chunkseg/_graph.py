"""Helpers shared by the graph modules (threshold, segment, stitch, relabel, table, pyramid).

They build dask graphs and compute nothing: :class:`Graph` (one hand-built
layer, linear in the number of chunks), padded blocks cut from a chunk and
its neighbours' faces (:func:`padded_task`), and :func:`tree`, the one tree
reduction of mergeable partials.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import sys
from collections.abc import Callable, Sequence

import dask.array as da
import numpy as np

from ._layout import band


def as_dask(image) -> da.Array:
    """A dask array for ``image`` (numpy arrays get dask's automatic chunks)."""
    if isinstance(image, da.Array):
        return image
    array = np.asarray(image)
    return da.from_array(array, chunks="auto")


def tree(graph: Graph, kind: str, leaves: Sequence, merge: Callable, *, split_every: int = 8,
         first: Callable | None = None, **first_literals):
    """Merge the partials at ``leaves`` (keys) ``split_every`` at a time until one key is left.

    The one tree reduction of chunkseg's graphs: ``merge(*partials)`` returns
    a partial of the same kind (associative), so no task waits for more than
    ``split_every`` others, whatever the number of chunks. ``first`` (with
    ``first_literals``) replaces ``merge`` on the first level, e.g. to pick
    one bucket out of each chunk's partial. No leaves: the root is ``merge()``.
    Returns the key of the root.
    """
    leaves, level, func, literals = list(leaves), 0, first or merge, first_literals
    while len(leaves) > 1 or level == 0:
        leaves = [graph.task(kind, (level, i), func, *leaves[s:s + split_every], **literals)
                  for i, s in enumerate(range(0, max(len(leaves), 1), split_every))]
        func, literals, level = merge, {}, level + 1
    return leaves[0]


def optimized(x: da.Array) -> da.Array:
    """``dask.optimize(x)`` that keeps what ``x`` holds on a cluster.

    Optimising culls and fuses ``x``'s graph, and drops the ``distributed``
    futures in it (a threshold persisted while it is still being computed):
    the client then releases them, and the fused tasks that wait on them fail
    with lost dependencies. They are put back, as a layer of their own that
    ``x``'s layer depends on.
    """
    import dask
    from dask.highlevelgraph import HighLevelGraph

    (y,) = dask.optimize(x)
    distributed = sys.modules.get("distributed")  # no futures without it
    if distributed is None:
        return y
    kept = y.__dask_graph__()
    held = {k: v for k, v in x.__dask_graph__().items()
            if isinstance(v, distributed.Future) and k not in kept}
    if not held:
        return y
    layer = f"held-{y.name}"
    graph = HighLevelGraph({y.name: dict(kept), layer: held}, {y.name: {layer}, layer: set()})
    return da.Array(graph, y.name, y.chunks, meta=y._meta)


def distinct(x: da.Array):
    """The sorted distinct values of ``x`` (NaN and inf dropped), delayed: a unique per
    chunk merged in a tree. (``dask.array.unique`` ravels first, which rechunks a 2D/3D
    array into rows: on a cluster, a shuffle of the whole image.)"""
    from ._kernels import histogram as _hk

    g = Graph("distinct", x)
    leaves = [g.task("unique", idx, _hk.unique, (x.name, *idx)) for idx in np.ndindex(*x.numblocks)]
    return g.delayed(tree(g, "union", leaves, _hk.union))


def _added(*partials) -> np.ndarray:
    total = np.array(partials[0], copy=True)
    for p in partials[1:]:
        total += p
    return total


def _block_partial(block: np.ndarray, *, kernel: Callable, kwargs: dict) -> np.ndarray:
    return np.asarray(kernel(block, **kwargs))


def selected(x: da.Array, where: da.Array) -> da.Array:
    """The values of ``x`` where ``where`` is true, as a 1-D array of one (unknown-length)
    chunk per block, block by block in the grid's order. (``x[where]`` of dask ravels both
    first: a rechunk of the whole image into rows.)"""
    where = where.rechunk(x.chunks)
    g = Graph("selected", x, where)
    for idx in np.ndindex(*x.numblocks):
        g.task("values", (int(np.ravel_multi_index(idx, x.numblocks)),), _values_where,
               (x.name, *idx), (where.name, *idx))
    return g.array("values", ((np.nan,) * int(np.prod(x.numblocks)),), x.dtype)


def _values_where(block, where):
    return block.ravel() if where.all() else block[where]


def summed_partials(
    x: da.Array, func: Callable, size: int, dtype, *, kwargs: dict | None = None,
    split_every: int = 64,
) -> da.Array:
    """Sum of ``func(block, **kwargs)`` (a 1-D array of ``size``) over all blocks, lazily.

    Each block yields a small partial; the partials are added in a
    :func:`tree` (``split_every`` at a time), so no task holds more than that
    many: at most 32 MB for 65536-bin histograms. With dask's default of 8
    (2x2 per task on a 2D grid) a 16x16 grid took 84 adding tasks; now 5,
    and each task costs about 2 ms of scheduling on a cluster.
    """
    g = Graph("partials", x)
    leaves = [g.task("partial", idx, _block_partial, (x.name, *idx), kernel=func,
                     kwargs=kwargs or {}) for idx in np.ndindex(*x.numblocks)]
    root = tree(g, "sum", leaves, _added, split_every=split_every)
    g.task("total", (0,), _as_dtype, root, dtype=np.dtype(dtype))
    return g.array("total", ((int(size),),), dtype)


def _as_dtype(value, *, dtype):
    return np.asarray(value).astype(dtype, copy=False)


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
            last = merged.pop()  # pop first: merged[-2] += merged.pop() writes the wrong slot
            merged[-1] += last
        new_chunks.append(tuple(merged))
        changed = True
    return x.rechunk(tuple(new_chunks)) if changed else x


_LOCAL_SCHEDULERS = ("threads", "threading", "sync", "synchronous", "single-threaded")


def placement_bands() -> int | None:
    """In how many bands (:func:`band`) the current scheduler keeps the chunks.

    1 for dask's threaded and synchronous schedulers (one memory); the
    number of workers of a ``distributed`` client that places chunks by
    band (:func:`chunkseg._plugin.place_by_band`); None where it is not
    known (dask's process pool, a client without the placement): every
    neighbour then sends only its faces.
    """

    import dask

    scheduler = dask.config.get("scheduler", None)
    if isinstance(scheduler, str):
        if scheduler in _LOCAL_SCHEDULERS:
            return 1
        if scheduler in ("processes", "multiprocessing"):
            return None
    client = current_client()
    if client is None:
        return 1 if scheduler is None else None
    from ._plugin import placed_clients

    if client.id not in placed_clients:
        return None
    return max(len(client.scheduler_info()["workers"]), 1)


def current_client():
    """The ``distributed.Client`` dask computes on now, or None (a local scheduler)."""
    import sys

    import dask

    scheduler = dask.config.get("scheduler", None)
    if isinstance(scheduler, str) and (scheduler in _LOCAL_SCHEDULERS
                                       or scheduler in ("processes", "multiprocessing")):
        return None
    if "distributed" not in sys.modules:  # no client can exist before it is imported
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


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

    def shared(self, kind: str, value):
        """A value many tasks need, by key: sent to the cluster once (scattered)
        where a ``distributed`` client is current, so the graph does not carry
        it; a literal key of the graph on local schedulers.

        Scattered data has no task to recompute it from, so it goes to every
        worker: a worker that dies does not take the only copy with it.
        """
        client = current_client()
        if client is None:
            return self.data(kind, (), value)
        future = client.scatter(value, hash=False, broadcast=True)
        self.dsk[future.key] = future  # the graph holds the future, and so keeps the data
        return future.key

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

    def _needed(self, name: str) -> dict:
        """The tasks of this graph that the blocks named ``name`` need, themselves included.

        Only those: an array's layer that carried its siblings' tasks too (the tissue
        mask carrying the restricted image's) would bring them back into any graph that
        also holds a persisted sibling, under the same keys, and which of the two a
        computation then ran depended on the order the layers merged in."""
        todo = [k for k in self.dsk if k[0] == name] if self.dsk else []
        layer: dict = {}
        while todo:
            key = todo.pop()
            if key in layer:
                continue
            task = layer[key] = self.dsk[key]
            if type(task) is tuple:
                for arg in task[1:]:
                    for k in arg if type(arg) is list else (arg,):
                        if (type(k) is tuple or type(k) is str) and k in self.dsk \
                                and k not in layer:
                            todo.append(k)
        return layer

    def array(self, kind: str, chunks, dtype) -> da.Array:
        """The blocks ``(kind, *index)`` already added, as one dask array."""
        from dask.highlevelgraph import HighLevelGraph

        name = f"{self.name}-{kind}"
        layer = self._needed(name)
        graph = HighLevelGraph.from_collections(name, layer, dependencies=self.inputs)
        meta = np.empty((0,) * len(chunks), dtype=dtype)
        return da.Array(graph, name, chunks=chunks, dtype=dtype, meta=meta)


@dataclasses.dataclass(frozen=True)
class Source:
    """The blocks padded blocks are cut from: a chunk grid and the key of each block.

    ``item``: the value at each key holds several things (a kernel's result:
    seeds and distance levels) and the block is its attribute ``item``.
    """

    chunks: tuple
    dtype: np.dtype
    keys: Callable[[tuple], object]
    item: str | None = None

    @classmethod
    def of(cls, x: da.Array) -> Source:
        name = x.name
        return cls(tuple(x.chunks), x.dtype, lambda idx: (name, *idx))

    @functools.cached_property
    def shape(self) -> tuple:
        return tuple(int(sum(c)) for c in self.chunks)

    @functools.cached_property
    def starts(self) -> list[list[int]]:
        """Per axis, the first index of every chunk (plain ints: read once per task)."""
        return [[int(v) for v in o] for o in block_origins(self.chunks)]

    @functools.cached_property
    def stops(self) -> list[list[int]]:
        return [[b + int(c) for b, c in zip(st, cs)] for st, cs in zip(self.starts, self.chunks)]


def _part(value, item):
    return value if item is None else getattr(value, item)


def _faces(block, *, width, item=None, dtype=None) -> dict:
    """The faces of a block that neighbours need: per axis, the first and last ``width`` planes.

    ``dtype``: cast to it (a smaller one that holds the values exactly: fewer bytes to move).
    """
    block = _part(block, item)
    out = {}
    for axis, w in enumerate(width):
        n = block.shape[axis]
        w = min(w, n)
        lo = [slice(None)] * block.ndim
        hi = [slice(None)] * block.ndim
        lo[axis] = slice(0, w)
        hi[axis] = slice(n - w, n)
        out[(axis, 0)] = _contiguous(block[tuple(lo)], dtype)
        out[(axis, 1)] = _contiguous(block[tuple(hi)], dtype)
    return out


def _contiguous(a: np.ndarray, dtype=None) -> np.ndarray:
    """A contiguous copy of ``a`` as ``dtype``; a structured one kept as it is is copied as
    opaque items (:func:`_bytes`)."""
    if a.dtype.names and dtype in (None, a.dtype):
        return np.ascontiguousarray(_bytes(a)).view(a.dtype)
    return np.ascontiguousarray(a, dtype=dtype)


def _face_source(src, shape, width):
    """Which face of a neighbour holds ``src`` (its slices in the block), and its slices there."""
    for axis, (sl, n, w) in enumerate(zip(src, shape, width)):
        w = min(w, n)
        if sl.stop <= w:
            return (axis, 0), src
        if sl.start >= n - w:
            shifted = list(src)
            shifted[axis] = slice(sl.start - (n - w), sl.stop - (n - w))
            return (axis, 1), tuple(shifted)
    return None, src


class Padded:
    """A padded block, assembled from its parts only where it is sliced.

    ``padded[window]`` (a tuple of slices with steps of 1) copies just that
    window out of the chunk and its neighbours' faces; ``padded.array()``
    the whole block.
    """

    def __init__(self, parts, layout: dict):
        self.parts = [_part(p, layout["item"]) if face is None else p
                      for p, (_, _, face) in zip(parts, layout["placements"])]
        self.shape = layout["shape"]
        self.dtype = np.dtype(layout["dtype"])
        self.placements = layout["placements"]
        self.ndim = len(self.shape)

    def array(self) -> np.ndarray:
        return self[tuple(slice(0, n) for n in self.shape)]

    def __getitem__(self, window) -> np.ndarray:
        window = tuple(slice(*w.indices(n)[:2]) for w, n in zip(window, self.shape))
        out = np.empty(tuple(w.stop - w.start for w in window), dtype=self.dtype)
        origin = tuple(w.start for w in window)
        for (dst, src, face), part in zip(self.placements, self.parts):
            piece = (part[face] if face is not None else part)[src]  # a view
            paste(out, origin, piece, tuple(d.start for d in dst))
        return out


def paste(out: np.ndarray, origin, piece: np.ndarray, start) -> None:
    """Copy into ``out`` (whose first pixel is at ``origin``) the part of ``piece`` (first
    pixel at ``start``, same coordinates) that overlaps it."""
    dst, src = [], []
    for o, n, s, m in zip(origin, out.shape, start, piece.shape):
        lo, hi = max(o, s), min(o + n, s + m)
        if lo >= hi:
            return
        dst.append(slice(lo - o, hi - o))
        src.append(slice(lo - s, hi - s))
    _bytes(out)[tuple(dst)] = _bytes(piece)[tuple(src)]


def _bytes(a: np.ndarray) -> np.ndarray:
    """A structured array as opaque items of its size (a view): numpy copies those 40-80x
    faster than field by field (1024^2 of 6-byte items: 11 ms -> 0.13 ms)."""
    return a.view(np.dtype((np.void, a.dtype.itemsize))) if a.dtype.names else a


def on_padded(*parts, kernel: Callable, layout: dict, kwargs: dict, whole: bool = True,
              extra: int = 0):
    """``kernel(padded block, *extra values, **kwargs)``: the task that assembles a padded
    block and uses it.

    ``whole=False`` hands ``kernel`` the :class:`Padded` itself, to slice only
    the windows it needs. The last ``extra`` parts are other inputs, passed on.
    """
    n = len(parts) - extra
    padded = Padded(parts[:n], layout)
    return kernel(padded.array() if whole else padded, *parts[n:], **kwargs)


def padded_parts(graph: Graph, source, index: Sequence[int], halo: Sequence[int],
                 kind: str = "padded", bands: int | None = None):
    """The parts of chunk ``index`` of ``source`` padded by ``halo`` per axis.

    ``source`` is a dask array or a :class:`Source`. The padding stops at the
    image edges (nothing is invented there), and the halo may be larger than
    the neighbouring chunks. Neighbours contribute only their faces (one small
    task per neighbour and halo, shared by every block that needs it), so
    between worker processes a halo moves, not whole chunks. With ``bands``
    (:func:`placement_bands`), a neighbour in the chunk's own band is
    used whole instead: it is in the same memory, and a face would only
    cost a task and a copy. Returns
    ``(keys, layout, region_slices, core_slices_within_region)``; a task of
    :func:`on_padded` on ``keys`` with ``layout`` gets the padded block.
    """
    src_ = source if isinstance(source, Source) else Source.of(source)
    shape_all = src_.shape
    starts_all, stops_all = src_.starts, src_.stops
    index = tuple(int(i) for i in index)
    core = tuple(slice(st[i], sp[i]) for st, sp, i in zip(starts_all, stops_all, index))
    region = tuple(
        slice(max(c.start - h, 0), min(c.stop + h, n)) for c, h, n in zip(core, halo, shape_all)
    )
    ranges = [range(bisect.bisect_right(sp, r.start), bisect.bisect_left(st, r.stop))
              for st, sp, r in zip(starts_all, stops_all, region)]
    width = tuple(int(h) for h in halo)
    grid = tuple(len(c) for c in src_.chunks)
    own = None if bands is None else band(index, grid, bands)
    placements, deps = [], []
    for bi in itertools.product(*ranges):
        dst, src = [], []
        for axis, i in enumerate(bi):
            b0, b1 = starts_all[axis][i], stops_all[axis][i]
            lo, hi = max(b0, region[axis].start), min(b1, region[axis].stop)
            dst.append(slice(lo - region[axis].start, hi - region[axis].start))
            src.append(slice(lo - b0, hi - b0))
        if bi == index or (own is not None and band(bi, grid, bands) == own):
            face, src = None, tuple(src)  # this memory holds it: the whole block, no copy
        else:
            shape_bi = tuple(stops_all[a][i] - starts_all[a][i] for a, i in enumerate(bi))
            face, src = _face_source(tuple(src), shape_bi, width)
        if face is None:
            deps.append(src_.keys(bi))
        else:
            key = graph.key(f"{kind}-faces", *bi, *width)
            if key not in graph.dsk:
                graph.task(f"{kind}-faces", (*bi, *width), _faces, src_.keys(bi), width=width,
                           item=src_.item, dtype=src_.dtype)
            deps.append(key)
        placements.append((tuple(dst), src, face))
    layout = {"shape": tuple(r.stop - r.start for r in region), "dtype": src_.dtype,
              "placements": placements, "item": src_.item}
    inner = tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(core, region))
    return deps, layout, region, inner


def padded_task(graph: Graph, kind: str, source, index, pad, func: Callable, *,
                whole: bool = True, bands: int | None = None, extra: Sequence = (), **kwargs):
    """Add ``func(chunk index padded by pad, *extra, start=..., core=..., **kwargs)`` as one task.

    The block is assembled inside the task (no task of its own): ``start``
    is its first pixel in the image and ``core`` the chunk's slices within it.
    ``extra``: keys of further inputs (e.g. a table every chunk shares).
    """
    deps, layout, region, inner = padded_parts(graph, source, index, pad, kind=kind, bands=bands)
    kwargs = dict(kwargs, start=tuple(r.start for r in region), core=inner)
    return graph.task(kind, tuple(index), on_padded, *deps, *extra, kernel=func, layout=layout,
                      kwargs=kwargs, whole=whole, extra=len(extra))
