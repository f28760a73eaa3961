"""Seeded watershed of one block that equals the whole-image flooding.

scikit-image floods ``-distance`` from the markers with a priority queue
ordered by (value, age); markers all have age 0, so ties between markers are
broken by heap layout, which depends on every marker in the image. Here the
flooding key is the level (squared distance, exact integers on isotropic
grids; ranks of the distance otherwise) negated, which orders pixels exactly
as ``-distance`` does, and markers are queued in global-id order
(:mod:`chunkseg._kernels.flood`): the same in every block that sees them.

The check ("taint"): foreground pixels on a cut of the block, and pixels
whose distance the block cannot prove, become markers of an extra label that
is queued before every real marker, so it wins every tie. If that label
reaches the core (or the one-pixel ring around it), something outside the
block could have changed the core, and the block is recomputed with a larger
halo.
"""

from __future__ import annotations

import numpy as np
from . import distance as _dist
from . import flood as _flood
from . import halo as _halo


class HaloTooSmall(Exception):
    """Raised inside a block when even the largest halo could not be proven."""


def _priority(lv: np.ndarray, mask: np.ndarray, sampling):
    """Flooding priority, low first: farthest from background floods first.

    Returns ``(levels, top)``: the priority is ``top - levels``. Isotropic
    levels are exact integer squared distances (used as they are, the flood
    subtracts as it copies them); anisotropic ones are replaced by their
    ranks. Either way the order (ties included) is the order of ``-distance``.
    """
    # levels() is finite everywhere or nowhere (a block without background)
    everywhere = lv.size == 0 or np.isfinite(lv.flat[0])
    if _dist.is_isotropic(sampling) and everywhere:
        return lv, int(lv.max()) if lv.size else 0  # 0 on the background already
    if _dist.is_isotropic(sampling):
        return np.zeros(lv.shape, dtype=np.int32), 0
    finite = np.isfinite(lv) & mask
    level = np.zeros(lv.shape, dtype=np.int32)
    _, inverse = np.unique(lv[finite], return_inverse=True)
    level[finite] = inverse
    return level, int(level.max()) if level.size else 0


def flood_block(mask, *, start, image_shape, core, seed_coords, seed_ids, sampling=None,
                levels=None, dtype=np.uint64):
    """One attempt: labels of the core (global ids as ``dtype``), or None if the check fails.

    ``seed_coords`` are block-local coordinates of every seed inside the
    block, ``seed_ids`` their global ids (any order). ``levels``, when given,
    are the whole image's distance levels over the block (from the seeds
    pass); otherwise they are computed here and trusted only where proven.
    """
    ndim = mask.ndim
    if not mask[core].any():  # no foreground in the chunk (glass): nothing to flood there
        return np.zeros(tuple(sl.stop - sl.start for sl in core), dtype=dtype)
    cuts = [(start[a] > 0, start[a] + mask.shape[a] < image_shape[a]) for a in range(ndim)]
    if levels is None:
        lv = _dist.levels(mask, sampling)
        unproven = ~_dist.proven(lv, cuts, sampling)
    else:
        lv, unproven = levels, None
    # a block without background has no finite level; it is all taint below
    level, top = _priority(lv, mask, sampling)

    order = np.argsort(seed_ids, kind="stable")
    seed_coords = np.asarray(seed_coords, dtype=np.int64).reshape(-1, ndim)[order]
    seed_ids = np.asarray(seed_ids, dtype=np.uint64)[order]
    m = len(seed_ids)
    taint_id = m + 1
    seed_flat = np.ravel_multi_index(tuple(seed_coords.T), mask.shape) if m else np.empty(0, np.int64)
    band = _dist.edge_band(mask.shape, cuts, 1)
    taint = mask & (band if unproven is None else unproven | band)
    # taint is queued first, so it wins every tie; seeds follow in global-id order
    taint_flat = np.flatnonzero(taint)
    free = ~taint.flat[seed_flat]
    queue = np.concatenate([taint_flat, seed_flat[free]])
    queue_labels = np.concatenate([np.full(len(taint_flat), taint_id, dtype=np.int32),
                                   np.arange(1, m + 1, dtype=np.int32)[free]])
    local = _flood.flood(level, mask, queue, queue_labels, top=top)
    return _proven_core(local, core, seed_ids, dtype)


def _proven_core(local, core, ids, dtype):
    """The core of a flooded block as ``ids`` (local label ``k`` is ``ids[k - 1]``; the taint
    is ``len(ids) + 1``), or None where the taint reached the core or the ring around it."""
    taint_id = len(ids) + 1
    ring = tuple(slice(max(sl.start - 1, 0), sl.stop + 1) for sl in core)
    if (local[ring] == taint_id).any():
        return None
    lut = np.zeros(len(ids) + 2, dtype=dtype)
    lut[1 : len(ids) + 1] = ids
    return lut[local[core]]


def watershed_block(block, *, start, image_shape, core, halo: int, seeds_flat, seeds_id,
                    sampling=None, block_index=(), exact_distances: bool = False, dtype=np.uint64):
    """Labels of one chunk, trying ``halo`` first and the whole padded block second.

    ``block`` is the chunk's mask padded by up to ``2 * halo`` or, with
    ``exact_distances``, the whole image's distance levels there (the mask is
    where they are above 0); ``seeds_flat`` and ``seeds_id`` list the seeds
    (global flat index, global id) that may lie in it. Labels come as ``dtype``.
    """
    image_shape = tuple(image_shape)
    seeds_flat = np.asarray(seeds_flat, dtype=np.int64)
    seeds_id = np.asarray(seeds_id, dtype=np.uint64)
    all_coords = np.stack(np.unravel_index(seeds_flat, image_shape), axis=1) if len(seeds_flat) \
        else np.empty((0, block.ndim), dtype=np.int64)
    full_halo = max(sl.start for sl in core) if core else 0
    full_halo = max([full_halo] + [block.shape[a] - sl.stop for a, sl in enumerate(core)])
    attempts = [halo] if halo >= full_halo else [halo, full_halo]

    def flood(sub, *, start, core, halo):
        levels, sub = (sub, sub > 0) if exact_distances else (None, sub)
        local = all_coords - np.asarray(start, dtype=np.int64)
        inside = np.all((local >= 0) & (local < np.asarray(sub.shape)), axis=1)
        return flood_block(sub, start=start, image_shape=image_shape, core=core,
                           seed_coords=local[inside], seed_ids=seeds_id[inside],
                           sampling=sampling, levels=levels, dtype=dtype)

    _, result = _halo.first_proven(block, start=start, core=core, halos=attempts, kernel=flood)
    if result is not None:
        return result
    raise HaloTooSmall(
        f"chunk {tuple(block_index)}: the watershed could not be proven with a halo of "
        f"{attempts[-1]} px; objects here reach farther. Rerun with a `halo` of {4 * max(attempts[-1], 1)} "
        "or larger chunks"
    )


def elevation_priority(elevation: np.ndarray) -> tuple[np.ndarray, int]:
    """``(level, top)`` for :func:`flood`: the priority ``top - level`` orders the pixels
    as scikit-image orders ``elevation.astype(float64)`` (ties included), low first.

    Integers of a small range are used as they are; anything else by rank
    within the block (an order-preserving map, so every block agrees).
    """
    if elevation.size == 0:
        return np.zeros(elevation.shape, np.int32), 0
    if elevation.dtype.kind in "biu" and elevation.dtype.itemsize <= 4:
        lo, hi = int(elevation.min()), int(elevation.max())
        if hi - lo < 2**20:  # buckets: one per value
            return np.subtract(hi, elevation, dtype=np.int32), hi - lo
    values = elevation.astype(np.float64, copy=False)  # as scikit-image compares them
    _, rank = np.unique(values.ravel(), return_inverse=True)
    top = int(rank.max())
    return (top - rank).astype(np.int32).reshape(elevation.shape), top


def flood_markers_block(elevation, markers, mask, *, start, image_shape, core,
                        connectivity: int = 1, dtype=np.uint64):
    """One attempt of the general seeded watershed: the core's labels, or None if the check
    fails.

    ``markers`` holds label values (0: none; kept as they are in the result),
    ``mask`` the pixels that may be flooded (None: all). Marker pixels are
    queued in raster order, which is the same order in every block that sees
    them. The check is the one of :func:`flood_block`: mask pixels on a cut
    of the block are an extra label queued first; if it reaches the core or
    the ring around it, the block is not proven.
    """
    ndim = elevation.ndim
    if mask is None:
        mask = np.ones(elevation.shape, dtype=bool)
    cuts = [(start[a] > 0, start[a] + elevation.shape[a] < image_shape[a]) for a in range(ndim)]
    level, top = elevation_priority(elevation)
    taint = mask & _dist.edge_band(mask.shape, cuts, 1)
    marked = (markers != 0) & mask & ~taint
    marker_flat = np.flatnonzero(marked)  # raster order
    values, local_ids = np.unique(markers.ravel()[marker_flat], return_inverse=True)
    taint_id = len(values) + 1
    taint_flat = np.flatnonzero(taint)
    queue = np.concatenate([taint_flat, marker_flat])
    queue_labels = np.concatenate([np.full(len(taint_flat), taint_id, dtype=np.int32),
                                   (local_ids + 1).astype(np.int32)])
    local = _flood.flood(level, mask, queue, queue_labels, top=top, connectivity=connectivity)
    return _proven_core(local, core, values, dtype)
