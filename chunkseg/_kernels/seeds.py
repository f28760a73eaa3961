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

import dataclasses

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
def _walk(coords, unknown, shape, radius):
    """The three-valued greedy walk over candidates sorted strongest first.

    Scans the Chebyshev ball of ``radius`` (clipped to the block) around each
    candidate in a status image, where only stronger (already walked)
    candidates are marked, and in ``unknown`` (raveled): a candidate with an
    unknown pixel in its ball cannot be surely kept.
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
    ball = np.zeros(total, dtype=np.int64)  # flat offsets of the ball, for candidates inside
    for k in range(total):
        rem = k
        for a in range(ndim - 1, -1, -1):
            ball[k] += (rem % width - radius) * strides[a]
            rem //= width
    lo = np.empty(ndim, dtype=np.int64)
    for i in range(n):
        center = 0
        inside_all = True
        for a in range(ndim):
            c = coords[i, a]
            lo[a] = c - radius
            center += c * strides[a]
            if c - radius < 0 or c + radius >= shape[a]:
                inside_all = False
        any_kept = False
        any_open = False
        any_unknown = False
        for k in range(total):
            if inside_all:
                flat = center + ball[k]
            else:
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
            if unknown[flat]:
                any_unknown = True
        if any_kept:
            st = _REJECTED
        elif not any_unknown and not any_open:
            st = _KEPT
        else:
            st = _UNDECIDED
        status[i] = st
        marks[center] = _UNDECIDED_MARK if st == _UNDECIDED else st
    return status


@numba.njit(cache=True, nogil=True)
def _peaks_2d(lv, unknown, lo, hi):
    """Flat indices, in raster order, of the known pixels with ``lv > 0`` that
    equal the maximum of ``lv`` over their window (``lo`` back, ``hi`` forward,
    clipped at the block's edges)."""
    n0, n1 = lv.shape
    out = np.empty(n0 * n1, dtype=np.int64)
    count = 0
    for i in range(n0):
        a0, b0 = max(i - lo, 0), min(i + hi + 1, n0)
        for j in range(n1):
            v = lv[i, j]
            if v <= 0 or unknown[i, j]:
                continue
            a1, b1 = max(j - lo, 0), min(j + hi + 1, n1)
            peak = True
            for ii in range(a0, b0):
                for jj in range(a1, b1):
                    if lv[ii, jj] > v:
                        peak = False
                        break
                if not peak:
                    break
            if peak:
                out[count] = i * n1 + j
                count += 1
    return out[:count].copy()


@numba.njit(cache=True, nogil=True)
def _peaks_3d(lv, unknown, lo, hi):
    """:func:`_peaks_2d` in 3D."""
    n0, n1, n2 = lv.shape
    out = np.empty(n0 * n1 * n2, dtype=np.int64)
    count = 0
    for i in range(n0):
        a0, b0 = max(i - lo, 0), min(i + hi + 1, n0)
        for j in range(n1):
            a1, b1 = max(j - lo, 0), min(j + hi + 1, n1)
            for k in range(n2):
                v = lv[i, j, k]
                if v <= 0 or unknown[i, j, k]:
                    continue
                a2, b2 = max(k - lo, 0), min(k + hi + 1, n2)
                peak = True
                for ii in range(a0, b0):
                    for jj in range(a1, b1):
                        for kk in range(a2, b2):
                            if lv[ii, jj, kk] > v:
                                peak = False
                                break
                        if not peak:
                            break
                    if not peak:
                        break
                if peak:
                    out[count] = (i * n1 + j) * n2 + k
                    count += 1
    return out[:count].copy()


def _peaks(lv: np.ndarray, unknown: np.ndarray, footprint: int) -> np.ndarray:
    """Candidates: known pixels above 0 equal to the maximum over their footprint window
    (``maximum_filter(lv, footprint, mode="nearest") == lv``), as flat indices in raster order."""
    lo, hi = footprint // 2, (footprint - 1) // 2
    if lv.ndim == 2:
        return _peaks_2d(lv, unknown, lo, hi)
    if lv.ndim == 3:
        return _peaks_3d(lv, unknown, lo, hi)
    local_max = lv == _dist.box_max(lv, footprint) if footprint > 1 else True
    return np.flatnonzero(~unknown & (lv > 0) & local_max)


_NONE = np.empty(0, dtype=np.int64)


def _none() -> np.ndarray:
    return _NONE


@dataclasses.dataclass(frozen=True)
class SeedBlock:
    """What :func:`seed_block` found in one chunk.

    ``ok``: every core pixel's candidate status is proven (else retry with a
    larger halo; then nothing else is set). ``max_level``: the largest
    distance level over the core. ``seeds``: the kept seeds (flat indices,
    sorted). ``undecided`` and ``border`` (with their levels): the core
    candidates the global step settles, and the kept seeds it needs.
    ``levels``: the core's distance levels (with ``keep_distances``).
    ``halo``: the halo that proved the chunk (set by the graph's task).
    """

    ok: bool
    max_level: float = 0.0
    seeds: np.ndarray = dataclasses.field(default_factory=_none)
    undecided: np.ndarray = dataclasses.field(default_factory=_none)
    undecided_level: np.ndarray = dataclasses.field(default_factory=_none)
    border: np.ndarray = dataclasses.field(default_factory=_none)
    border_level: np.ndarray = dataclasses.field(default_factory=_none)
    levels: np.ndarray | None = None
    halo: int | None = None


def seed_block(mask: np.ndarray, *, start, image_shape, core, min_distance: int,
               footprint: int, sampling=None, keep_distances: bool = False) -> SeedBlock:
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
    SeedBlock
        With ``keep_distances``, also ``levels``: the core's distance levels,
        which are then the whole image's (every core pixel is proven), so the
        watershed pass need not recompute them.
    """
    ndim = mask.ndim
    if not mask.any():  # all background (glass): every level is 0 and proven, no candidate
        levels = None
        if keep_distances:
            levels = np.zeros(tuple(sl.stop - sl.start for sl in core),
                              dtype=level_dtype(0.0, sampling))
        return SeedBlock(ok=True, max_level=0.0, levels=levels)
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
    # levels are 0 on the background and finite once proven
    max_level = float(lv[core].max()) if ok and lv[core].size else 0.0
    empty = _NONE
    if not ok:
        return SeedBlock(ok=False, max_level=max_level)

    # levels() is either finite everywhere or inf everywhere (a block without background)
    finite = lv if lv.size == 0 or np.isfinite(lv.flat[0]) else np.zeros_like(lv)
    finite = np.ascontiguousarray(finite)
    unknown = np.ascontiguousarray(unknown)
    local = _peaks(finite, unknown, footprint)
    coords = np.stack(np.unravel_index(local, mask.shape), axis=1).astype(np.int64) if len(local) \
        else np.empty((0, ndim), dtype=np.int64)
    level = finite.ravel()[local]
    flat = _global_flat(coords, start, image_shape)
    order = _priority_order(level, flat)
    coords, level, flat = coords[order], level[order], flat[order]
    n = len(flat)

    # Three-valued greedy walk. A candidate is surely rejected when a surely
    # kept stronger candidate lies within min_distance; surely kept when every
    # pixel within min_distance - 1 is known and every stronger candidate
    # there is surely rejected; otherwise undecided (left to the global step).
    status = _walk(coords, unknown.ravel(), np.asarray(mask.shape, dtype=np.int64),
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
    return SeedBlock(
        ok=True, max_level=max_level,
        seeds=flat[decided_kept][seed_order],
        undecided=flat[undecided] if undecided.any() else empty,
        undecided_level=level[undecided] if undecided.any() else np.empty(0),
        border=flat[border] if border.any() else empty,
        border_level=level[border] if border.any() else np.empty(0),
        levels=np.ascontiguousarray(lv[core], dtype=level_dtype(max_level, sampling))
        if keep_distances else None,
    )


def level_dtype(max_level: float, sampling=None) -> np.dtype:
    """The smallest dtype that holds distance levels up to ``max_level`` exactly.

    Isotropic levels are integer squared distances: uint8 below 256 (distances
    below 16 px, most nuclei: a quarter of float32's bytes to keep and to move),
    uint16 below 65536 (below 256 px), else float32 (exact below 2**24).
    Anisotropic levels are float64 distances.
    """
    if not _dist.is_isotropic(sampling):
        return np.dtype(np.float64)
    if max_level < 2**8:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16 if max_level < 2**16 else np.float32)


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
