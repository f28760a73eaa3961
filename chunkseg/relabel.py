"""Global relabelling of label images: sequential ids, size filter, border clearing.

Per-label tables are never held whole: each chunk reports the values it
holds (with counts and first pixels); the tables are split into buckets of
value ranges, each bucket is merged and decided on its own, new ids come
from a cumsum over buckets (or over rows for first-pixel order), and each
chunk gets back only the entries of its own values.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
from dask.graph_manipulation import bind

from . import _graph
from ._kernels import components as _cc
from ._layout import label_dtype
from ._validate import InputError, check_image_array, check_int

__all__ = ["clear_border", "relabel_sequential", "remove_small_objects", "renumber"]

_MAX_BUCKETS = 16


def check_labels(labels) -> da.Array:
    """A label image as a dask array; refuses empty and non-integer ones."""
    x = _graph.as_dask(labels)
    check_image_array(x.shape, x.dtype, name="labels")
    if x.dtype.kind not in "ui" or x.dtype == bool:
        raise InputError(f"`labels` must have an integer dtype, got {x.dtype}")
    return x


def _bucket_edges(max_value: int, nbuckets: int) -> np.ndarray:
    width = max_value // nbuckets + 1
    return np.arange(0, nbuckets + 1, dtype=np.uint64) * np.uint64(width) + np.uint64(1)


def _split(part, edges):
    values = part[0]
    cut = np.searchsorted(values, edges)
    return [tuple(p[cut[k]:cut[k + 1]] for p in part) for k in range(len(edges) - 1)]


def _merge_bucket(*parts):
    """(values, counts, first pixels) summed/minimised over chunks."""
    values = np.concatenate([p[0] for p in parts])
    counts = np.concatenate([p[1] for p in parts])
    firsts = np.concatenate([p[2] for p in parts])
    uniq, inv = np.unique(values, return_inverse=True)
    total = np.zeros(len(uniq), dtype=np.int64)
    np.add.at(total, inv, counts)
    first = np.full(len(uniq), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, inv, firsts)
    return uniq, total, first


def _keep_mask(bucket, rule, border=None):
    values, counts, _ = bucket
    if rule[0] == "min_size":
        return counts >= rule[1]
    if rule[0] == "border":
        return ~np.isin(values, border)
    return np.ones(len(values), dtype=bool)


def _kept_count(bucket, border=None, *, rule):
    return int(np.count_nonzero(_keep_mask(bucket, rule, border)))


def _compact_table(bucket, offsets, border=None, *, rule, k):
    """values -> new ids, order-preserving; 0 for the dropped ones."""
    values = bucket[0]
    keep = _keep_mask(bucket, rule, border)
    new = np.zeros(len(values), dtype=np.uint64)
    new[keep] = np.uint64(offsets[k]) + np.arange(1, np.count_nonzero(keep) + 1, dtype=np.uint64)
    return values, new


def _offsets(*counts):
    return np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))]).astype(np.int64)


def _lookup(part, table):
    """New ids for the values of one chunk that fall in one bucket."""
    values, new = table
    pos = np.searchsorted(values, part[0])
    return part[0], new[pos]


def _remap_values(block, *lookups, dtype):
    values = np.concatenate([lk[0] for lk in lookups]) if lookups else np.empty(0, np.uint64)
    new = np.concatenate([lk[1] for lk in lookups]) if lookups else np.empty(0, np.uint64)
    order = np.argsort(values)
    values, new = values[order], new[order]
    flat = block.ravel().astype(np.uint64)
    out = np.zeros(flat.shape, dtype=dtype)
    nz = flat != 0
    out[nz] = new[np.searchsorted(values, flat[nz])].astype(dtype)
    return out.reshape(block.shape)


def _len(a):
    return len(a)


def _chunk_parts(g, x, edges):
    """Per chunk: its (values, counts, first pixels), split by bucket."""
    origins = _graph.block_origins(x.chunks)
    split = {}
    for idx in np.ndindex(*x.numblocks):
        origin = tuple(int(origins[a][i]) for a, i in enumerate(idx))
        part = g.task("values", idx, _cc.chunk_values, (x.name, *idx), origin=origin,
                      image_shape=x.shape)
        split[idx] = g.task("split", idx, _split, part, edges=edges)
    return split


def _bucket_tasks(g, split, nblocks, nbuckets):
    """Per bucket, its rows of every chunk merged in a tree (no task waits for every chunk)."""
    return [
        _graph.tree(g, f"bucket{k}", [g.task("piece", idx + (k,), _graph.getitem, split[idx], k)
                                      for idx in np.ndindex(*nblocks)], _merge_bucket)
        for k in range(nbuckets)
    ]


def _apply(g, x, tables, split, nbuckets, dtype):
    """Per chunk: look its values up in each bucket's table, then remap.

    The input is read again after every table exists, so no chunk waits in
    memory across the barrier.
    """
    barrier = g.delayed(g.task("barrier", (), _graph.barrier, *tables))
    again = bind(x, barrier)
    out = _graph.Graph("relabel-out", again, barrier)
    for idx in np.ndindex(*x.numblocks):
        lookups = [out.task("lookup", idx + (k,), _lookup, g.key("piece", *idx, k), tables[k])
                   for k in range(nbuckets)]
        out.task("labels", idx, _remap_values, (again.name, *idx), *lookups, dtype=dtype)
    return out.array("labels", x.chunks, dtype)


def _buckets(x, max_value=None):
    if x.dtype.kind == "i":  # signed: negative ids would be numbered by chunk, so refuse them
        lo = x.min()
        lo, max_value = dask.compute(lo, x.max()) if max_value is None else (lo.compute(), max_value)
        if lo < 0:
            raise InputError(f"`labels` has negative values (the smallest is {int(lo)}); label "
                             "ids are 0 (background) or positive")
        max_value = int(max_value)
    elif max_value is None:
        max_value = int(x.max().compute())
    nbuckets = max(1, min(_MAX_BUCKETS, int(np.prod(x.numblocks)), max_value))
    return max_value, nbuckets, _bucket_edges(max_value, nbuckets)


def _filtered(x, rule, border=None, max_value=None, g=None):
    max_value, nbuckets, edges = _buckets(x, max_value)
    dtype = label_dtype(max_value)
    g = g or _graph.Graph("filter", x)
    split = _chunk_parts(g, x, edges)
    buckets = _bucket_tasks(g, split, x.numblocks, nbuckets)
    extra = (border,) if border is not None else ()
    kept = [g.task("kept", (k,), _kept_count, b, *extra, rule=rule) for k, b in enumerate(buckets)]
    offsets = g.task("offsets", (), _offsets, *kept)
    tables = [g.task("table", (k,), _compact_table, b, offsets, *extra, rule=rule, k=k)
              for k, b in enumerate(buckets)]
    return _apply(g, x, tables, split, nbuckets, dtype)


def remove_small_objects(labels, min_size: int, *, max_label: int | None = None) -> da.Array:
    """Drop objects smaller than ``min_size`` pixels, measured whole; ids stay 1..N.

    An object that spans several chunks is measured by its global size,
    never by its pieces. Kept objects keep their order (new id = number of
    kept ids up to the old one). Like ``skimage.morphology.remove_small_objects``
    on a label image (connectivity as given by the labels), followed by an
    order-preserving relabelling. ``max_label`` (the largest id, when known)
    saves one pass over the data.
    """
    x = check_labels(labels)
    min_size = check_int("min_size", min_size, minimum=0)
    return _filtered(x, ("min_size", min_size), max_value=max_label)


def _touches(x, idx):
    return tuple((i == 0, i == n - 1) for i, n in zip(idx, x.numblocks))


def _union_values(*arrays):
    return np.unique(np.concatenate(arrays)) if arrays else np.empty(0, np.uint64)


def clear_border(labels) -> da.Array:
    """Remove the objects that touch the image border (globally); ids stay 1..N."""
    x = check_labels(labels)
    g = _graph.Graph("clear-border", x)
    edge = [
        g.task("edge", idx, _cc.border_values, (x.name, *idx), touches=_touches(x, idx))
        for idx in np.ndindex(*x.numblocks)
        if any(lo or hi for lo, hi in _touches(x, idx))
    ]
    border = g.task("border", (), _union_values, *edge)
    return _filtered(x, ("border",), border, g=g)


def _bucket_firsts_in_row(bucket, *, s, shape, row_stops):
    first = bucket[2]
    return np.sort(first[_cc.chunk_row(first, shape, row_stops) == s])


def _resolve_bucket(bucket, offsets, *row_sorted, shape, row_stops):
    values, _, first = bucket
    row = _cc.chunk_row(first, shape, row_stops)
    new = np.zeros(len(values), dtype=np.uint64)
    for s, sorted_first in enumerate(row_sorted):
        sel = row == s
        if sel.any():
            new[sel] = (np.uint64(offsets[s]) + np.uint64(1)
                        + np.searchsorted(sorted_first, first[sel]).astype(np.uint64))
    return values, new


def relabel_sequential(labels):
    """``skimage.segmentation.relabel_sequential(labels)``, chunked: ids 1..N in value order.

    Returns ``(relabeled, forward_map, inverse_map)`` as scikit-image does:
    the relabeled image (lazy; ``uint32``, ``uint64`` past 2**32 - 1 labels,
    where scikit-image keeps the input's dtype when it fits) and the two maps
    (scikit-image's own ``ArrayMap`` objects, computed now: one entry per
    label). 0 stays 0; negative values are refused. For ids by first pixel
    instead (as :func:`chunkseg.label` numbers them), see :func:`renumber`.
    """
    from skimage.segmentation import relabel_sequential as sk_relabel

    x = check_labels(labels)
    relabeled = _filtered(x, ("all",))
    values = _graph.distinct(x).compute()  # one value per label: small per object
    if not len(values) or values[0] != 0:
        values = np.concatenate([np.zeros(1, dtype=values.dtype), values])
    _, forward, inverse = sk_relabel(values)
    return relabeled, forward, inverse


def renumber(labels) -> da.Array:
    """Any label image to ids 1..N in raster order of each label's first pixel (lazy).

    Pixels with the same value keep one id (even if the value occurs in
    separate places); 0 stays 0; negative values are refused. The order of
    :func:`chunkseg.label` and of the watershed's seeds; for value order
    (scikit-image's), see :func:`relabel_sequential`.
    """
    x = check_labels(labels)
    max_value, nbuckets, edges = _buckets(x)
    dtype = label_dtype(max_value)
    g = _graph.Graph("relabel", x)
    split = _chunk_parts(g, x, edges)
    buckets = _bucket_tasks(g, split, x.numblocks, nbuckets)
    row_stops = np.cumsum(x.chunks[0])
    nrows = len(x.chunks[0])
    row_sorted = [
        g.task("row", (s,), _cc.sorted_concat, *[
            g.task("row-part", (s, k), _bucket_firsts_in_row, b, s=s, shape=x.shape,
                   row_stops=row_stops)
            for k, b in enumerate(buckets)])
        for s in range(nrows)
    ]
    offsets = g.task("offsets", (), _offsets, *[g.task("row-n", (s,), _len, ss)
                                                for s, ss in enumerate(row_sorted)])
    tables = [g.task("table", (k,), _resolve_bucket, b, offsets, *row_sorted, shape=x.shape,
                     row_stops=row_stops) for k, b in enumerate(buckets)]
    return _apply(g, x, tables, split, nbuckets, dtype)
