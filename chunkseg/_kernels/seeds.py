"""Seeds as ``skimage.feature.peak_local_max(distance, exclude_border=False)`` finds them.

scikit-image keeps the local maxima of the distance map (a maximum filter
with an all-ones footprint, values above the global minimum, which is 0
wherever the image has background), then walks them by decreasing distance
(ties in raster order) and rejects any within Chebyshev distance
``< min_distance`` of one already kept. That walk is global: a chain of
rejections can cross chunk cuts. A block walks its candidates in the same
order with three values: a candidate is surely rejected once a surely kept
stronger one is close, surely kept once everything within reach is known
and rejected; the rest (near cuts, a few per chunk) are sent, with the kept
seeds around them, to :func:`settle_undecided`, one small global step.

Candidates are identified by their flat index in the whole image; the
priority of a candidate is ``(-level, flat index)``.
"""

from __future__ import annotations

import numba
import numpy as np

from . import distance as _dist


_UNDECIDED, _KEPT, _REJECTED = 0, 1, 2
_UNDECIDED_MARK = 3  # in the status image, where 0 means "no candidate walked here"


def _global_flat(local_coords: np.ndarray, start, image_shape) -> np.ndarray:
    coords = local_coords + np.asarray(start, dtype=np.int64)
    return np.ravel_multi_index(tuple(coords.T), image_shape).astype(np.int64)


def _priority_order(level: np.ndarray, flat: np.ndarray) -> np.ndarray:
    return np.lexsort((flat, -level))


def _close_pairs(coords: np.ndarray, min_distance: int) -> np.ndarray:
    """Index pairs of points whose Chebyshev distance is below ``min_distance``."""
    if min_distance <= 1 or len(coords) < 2:
        return np.empty((0, 2), dtype=np.int64)
    from scipy.spatial import cKDTree  # only where candidates meet (rare)

    tree = cKDTree(coords)
    return tree.query_pairs(r=min_distance - 0.5, p=np.inf, output_type="ndarray")


def _stronger_neighbours(pairs: np.ndarray, rank: np.ndarray, n: int) -> list[list[int]]:
    """For each point, the indices of its close points of higher priority."""
    out: list[list[int]] = [[] for _ in range(n)]
    for i, j in pairs.tolist():
        if rank[i] < rank[j]:
            out[j].append(i)
        else:
            out[i].append(j)
    return out


@numba.njit(cache=True, nogil=True)
def _walk(coords, ball_ok, shape, radius):
    """The three-valued greedy walk over candidates sorted strongest first.

    Scans the Chebyshev ball of ``radius`` around each candidate in a status
    image, where only stronger (already walked) candidates are marked.
    """
    n, ndim = coords.shape
    strides = np.ones(ndim, dtype=np.int64)
    for a in range(ndim - 2, -1, -1):
        strides[a] = strides[a + 1] * shape[a + 1]
    size = 1
    for a in range(ndim):
        size *= shape[a]
    marks = np.zeros(size, dtype=np.int8)
    status = np.zeros(n, dtype=np.int8)
    width = 2 * radius + 1
    total = width**ndim
    lo = np.empty(ndim, dtype=np.int64)
    for i in range(n):
        for a in range(ndim):
            lo[a] = coords[i, a] - radius
        any_kept = False
        any_open = False
        for k in range(total):
            rem = k
            flat = 0
            inside = True
            for a in range(ndim - 1, -1, -1):
                c = lo[a] + rem % width
                rem //= width
                if c < 0 or c >= shape[a]:
                    inside = False
                    break
                flat += c * strides[a]
            if not inside:
                continue
            m = marks[flat]
            if m == _KEPT:
                any_kept = True
                break
            if m == _UNDECIDED_MARK:
                any_open = True
        if any_kept:
            st = _REJECTED
        elif ball_ok[i] and not any_open:
            st = _KEPT
        else:
            st = _UNDECIDED
        status[i] = st
        flat = 0
        for a in range(ndim):
            flat += coords[i, a] * strides[a]
        marks[flat] = _UNDECIDED_MARK if st == _UNDECIDED else st
    return status


def _box_any(flags: np.ndarray, coords: np.ndarray, radius: int) -> np.ndarray:
    """For each point, whether any flag is set within Chebyshev ``radius`` (clipped).

    A summed-area table answers each box in 2**ndim lookups, instead of a
    maximum filter over the whole block.
    """
    ndim = flags.ndim
    table = np.zeros(tuple(s + 1 for s in flags.shape), dtype=np.int32)
    table[(slice(1, None),) * ndim] = flags
    for axis in range(ndim):
        np.cumsum(table, axis=axis, out=table)
    lo = np.maximum(coords - radius, 0)
    hi = np.minimum(coords + radius + 1, np.asarray(flags.shape))
    total = np.zeros(len(coords), dtype=np.int64)
    for corner in np.ndindex(*(2,) * ndim):
        idx = tuple(np.where(c, hi[:, a], lo[:, a]) for a, c in enumerate(corner))
        sign = -1 if (ndim - sum(corner)) % 2 else 1
        total += sign * table[idx]
    return total > 0


def seed_block(mask: np.ndarray, *, start, image_shape, core, min_distance: int,
               footprint: int, sampling=None, keep_levels: bool = False) -> dict:
    """Seeds of one chunk, from its block padded with a halo.

    Parameters
    ----------
    mask : bool array
        The foreground of the padded block.
    start : tuple of int
        Global index of the padded block's first pixel.
    image_shape : tuple of int
    core : tuple of slice
        The chunk itself, within the padded block.

    Returns
    -------
    dict with ``ok`` (every core pixel's candidate status is proven; else
    retry with a larger halo), ``max_level`` over the core, the kept
    ``seeds`` (flat indices, sorted) with their ``seed_level``, the
    ``undecided`` core candidates and the kept ``border`` seeds that the
    global step needs, each with its level. With ``keep_levels``, also
    ``levels``: the core's distance levels, which are then the whole image's
    (every core pixel is proven), so the watershed pass need not recompute them.
    """
    ndim = mask.ndim
    cuts = [
        (start[a] > 0, start[a] + mask.shape[a] < image_shape[a]) for a in range(ndim)
    ]
    lv = _dist.levels(mask, sampling)
    proven = _dist.proven(lv, cuts, sampling)
    radius = footprint // 2
    # The candidate status of a pixel is known when its whole footprint window
    # has exact distances and does not reach across a cut.
    unknown = ~proven
    if footprint > 1:
        unknown = _dist.box_max(unknown, footprint)
    unknown |= _dist.edge_band(mask.shape, cuts, max(radius, 1))
    known = ~unknown

    core_known = known[core]
    ok = bool(core_known.all())
    core_mask = mask[core]
    max_level = float(lv[core][core_mask].max()) if core_mask.any() and ok else 0.0
    empty = np.empty(0, dtype=np.int64)
    result = {"ok": ok, "max_level": max_level}
    if not ok:
        return result

    # levels() is either finite everywhere or inf everywhere (a block without background)
    finite = lv if lv.size == 0 or np.isfinite(lv.flat[0]) else np.zeros_like(lv)
    if footprint > 1:
        local_max = finite == _dist.box_max(finite, footprint)
    else:
        local_max = np.ones(mask.shape, dtype=bool)
    candidates = known & mask & (finite > 0) & local_max
    coords = np.argwhere(candidates)
    level = finite[candidates]
    flat = _global_flat(coords, start, image_shape)
    order = _priority_order(level, flat)
    coords, level, flat = coords[order], level[order], flat[order]
    n = len(flat)

    # Three-valued greedy walk. A candidate is surely rejected when a surely
    # kept stronger candidate lies within min_distance; surely kept when every
    # pixel within min_distance - 1 is known and every stronger candidate
    # there is surely rejected; otherwise undecided (left to the global step).
    ball_ok = ~_box_any(unknown, coords, min_distance - 1) if n else np.zeros(0, dtype=bool)
    status = _walk(coords.astype(np.int64), ball_ok, np.asarray(mask.shape, dtype=np.int64),
                   min_distance - 1)
    kept = status == _KEPT
    closed = status != _UNDECIDED

    in_core = np.ones(n, dtype=bool)
    for a, sl in enumerate(core):
        in_core &= (coords[:, a] >= sl.start) & (coords[:, a] < sl.stop)
    decided_kept = in_core & closed & kept
    undecided = in_core & ~closed

    # Kept seeds the global step needs: those close to an undecided candidate
    # of this chunk, or close to a cut (an undecided candidate of a
    # neighbouring chunk may lie across it).
    near = np.zeros(n, dtype=bool)
    if min_distance > 1:
        for a, sl in enumerate(core):
            lo_cut, hi_cut = cuts[a][0] or sl.start > 0, cuts[a][1] or sl.stop < mask.shape[a]
            if lo_cut:
                near |= coords[:, a] < sl.start + min_distance - 1
            if hi_cut:
                near |= coords[:, a] >= sl.stop - (min_distance - 1)
        if undecided.any() and decided_kept.any():
            from scipy.spatial import cKDTree

            tree = cKDTree(coords[undecided])
            dist, _ = tree.query(coords[decided_kept], p=np.inf,
                                 distance_upper_bound=min_distance - 0.5)
            near_und = np.zeros(n, dtype=bool)
            near_und[np.flatnonzero(decided_kept)[np.isfinite(dist)]] = True
            near |= near_und
    border = decided_kept & near

    seed_order = np.argsort(flat[decided_kept])
    result.update(
        seeds=flat[decided_kept][seed_order],
        seed_level=level[decided_kept][seed_order],
        undecided=flat[undecided] if undecided.any() else empty,
        undecided_level=level[undecided] if undecided.any() else np.empty(0),
        border=flat[border] if border.any() else empty,
        border_level=level[border] if border.any() else np.empty(0),
    )
    if keep_levels:
        dtype = np.float32 if _dist.is_isotropic(sampling) else np.float64
        result["levels"] = np.ascontiguousarray(lv[core], dtype=dtype)
    return result


def settle_undecided(undecided, undecided_level, border, border_level, *,
                     image_shape, min_distance: int) -> np.ndarray:
    """Decide the candidates no chunk could settle alone; returns the kept ones.

    Walks ``undecided`` in priority order, rejecting each that lies within
    Chebyshev ``< min_distance`` of a stronger kept seed (a settled ``border``
    seed, or an undecided one kept earlier in the walk).
    """
    undecided = np.asarray(undecided, dtype=np.int64)
    if len(undecided) == 0:
        return undecided
    if min_distance <= 1:
        return np.sort(undecided)
    order = _priority_order(np.asarray(undecided_level), undecided)
    undecided, undecided_level = undecided[order], np.asarray(undecided_level)[order]
    border = np.asarray(border, dtype=np.int64)
    border_level = np.asarray(border_level)
    flat = np.concatenate([border, undecided])
    level = np.concatenate([border_level, undecided_level])
    coords = np.stack(np.unravel_index(flat, image_shape), axis=1)
    # rank in the global priority order: lower is stronger
    rank = np.empty(len(flat), dtype=np.int64)
    rank[_priority_order(level, flat)] = np.arange(len(flat))
    stronger = _stronger_neighbours(_close_pairs(coords, min_distance), rank, len(flat))
    kept = np.zeros(len(flat), dtype=bool)
    kept[: len(border)] = True
    nb_border = len(border)
    for k in range(len(undecided)):
        i = nb_border + k
        kept[i] = not any(kept[j] for j in stronger[i])
    return np.sort(undecided[kept[nb_border:]])
