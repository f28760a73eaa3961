"""The graph that writes label blocks, and the pyramid levels below them, into given arrays.

A graph module: it builds tasks and computes nothing. The targets are
array-likes with ``__setitem__`` (the Zarr arrays that :mod:`chunkseg.io`
created), and the write of one block is the function ``write(block, *,
array, region, marker)`` the caller passes (:func:`chunkseg.io.writers.write_block`),
so only :mod:`chunkseg.io` touches storage.

Each chunk is written by one task that also returns the pixels the next
level keeps (nearest: every k-th pixel); each chunk of level ``l`` is
assembled from those pieces of level ``l - 1``, so the labels are never
read back.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from . import _graph
from ._layout import level_steps

__all__ = ["level_steps_of", "store_blocks", "write_levels"]


def level_steps_of(arrays) -> list[tuple[int, ...]]:
    """Integer strides from each level to the next (see :func:`chunkseg._layout.level_steps`)."""
    return level_steps([a.shape for a in arrays])


def _piece(block, *, origin, step):
    """The pixels of ``block`` (at ``origin``) that the next level keeps, and where they go."""
    sl = tuple(slice((-o) % s, None, s) for o, s in zip(origin, step))
    start = tuple(-(-o // s) for o, s in zip(origin, step))
    return start, np.ascontiguousarray(block[sl])


def _write_block(block, *, write, array, region, marker, piece=None):
    """Write one block (then its marker); return the next level's piece of it, if asked."""
    write(block, array=array, region=region, marker=marker)
    return None if piece is None else _piece(block, **piece)


def _make_and_write_block(*values, make, **kwargs):
    """Compute a block (``make(*values)``, the task that made it) and write it."""
    return _write_block(make(*values), **kwargs)


def _inlinable(x: da.Array, key):
    """The task ``(func, *dependency keys)`` that makes block ``key`` of ``x``, when it is one
    (the hand-built graphs of chunkseg._graph), else None."""
    layer = x.dask.layers.get(x.name) if hasattr(x.dask, "layers") else None
    task = None if layer is None else layer.get(key)
    if isinstance(task, tuple) and task and callable(task[0]) and not isinstance(task[0], type):
        return task
    return None


def _level_block(*pieces, region, dtype):
    """One chunk of a pyramid level, assembled from the pieces of the level above."""
    out = np.zeros(tuple(r.stop - r.start for r in region), dtype=dtype)
    origin = tuple(r.start for r in region)
    for start, piece in pieces:
        _graph.paste(out, origin, piece, start)
    return out


def _write_level(*pieces, write, array, region, piece=None):
    """Assemble, write and (but for the last level) pass on one chunk of a pyramid level."""
    block = _level_block(*pieces, region=region, dtype=array.dtype)
    return _write_block(block, write=write, array=array, region=region, marker=None, piece=piece)


def _children(index, chunks, step, shape_above, chunks_above):
    """Block indices of the level above whose kept pixels fall in block ``index``."""
    ranges = []
    for i, c, s, n, ca in zip(index, chunks, step, shape_above, chunks_above):
        lo, hi = i * c * s, min((i + 1) * c * s, n)
        ranges.append(range(lo // ca, -(-hi // ca)))
    return [tuple(r[k] for r, k in zip(ranges, pick))
            for pick in np.ndindex(*[len(r) for r in ranges])]


def store_blocks(x: da.Array, arrays, *, write, markers=None, skip=frozenset(),
                 fuse: bool = False):
    """Delayed write of every block of ``x`` not in ``skip`` into ``arrays[0]``, and of the
    pyramid levels ``arrays[1:]`` from them.

    ``markers``: block index -> marker path written after the chunk (resume).
    Pass a single array (``arrays[:1]``) to write no pyramid; a resumed run
    (``skip``) writes its pyramid afterwards with :func:`write_levels`.
    ``fuse``: nothing else uses the blocks of ``x``, so a block made by a
    plain task (the watershed's) is made by its write task: one task a chunk
    fewer, and the block never sits in worker memory between two tasks.
    """
    array, levels = arrays[0], list(arrays[1:])
    if levels and skip:
        raise ValueError("a resumed run writes its pyramid afterwards (write_levels), not here")
    markers = markers or {}
    steps = level_steps_of([array] + levels)
    g = _graph.Graph("write", x)
    # One task per chunk writes it and, with a pyramid, returns the pixels the
    # next level keeps; one task per level chunk assembles, writes and passes
    # on. The last tasks return None: the final barrier holds no data.
    writes = []
    for idx in np.ndindex(*x.numblocks):
        if idx in skip:
            continue
        region = _graph.chunk_slices(x.chunks, idx)
        piece = {"origin": tuple(r.start for r in region), "step": steps[0]} if levels else None
        made = _inlinable(x, (x.name, *idx)) if fuse else None
        literals = dict(write=write, array=array, region=region, marker=markers.get(idx),
                        piece=piece)
        if made is not None:
            writes.append(g.task("write", idx, _make_and_write_block, *made[1:], make=made[0],
                                 **literals))
        else:
            writes.append(g.task("write", idx, _write_block, (x.name, *idx), **literals))
    above = array
    for level, target in enumerate(levels, start=1):
        grid = tuple(-(-n // c) for n, c in zip(target.shape, target.chunks))
        writes = []
        for idx in np.ndindex(*grid):
            region = tuple(slice(i * c, min((i + 1) * c, n))
                           for i, c, n in zip(idx, target.chunks, target.shape))
            kids = _children(idx, target.chunks, steps[level - 1], above.shape, above.chunks)
            pieces = [g.key("write" if level == 1 else f"write{level - 1}", *k) for k in kids]
            piece = {"origin": tuple(r.start for r in region), "step": steps[level]} \
                if level < len(levels) else None
            writes.append(g.task(f"write{level}", idx, _write_level, *pieces, write=write,
                                 array=target, region=region, piece=piece))
        above = target
    # every chunk of a level is a piece of the next, so the last level's tasks
    # depend on every write
    return g.delayed(g.task("done", (), _graph.barrier, *writes))


def write_levels(arrays) -> int:
    """Fill the levels ``arrays[1:]`` from the level above each (nearest: every k-th pixel).

    Each level is read chunk by chunk from the one written before it, so the
    pyramid costs about a third of a pass over the labels. Returns the
    number of levels written.
    """
    for level, step in enumerate(level_steps_of(arrays), start=1):
        above = da.from_zarr(arrays[level - 1])
        target = arrays[level]
        down = above[tuple(slice(None, None, s) for s in step)].rechunk(target.chunks)
        da.store(down, target, lock=False)
    return len(arrays) - 1
