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

    ring = tuple(slice(max(sl.start - 1, 0), sl.stop + 1) for sl in core)
    if (local[ring] == taint_id).any():
        return None
    lut = np.zeros(m + 2, dtype=dtype)
    lut[1 : m + 1] = seed_ids
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
