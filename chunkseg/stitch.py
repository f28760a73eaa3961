"""Connected components across chunks: face pairs, union-find, relabel maps.

``label`` gives exactly ``scipy.ndimage.label``'s answer (same partition,
same ids: raster order of each component's first pixel) at every chunking:

1. each chunk is labelled alone (``scipy.ndimage.label``); global ids come
   from an exclusive cumsum of the per-chunk counts (no serial chain);
2. ids that touch across chunk faces (edges and corners too, as the
   connectivity allows) are paired from the chunks' boundary planes only;
3. one union-find over the face ids (not all ids) gives each merged
   component its key: the flat index of its first pixel;
4. components are ranked by key row by row (chunks sharing the first
   block index), with row offsets from a cumsum: no task holds a table of
   every label;
5. each chunk is labelled again (recomputed, so no label block waits in
   memory across the barrier) and remapped through its own small table.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
from dask.graph_manipulation import bind

from . import _graph
from ._kernels import components as _cc
from ._layout import label_dtype
from ._validate import InputError, check_image_array

__all__ = ["label", "label_with_count", "max_components"]


def max_components(shape, connectivity: int = 1) -> int:
    """An upper bound on the number of components (a checkerboard's count)."""
    size = int(np.prod(shape))
    return (size + 1) // 2


def _out_dtype(shape):
    return label_dtype(max_components(shape))


def _without_planes(summary):
    return summary[0], summary[1], None


def _face_pairs(summary_a, summary_b, bases, *, offset, connectivity, a, b):
    return _cc.face_pairs(summary_a[2], summary_b[2], offset, connectivity=connectivity,
                          base_a=int(bases[a]), base_b=int(bases[b]), first_a=summary_a[1],
                          first_b=summary_b[1])


def _bases(summaries, *, raw_offset):
    counts = np.asarray([s[0] for s in summaries], dtype=np.int64)
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) + np.int64(raw_offset)


def _merge_all(*pairs):
    if not pairs:
        e = np.empty(0, dtype=np.int64)
        return e, e
    return _cc.merge_components(*(np.concatenate([p[i] for p in pairs]) for i in range(4)))


def _merged_pairs(*pairs):
    """Face pairs merged into their union, given back as pairs (a tree step)."""
    return _cc.as_pairs(*_merge_all(*pairs))


def _face_subset(union, base, n):
    ids, keys = union
    lo, hi = np.searchsorted(ids, [base + 1, base + n + 1])
    return ids[lo:hi] - base, keys[lo:hi]  # local labels, component keys


def _owned_keys(summary, union, bases, *, k):
    """Keys of the components whose first pixel lies in this chunk (sorted)."""
    n, first, _ = summary
    local, keys = _face_subset(union, int(bases[k]), n)
    own = first.copy()
    # a face label belongs to its component; it is owned here only if the
    # component's first pixel is this label's first pixel
    own[local - 1] = np.where(keys == first[local - 1], first[local - 1], -1)
    own = own[own >= 0]
    return np.sort(own)


def _row_offsets(*rows):
    counts = np.array([len(s) for s in rows], dtype=np.int64)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _resolve_row(union, sorted_keys, offsets, *, row, shape, row_stops):
    """Final ids of the merged components whose first pixel lies in ``row``."""
    _, keys = union
    keys = np.unique(keys)
    keys = keys[_cc.chunk_row(keys, shape, row_stops) == row]
    return keys, offsets[row] + np.searchsorted(sorted_keys, keys) + 1


def _chunk_table(summary, union, bases, row_sorted, offsets, resolved, *, row, k):
    """final id of each local label (index 0 -> 0)."""
    n, first, _ = summary
    subset = _face_subset(union, int(bases[k]), n)
    row_offset = offsets[row]
    table = np.zeros(n + 1, dtype=np.uint64)
    if n == 0:
        return table
    table[1:] = row_offset + np.searchsorted(row_sorted, first) + 1
    local, keys = subset
    if len(local):
        known_keys, known_ids = resolved
        pos = np.searchsorted(known_keys, keys)
        table[local] = known_ids[pos]
    return table


def _concat_resolved(*parts):
    if not parts:
        e = np.empty(0, dtype=np.int64)
        return e, e.astype(np.uint64)
    keys = np.concatenate([p[0] for p in parts])
    ids = np.concatenate([p[1] for p in parts]).astype(np.uint64)
    order = np.argsort(keys)
    return keys[order], ids[order]


def _relabel_block(block, table, *, connectivity, dtype):
    labels, _ = _cc.label_block(block, connectivity=connectivity)
    return _cc.remap_block(labels, table, dtype)


def label(mask, *, connectivity: int = 1, _raw_offset: int = 0) -> da.Array:
    """Connected components of a chunked mask, identical to ``scipy.ndimage.label``.

    Parameters
    ----------
    mask : (M, N[, P]) dask or numpy array
        Nonzero pixels are foreground.
    connectivity : int
        1..ndim, as in ``skimage.measure.label``: neighbours are pixels whose
        offset has at most ``connectivity`` nonzero steps (1: faces only;
        ndim: faces, edges and corners).

    Returns
    -------
    labels : lazy dask array
        The same ids as ``scipy.ndimage.label(mask, structure)`` with
        ``structure = generate_binary_structure(ndim, connectivity)``: 1..N in
        raster order of each component's first pixel. uint32 unless the image
        could hold 2**32 components or more, then uint64.

    Notes
    -----
    No task holds more than a few chunks, the face ids, or one row's
    component keys; the input is read twice (once to find the merges, once to
    write), so no label block waits in memory across the barrier.
    """
    return _label(mask, connectivity, _raw_offset)[0]


def label_with_count(mask, *, connectivity: int = 1, _raw_offset: int = 0):
    """:func:`label` and the delayed number of components, sharing one graph."""
    return _label(mask, connectivity, _raw_offset)


def _total(offsets):
    return int(offsets[-1])


def _local_summary(block, *, connectivity, origin, image_shape):
    """(count, first pixels, boundary planes) of one chunk's own labelling."""
    labels, n = _cc.label_block(block, connectivity=connectivity)
    first = _cc.first_pixels(labels, n, origin=origin, image_shape=image_shape)
    return n, first, _cc.boundary_faces(labels)


def _label(mask, connectivity, _raw_offset):
    x = _graph.as_dask(mask)
    check_image_array(x.shape, x.dtype, name="mask")
    if isinstance(connectivity, bool) or not isinstance(connectivity, (int, np.integer)) \
            or not 1 <= connectivity <= x.ndim:
        raise InputError(f"`connectivity` must be an integer in 1..{x.ndim}, got {connectivity!r}")
    connectivity = int(connectivity)
    if x.dtype != bool:
        x = x != 0
    shape = tuple(x.shape)
    dtype = _out_dtype(shape)
    nblocks = x.numblocks
    indices = list(np.ndindex(*nblocks))
    order = {idx: k for k, idx in enumerate(indices)}
    origins = _graph.block_origins(x.chunks)
    g = _graph.Graph("label", x)

    summaries, metas = {}, {}
    for idx in indices:
        # one task per chunk keeps the label block local; only its summary travels
        origin = tuple(int(origins[a][i]) for a, i in enumerate(idx))
        summary = g.task("local", idx, _local_summary, (x.name, *idx), connectivity=connectivity,
                         origin=origin, image_shape=shape)
        summaries[idx] = summary
        # what outlives the barrier: the count and first pixels, not the planes
        metas[idx] = g.task("meta", idx, _without_planes, summary)
    bases_all = g.task("bases", (), _bases, [metas[i] for i in indices], raw_offset=_raw_offset)

    pairs = []
    for idx in indices:
        for off in _cc.neighbour_offsets(x.ndim, connectivity):
            nb = tuple(i + o for i, o in zip(idx, off))
            if any(n < 0 or n >= m for n, m in zip(nb, nblocks)):
                continue
            pairs.append(g.task(
                "pairs", idx + off, _face_pairs, summaries[idx], summaries[nb], bases_all,
                offset=off, connectivity=connectivity, a=order[idx], b=order[nb]))
    union = g.task("union", (), _merge_all, _graph.tree(g, "unions", pairs, _merged_pairs))

    owned = {idx: g.task("owned", idx, _owned_keys, metas[idx], union, bases_all, k=order[idx])
             for idx in indices}
    nrows = nblocks[0]
    row_stops = np.cumsum(x.chunks[0])
    row_sorted = [
        g.task("row", (s,), _cc.sorted_concat, *[owned[i] for i in indices if i[0] == s])
        for s in range(nrows)
    ]
    offsets = g.task("offsets", (), _row_offsets, *row_sorted)
    resolved_parts = [
        g.task("resolve", (s,), _resolve_row, union, row_sorted[s], offsets, row=s,
               shape=shape, row_stops=row_stops)
        for s in range(nrows)
    ]
    resolved = g.task("resolved", (), _concat_resolved, *resolved_parts)
    tables = {
        idx: g.task("table", idx, _chunk_table, metas[idx], union, bases_all,
                    row_sorted[idx[0]], offsets, resolved, row=idx[0], k=order[idx])
        for idx in indices
    }
    total = g.task("total", (), _total, offsets)
    barrier = g.delayed(g.task("barrier", (), _graph.barrier, *tables.values(), total))
    # Read the input again for the final pass, only once every table exists,
    # so that no label block waits in memory across the barrier.
    again = bind(x, barrier)
    out = _graph.Graph("label-out", again, barrier)
    for idx in indices:
        out.task("labels", idx, _relabel_block, (again.name, *idx), tables[idx],
                 connectivity=connectivity, dtype=dtype)
    return out.array("labels", x.chunks, dtype), g.delayed(total)
