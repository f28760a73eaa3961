"""Global relabelling of label images: sequential ids, size filter, border clearing.

Per-label tables are never held whole: each chunk reports the values it
holds (with counts and first pixels); the tables are split into buckets of
value ranges, each bucket is merged and decided on its own, new ids come
from a cumsum over buckets (or over slabs for first-pixel order), and each
chunk gets back only the entries of its own values.
"""

from __future__ import annotations

import functools
import operator

import dask
import dask.array as da
import numpy as np
from dask.graph_manipulation import bind

from . import _graph
from ._kernels import components as _cc
from ._validate import InputError, check_image_array

__all__ = ["clear_border", "relabel_sequential", "remove_small_objects"]

_MAX_BUCKETS = 16


def _check_labels(labels) -> da.Array:
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


def _kept_count(bucket, rule, border=None):
    return int(np.count_nonzero(_keep_mask(bucket, rule, border)))


def _compact_table(bucket, rule, offsets, k, border=None):
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


def _apply(x, tables_by_bucket, parts_split, nbuckets, dtype, after):
    """Per chunk: look its values up in each bucket's table, then remap."""
    d = dask.delayed
    again = bind(x, after)
    again_blocks = again.to_delayed()
    rows = np.empty(x.numblocks, dtype=object)
    for idx in np.ndindex(*x.numblocks):
        lookups = [d(_lookup, pure=True)(d(operator.getitem, pure=True)(parts_split[idx], k),
                                         tables_by_bucket[k]) for k in range(nbuckets)]
        task = d(_remap_values, pure=True)(again_blocks[idx], *lookups, dtype=dtype)
        shape_c = tuple(c[i] for c, i in zip(x.chunks, idx))
        rows[idx] = da.from_delayed(task, shape=shape_c, dtype=dtype,
                                    meta=np.empty((0,) * x.ndim, dtype=dtype))
    return da.block(rows.tolist())


def _per_chunk_parts(x, edges):
    d = dask.delayed
    origins = _graph.block_origins(x.chunks)
    blocks = x.to_delayed()
    parts, split = {}, {}
    for idx in np.ndindex(*x.numblocks):
        origin = tuple(int(origins[a][i]) for a, i in enumerate(idx))
        parts[idx] = d(_cc.chunk_values, pure=True)(blocks[idx], origin=origin, image_shape=x.shape)
        split[idx] = d(_split, pure=True)(parts[idx], edges)
    return parts, split


def _buckets(x):
    max_value = int(x.max().compute())
    nbuckets = max(1, min(_MAX_BUCKETS, int(np.prod(x.numblocks)), max_value))
    return max_value, nbuckets, _bucket_edges(max_value, nbuckets)


def _filtered(x, rule, border=None):
    from .segment import label_dtype

    d = dask.delayed
    max_value, nbuckets, edges = _buckets(x)
    dtype = label_dtype(max_value)
    _, split = _per_chunk_parts(x, edges)
    buckets = [
        d(_merge_bucket, pure=True)(*[d(operator.getitem, pure=True)(split[idx], k)
                                      for idx in np.ndindex(*x.numblocks)])
        for k in range(nbuckets)
    ]
    kept = [d(_kept_count, pure=True)(b, rule, border) for b in buckets]
    offsets = d(_offsets, pure=True)(*kept)
    tables = [d(_compact_table, pure=True)(b, rule, offsets, k, border) for k, b in enumerate(buckets)]
    return _apply(x, tables, split, nbuckets, dtype, tables)


def remove_small_objects(labels, min_size: int) -> da.Array:
    """Drop objects smaller than ``min_size`` pixels, measured whole; ids stay 1..N.

    An object that spans several chunks is measured by its global size,
    never by its pieces. Kept objects keep their order (new id = number of
    kept ids up to the old one). Like ``skimage.morphology.remove_small_objects``
    on a label image (connectivity as given by the labels), followed by an
    order-preserving relabelling.
    """
    x = _check_labels(labels)
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise InputError(f"`min_size` must be a non-negative integer, got {min_size!r}")
    return _filtered(x, ("min_size", int(min_size)))


def _touches(x, idx):
    return tuple((i == 0, i == n - 1) for i, n in zip(idx, x.numblocks))


def _union_values(*arrays):
    return np.unique(np.concatenate(arrays)) if arrays else np.empty(0, np.uint64)


def clear_border(labels) -> da.Array:
    """Remove the objects that touch the image border (globally); ids stay 1..N."""
    x = _check_labels(labels)
    d = dask.delayed
    blocks = x.to_delayed()
    edge = [
        d(_cc.border_values, pure=True)(blocks[idx], touches=_touches(x, idx))
        for idx in np.ndindex(*x.numblocks)
        if any(lo or hi for lo, hi in _touches(x, idx))
    ]
    border = d(_union_values, pure=True)(*edge)
    return _filtered(x, ("border",), border)


def _slab_of(first, shape, slab_stops):
    row = np.unravel_index(first, shape)[0]
    return np.searchsorted(slab_stops, row, side="right")


def _bucket_firsts_in_slab(bucket, s, shape, slab_stops):
    first = bucket[2]
    return np.sort(first[_slab_of(first, shape, slab_stops) == s])


def _resolve_bucket(bucket, offsets, shape, slab_stops, *slab_sorted):
    values, _, first = bucket
    slab = _slab_of(first, shape, slab_stops)
    new = np.zeros(len(values), dtype=np.uint64)
    for s, sorted_first in enumerate(slab_sorted):
        sel = slab == s
        if sel.any():
            new[sel] = np.uint64(offsets[s]) + np.searchsorted(sorted_first, first[sel]).astype(np.uint64) + np.uint64(1)
    return values, new


def relabel_sequential(labels) -> da.Array:
    """Any label image to ids 1..N in raster order of each label's first pixel.

    Pixels with the same value keep one id (even if the value occurs in
    separate places); 0 stays 0. Equals
    ``skimage.segmentation.relabel_sequential`` when the input ids already
    follow that order, and otherwise renumbers by first pixel.
    """
    from .segment import label_dtype

    x = _check_labels(labels)
    d = dask.delayed
    max_value, nbuckets, edges = _buckets(x)
    dtype = label_dtype(max_value)
    _, split = _per_chunk_parts(x, edges)
    buckets = [
        d(_merge_bucket, pure=True)(*[d(operator.getitem, pure=True)(split[idx], k)
                                      for idx in np.ndindex(*x.numblocks)])
        for k in range(nbuckets)
    ]
    slab_stops = np.cumsum(x.chunks[0])
    nslabs = len(x.chunks[0])
    slab_sorted = [
        d(np.sort, pure=True)(d(np.concatenate, pure=True)(
            [d(_bucket_firsts_in_slab, pure=True)(b, s, x.shape, slab_stops) for b in buckets]))
        for s in range(nslabs)
    ]
    offsets = d(_offsets, pure=True)(*[d(len, pure=True)(s) for s in slab_sorted])
    tables = [d(_resolve_bucket, pure=True)(b, offsets, x.shape, slab_stops, *slab_sorted)
              for b in buckets]
    return _apply(x, tables, split, nbuckets, dtype, tables)
