"""The Dask graphs of the nuclei pipeline: seeds pass, watershed pass.

Data flow (see DESIGN.md): mask = image > t (lazy) -> pass 1, per chunk plus
halo h: distance, seed candidates, spacing settled where provable -> one
small global step for the undecided candidates -> global ids 1..N in raster
order -> pass 2, per chunk plus halo H: distance (pass 1's, kept in the
workers when it fits the memory budget, else computed again), seeded
watershed with the seeds of the neighbourhood and the taint check -> labels.

Pass 1 is computed when :func:`find_seeds` is called (its result is small:
one row per seed, plus the distances it may leave in worker memory); pass 2
is a lazy dask array.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import math
import threading
import time
import warnings

import dask
import dask.array as da
import numpy as np

from . import _graph
from ._kernels import distance as _dist
from ._kernels import halo as _halo
from ._kernels import seeds as _seeds
from ._kernels import watershed as _ws
from ._kernels.histogram import bincount
from ._layout import label_dtype
from ._validate import HaloTooSmallError, InputError, check_classes, check_image_array, check_int, check_sampling
from .filters import parse_threshold, prefilter
from .relabel import remove_small_objects
from .stitch import label_with_count
from .threshold import METHODS, image_range, pending_threshold, threshold_local, threshold_multiotsu
from .threshold import threshold as _global_threshold

__all__ = [
    "Seeds",
    "HaloTooSmallError",
    "distance_transform_edt",
    "find_seeds",
    "watershed",
    "segment",
    "foreground",
    "label_dtype",
]

log = logging.getLogger(__name__)


def _halo_pixels(distance: float, sampling, ndim: int) -> tuple[int, ...]:
    """A physical reach in pixels per axis."""
    s = sampling or (1.0,) * ndim
    return tuple(int(math.ceil(distance / si - 1e-9)) for si in s)


# --------------------------------------------------------------------------- seeds


@dataclasses.dataclass
class Seeds:
    """The seeds of the whole image, as ``peak_local_max`` finds them.

    Attributes
    ----------
    flat : (N,) int64 array
        Flat index of each seed in the image, in raster order; seed ``i`` has
        label ``i + 1``.
    shape : tuple
        The image shape.
    chunks : tuple of tuples
        The processing chunks of pass 1.
    max_distance : float
        The largest distance to background in the image (physical units).
    halo : tuple of int
        The halo pass 1 needed (largest over chunks).
    undecided : int
        Candidates settled by the global step.
    held : optional
        Pass 1's per-chunk results, distance levels included, kept in memory
        for :func:`watershed` on the same mask (``mask_name``); None when
        they were not kept.
    """

    flat: np.ndarray
    shape: tuple
    chunks: tuple
    max_distance: float
    halo: tuple
    undecided: int
    held: _Held | None = dataclasses.field(default=None, repr=False, compare=False)
    mask_name: str | None = dataclasses.field(default=None, repr=False, compare=False)
    mask_chunks: tuple | None = dataclasses.field(default=None, repr=False, compare=False)
    sampling: tuple | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def distances(self) -> da.Array | None:
        """The whole image's distance levels kept from pass 1 (squared distances
        on isotropic grids, the distance itself otherwise), or None."""
        if self.held is None:
            return None
        return self.held.distances(self.mask_chunks, _seeds.level_dtype(np.inf, self.sampling))

    @property
    def count(self) -> int:
        return int(len(self.flat))

    def to_record(self) -> dict:
        """The seeds as plain data (an array and numbers), e.g. for a resumable run."""
        return {"flat": np.asarray(self.flat, dtype=np.int64), "shape": list(self.shape),
                "chunks": [list(c) for c in self.chunks], "max_distance": self.max_distance,
                "halo": list(self.halo), "undecided": self.undecided}

    @classmethod
    def from_record(cls, record: dict) -> Seeds:
        """The seeds from :meth:`to_record`'s plain data."""
        return cls(flat=np.asarray(record["flat"], dtype=np.int64), shape=tuple(record["shape"]),
                   chunks=tuple(tuple(c) for c in record["chunks"]),
                   max_distance=record["max_distance"], halo=tuple(record["halo"]),
                   undecided=record["undecided"])

    @property
    def coords(self) -> np.ndarray:
        """(N, ndim) coordinates in raster order (row ``i`` has label ``i + 1``)."""
        if not len(self.flat):
            return np.empty((0, len(self.shape)), dtype=np.int64)
        return np.stack(np.unravel_index(self.flat, self.shape), axis=1).astype(np.int64)


def _seed_task(padded, *, start, core, halos, **kwargs) -> _seeds.SeedBlock:
    """The seed kernel on the chunk with the first of ``halos`` that proves it.

    ``padded`` holds the largest; a smaller one is a window of it. A chunk
    that needs more than the first halo is retried here, with the data at
    hand, instead of in another round through the client. The result says
    which ``halo`` it took.
    """
    halo, result = _halo.first_proven(padded, start=start, core=core, halos=halos,
                                      kernel=functools.partial(_seed_window, **kwargs))
    return dataclasses.replace(result, halo=halo)


def _seed_window(block, *, start, core, halo, **kwargs) -> _seeds.SeedBlock:
    return _seeds.seed_block(block, start=start, core=core, **kwargs)


def _seed_results(mask: da.Array, indices, halo, min_distance, footprint, sampling, keep_distances,
                  retry: bool = False):
    """Run the seed kernel on the chunks ``indices`` with ``halo`` (and, with
    ``retry``, twice it where that does not prove a chunk).

    Returns their results in order and, with ``keep_distances``, the persisted
    result of each chunk (a dask collection per chunk; its ``"levels"`` are
    the chunk's distance levels), left in (worker) memory where it was
    computed, for the watershed pass.
    """
    graph = _graph.Graph("seeds", mask)
    source = _graph.Source.of(mask)
    bands = _graph.placement_bands()
    keys, full = [], {}
    halos = (halo[0], 2 * halo[0]) if retry else (halo[0],)
    for index in indices:
        key = _graph.padded_task(
            graph, "seed", source, index, (halos[-1],) * mask.ndim, _seed_task, whole=False,
            halos=halos, image_shape=mask.shape, min_distance=min_distance,
            footprint=footprint, sampling=sampling, keep_distances=keep_distances, bands=bands,
        )
        full[index] = key
    if not keep_distances:
        return graph.compute(list(full.values())), {}
    # the summaries (results without their levels) come back; the levels stay.
    # Where the chunks are kept by band, one task per band collects them (it
    # runs where its band's results are); elsewhere one task per chunk, so
    # no levels move to a collecting worker.
    if bands is None:
        groups = [[index] for index in indices]
    else:
        by_band: dict = {}
        for index in indices:
            by_band.setdefault(_graph.band(index, mask.numblocks, bands), []).append(index)
        groups = [by_band[b] for b in sorted(by_band)]
    for g, members in enumerate(groups):
        keys.append(graph.task("summaries", (g,), _summaries, *[full[i] for i in members]))
    persisted = dask.persist(*[graph.delayed(k) for k in list(full.values()) + keys])
    collected = dask.compute(*persisted[len(full):])
    summary = {i: r for members, rs in zip(groups, collected) for i, r in zip(members, rs)}
    return [summary[i] for i in indices], dict(zip(full, persisted))


def _summaries(*results: _seeds.SeedBlock) -> list:
    """Each result without its levels."""
    return [dataclasses.replace(r, levels=None) for r in results]


@dataclasses.dataclass(frozen=True)
class _Held:
    """Per-chunk results of the seeds pass kept in memory: one dask collection, and keys."""

    collection: object  # a Delayed whose graph holds every kept result (or its future)
    keys: dict  # block index -> key of that chunk's result
    dtype: np.dtype  # holds every level of the image exactly (halos travel in it)

    @classmethod
    def of(cls, persisted: dict, dtype) -> _Held:
        from dask.base import tokenize
        from dask.delayed import Delayed
        from dask.highlevelgraph import HighLevelGraph

        layer = {}
        for p in persisted.values():
            layer.update(dict(p.__dask_graph__()))
        keys = {idx: p.key for idx, p in persisted.items()}
        name = f"seeds-held-{tokenize(*keys.values())[:16]}"
        graph = HighLevelGraph({name: layer}, {name: set()})
        return cls(Delayed(next(iter(keys.values()), name), graph, layer=name), keys,
                   np.dtype(dtype))

    def source(self, chunks) -> _graph.Source:
        """The kept levels as a source of padded blocks (chunk grid ``chunks``)."""
        keys = self.keys
        return _graph.Source(tuple(chunks), self.dtype, lambda idx: keys[idx], item="levels")

    def distances(self, chunks, dtype) -> da.Array:
        """The kept levels as a dask array of ``dtype`` (one task per chunk)."""
        graph = _graph.Graph("levels", self.collection)
        for idx in self.keys:
            graph.task("levels", idx, _distances_as, self.keys[idx], dtype=np.dtype(dtype))
        return graph.array("levels", chunks, np.dtype(dtype))


def _distances_as(result: dict, *, dtype) -> np.ndarray:
    # each chunk keeps the smallest exact dtype of its own levels
    return result.levels.astype(dtype, copy=False)


def distances_budget() -> int:
    """Bytes the seeds pass may leave in memory for the watershed pass.

    A quarter of the workers' memory limits when the pass runs on a
    ``distributed`` client (:func:`chunkseg._graph.current_client`), else a
    quarter of this machine's memory: under ``scheduler="threads"`` the
    levels stay in this process even when a client exists.
    """
    import psutil

    total = psutil.virtual_memory().total
    client = _graph.current_client()
    if client is not None:
        limits = [int(w.get("memory_limit") or 0)
                  for w in client.scheduler_info()["workers"].values()]
        if limits and all(limits):
            total = sum(limits)
    return total // 4


def distances_bytes(shape, sampling=None) -> float:
    """What keeping the levels of an image may take, counted before pass 1 knows
    the distances: 4 bytes a pixel (8 with anisotropic ``sampling``)."""
    return float(np.prod(shape, dtype=np.float64)) * (4 if sampling is None else 8)


def keeps_image(x: da.Array, also: float = 0, budget: float | None = None) -> bool:
    """Whether the prepared image ``x`` and ``also`` bytes fit :func:`distances_budget`
    (or ``budget``; and ``x`` is not in memory already: a numpy array in one chunk)."""
    budget = distances_budget() if budget is None else budget
    return x.npartitions > 1 and x.nbytes + also <= budget


def keeps_distances(shape, sampling=None, budget: float | None = None) -> bool:
    """``keep_distances="auto"``: keep pass 1's levels when they fit :func:`distances_budget`
    (or ``budget``: the plan's, before the workers exist)."""
    budget = distances_budget() if budget is None else budget
    return distances_bytes(shape, sampling) <= budget


def find_seeds(mask, *, min_distance: int = 10, footprint: int = 3, sampling=None,
               halo="auto", max_halo: int | None = None, keep_distances="auto") -> Seeds:
    """Seeds of a chunked foreground mask, equal to the whole-image ``peak_local_max``.

    The seeds are those of ``skimage.feature.peak_local_max(distance,
    min_distance=min_distance, footprint=np.ones((footprint,) * ndim),
    exclude_border=False)`` with ``distance =
    scipy.ndimage.distance_transform_edt(mask, sampling=sampling)``.

    Parameters
    ----------
    mask : (M, N[, P]) bool dask array
    min_distance, footprint : int
    sampling : sequence of float, optional
        Voxel spacing per axis.
    halo : "auto" or int
        Pass-1 halo in pixels. ``"auto"`` starts small and doubles it for the
        chunks whose distances or candidates it cannot prove; an int is used
        as is, and a chunk it cannot prove is an error naming the chunk.
    keep_distances : "auto" or bool
        Keep the distance levels of pass 1 in memory (1 byte a pixel while
        distances stay below 16 px, 2 below 256 px, else 4; 8 with anisotropic
        ``sampling``; each chunk in the smallest of these for its own levels)
        so that :func:`watershed` does not compute the distance transform
        again. ``"auto"`` keeps them when their upper bound
        (:func:`distances_bytes`) fits :func:`distances_budget` (a quarter of the
        memory); larger images recompute them chunk by chunk, which keeps
        memory per chunk.

    Returns
    -------
    Seeds
        Computed now (one barrier): flat indices in raster order, the
        maximum distance, and what the halo needed.

    Notes
    -----
    A distance computed in a padded block is exact wherever it does not
    exceed the distance to the nearest cut; a candidate is known when its
    footprint window is exact; a candidate's keep/reject is settled in its
    block when every stronger candidate within ``min_distance`` is known,
    recursively. The few that are not go to one global step.
    """
    mask = _graph.as_dask(mask)
    if mask.dtype != bool:
        raise InputError(f"`mask` must be boolean, got dtype {mask.dtype}")
    min_distance = check_int("min_distance", min_distance)
    footprint = check_int("footprint", footprint)
    sampling = check_sampling(sampling, mask.ndim)
    fixed = halo != "auto"
    if fixed:
        h = check_int("halo", halo)
    else:
        h = max(footprint // 2 + min_distance + 2, 16)
    limit = max_halo or max(mask.shape)
    keep_distances = keeps_distances(mask.shape, sampling) if keep_distances == "auto" else bool(keep_distances)
    held: dict = {}
    # fused read + threshold: one task per chunk instead of two (this graph is
    # computed as Delayed objects, which dask does not optimise as arrays)
    mask_name = mask.name
    mask = _graph.optimized(mask)

    nblocks = mask.numblocks
    all_indices = list(np.ndindex(*nblocks))
    # the global step needs scipy.spatial (0.08 s to import): imported while pass 1 runs
    threading.Thread(target=importlib.import_module, args=("scipy.spatial",), daemon=True).start()
    results: dict[tuple, dict] = {}
    needed = {idx: h for idx in all_indices}
    pending = all_indices
    while pending:
        hh = needed[pending[0]]
        retry = not fixed and 2 * hh <= limit  # twice the halo tried in the same task
        out, lv = _seed_results(mask, pending, (hh,) * mask.ndim, min_distance, footprint,
                                sampling, keep_distances, retry=retry)
        failed = []
        for idx, res in zip(pending, out):
            needed[idx] = res.halo
            if res.ok:
                results[idx] = res
                if keep_distances:
                    held[idx] = lv[idx]
            else:
                failed.append(idx)
        if not failed:
            break
        hh = needed[failed[0]]
        if fixed or hh >= limit:
            raise HaloTooSmallError(
                f"seeds of chunk{'s' if len(failed) > 1 else ''} "
                f"{', '.join(str(f) for f in failed[:5])}{' ...' if len(failed) > 5 else ''} "
                f"cannot be proven with a halo of {hh} px; objects are wider than that: "
                f"use a `halo` of {2 * hh}, or 'auto'"
            )
        log.info("seeds: %d chunk(s) need a halo above %d px; retrying with %d",
                 len(failed), hh, 2 * hh)
        for idx in failed:
            needed[idx] = 2 * hh
        pending = failed

    ordered = [results[idx] for idx in all_indices]
    undecided = [r.undecided for r in ordered]
    n_undecided = int(sum(len(u) for u in undecided))
    kept_undecided = np.empty(0, dtype=np.int64)
    if n_undecided:
        kept_undecided = _seeds.settle_undecided(
            np.concatenate(undecided),
            np.concatenate([r.undecided_level for r in ordered]),
            np.concatenate([r.border for r in ordered]),
            np.concatenate([r.border_level for r in ordered]),
            image_shape=mask.shape, min_distance=min_distance,
        )
    flat = np.sort(np.concatenate([r.seeds for r in ordered] + [kept_undecided]))
    max_level = max((r.max_level for r in ordered), default=0.0)
    max_distance = float(_dist.distance_from_levels(np.float64(max_level), sampling))
    log.info("seeds: %d (%d settled globally), max distance %.3g, halo %d",
             len(flat), len(kept_undecided), max_distance, max(needed.values()))
    return Seeds(
        flat=flat.astype(np.int64), shape=tuple(mask.shape), chunks=mask.chunks,
        max_distance=max_distance, halo=(max(needed.values()),) * mask.ndim,
        undecided=n_undecided,
        held=_Held.of(held, _seeds.level_dtype(max_level, sampling)) if keep_distances else None,
        mask_name=mask_name, mask_chunks=tuple(mask.chunks), sampling=sampling,
    )


# --------------------------------------------------------------------------- watershed


def watershed_halo(max_distance: float, min_distance: int, sampling, ndim: int) -> tuple[int, ...]:
    """Pass-2 halo per axis: ``2 * ceil(max distance) + min_distance + 2`` pixels."""
    reach = _halo_pixels(2 * max_distance, sampling, ndim)
    return tuple(r + min_distance + 2 for r in reach)


def _seeds_in(table: np.ndarray, region, image_shape) -> tuple[np.ndarray, np.ndarray]:
    """The seeds of ``table`` (all flat indices, sorted: seed ``i`` has id ``i + 1``)
    inside ``region`` (per axis ``(start, stop)``): their flat indices and ids."""
    row = int(np.prod(image_shape[1:], dtype=np.int64))
    lo, hi = np.searchsorted(table, [region[0][0] * row, region[0][1] * row])
    flat = table[lo:hi]
    keep = np.ones(len(flat), dtype=bool)
    if len(flat) and len(image_shape) > 1:
        coords = np.unravel_index(flat, image_shape)
        for axis in range(1, len(image_shape)):
            keep &= (coords[axis] >= region[axis][0]) & (coords[axis] < region[axis][1])
    ids = (np.flatnonzero(keep) + (lo + 1)).astype(np.uint64)
    return flat[keep], ids


def _watershed_task(block, table, *, region, halo, dtype, image_shape, **kwargs):
    # each task finds its own seeds in the shared table: the graph carries none
    seeds_flat, seeds_id = _seeds_in(table, region, image_shape)
    try:
        # labels come in the final dtype: no 8-byte block is ever made or moved
        return _ws.watershed_block(block, seeds_flat=seeds_flat, seeds_id=seeds_id, halo=halo,
                                   dtype=dtype, image_shape=image_shape, **kwargs)
    except _ws.HaloTooSmall as exc:
        raise HaloTooSmallError(str(exc)) from None


def watershed(mask, seeds: Seeds, *, sampling=None, halo="auto", min_distance: int = 10) -> da.Array:
    """Lazy seeded watershed of ``-distance`` inside ``mask``, flooded from ``seeds``.

    Equals ``skimage.segmentation.watershed(-distance, markers, mask=mask)``
    on the whole image, where ``markers`` numbers the seeds 1..N in raster
    order, up to flooding ties between markers at equal distance (scikit-image
    breaks those by heap layout; here the lower label wins). The result is
    identical for every chunking.

    Parameters
    ----------
    mask : (M, N[, P]) bool dask array
    seeds : Seeds
        From :func:`find_seeds` on the same mask. When it kept the distance
        levels of that very mask, they are used instead of a second distance
        transform.
    halo : "auto" or int
        ``"auto"``: ``2 * ceil(max distance) + min_distance + 2`` pixels per
        axis; each chunk is checked at this halo and, failing that, at twice
        it. A chunk that fails both raises :class:`HaloTooSmallError` naming
        the chunk and a halo that would do.

    Returns
    -------
    labels : dask array of uint32 (uint64 when the seeds do not fit)
    """
    mask = _graph.as_dask(mask)
    if tuple(mask.shape) != tuple(seeds.shape):
        raise InputError(
            f"`mask` (shape {mask.shape}) must have the shape of the seeds' image (shape {seeds.shape})"
        )
    sampling = check_sampling(sampling, mask.ndim)
    if halo == "auto":
        hs = watershed_halo(seeds.max_distance, min_distance, sampling, mask.ndim)
    else:
        hs = (check_int("halo", halo),) * mask.ndim
    outer = tuple(2 * h for h in hs)
    # the distance levels of pass 1, when kept for this very mask: no second transform
    exact = (seeds.held is not None and seeds.mask_name == mask.name
             and tuple(mask.chunks) == seeds.mask_chunks and sampling == seeds.sampling)
    if exact:
        source = seeds.held.source(mask.chunks)
        graph = _graph.Graph("watershed", seeds.held.collection)
    else:
        mask = _graph.optimized(mask)  # read and threshold in one task per chunk
        source = _graph.Source.of(mask)
        graph = _graph.Graph("watershed", mask)

    dtype = label_dtype(seeds.count)
    # every seed, in raster order, sent to the cluster once; each task finds
    # those of its padded region (a graph that carried them was 31 MB and took
    # 1.4 s to build and send for 32768^2 pixels)
    table = graph.shared("seeds", np.ascontiguousarray(seeds.flat, dtype=np.int64))
    bands = _graph.placement_bands()
    for idx in np.ndindex(*mask.numblocks):
        region = tuple((max(source.starts[a][i] - h, 0), min(source.stops[a][i] + h, size))
                       for a, (i, h, size) in enumerate(zip(idx, outer, mask.shape)))
        _graph.padded_task(
            graph, "labels", source, idx, outer, _watershed_task, whole=False, extra=(table,),
            region=region, halo=max(hs), image_shape=tuple(mask.shape), sampling=sampling,
            block_index=idx, dtype=dtype, exact_distances=exact, bands=bands,
        )
    return graph.array("labels", mask.chunks, dtype)


# --------------------------------------------------------------------------- distance


def _distance_task(mask, *, start, image_shape, core, sampling, block_index):
    cuts = [(start[a] > 0, start[a] + mask.shape[a] < image_shape[a]) for a in range(mask.ndim)]
    lv = _dist.levels(mask, sampling)
    ok = _dist.proven(lv, cuts, sampling)[core]
    if not ok.all():
        raise HaloTooSmallError(
            f"chunk {block_index}: distances reach beyond the halo; pass a larger halo"
        )
    return _dist.distance_from_levels(lv[core], sampling)


def distance_transform_edt(mask, *, sampling=None, halo: int = 64) -> da.Array:
    """Chunked ``scipy.ndimage.distance_transform_edt(mask, sampling=sampling)``.

    Lazy; each chunk is computed with ``halo`` pixels around it and checked:
    a value is exact where it does not exceed the distance to the nearest
    cut, and a chunk with any unproven value raises
    :class:`HaloTooSmallError` (the halo must exceed the largest distance).
    Bit-identical to scipy on isotropic grids.
    """
    mask = _graph.as_dask(mask)
    if mask.dtype != bool:
        mask = mask.astype(bool)
    sampling = check_sampling(sampling, mask.ndim)
    halo = check_int("halo", halo)
    graph = _graph.Graph("distance", mask)
    source = _graph.Source.of(mask)
    bands = _graph.placement_bands()
    for idx in np.ndindex(*mask.numblocks):
        _graph.padded_task(graph, "distance", source, idx, (halo,) * mask.ndim, _distance_task,
                           image_shape=mask.shape, sampling=sampling, block_index=idx, bands=bands)
    return graph.array("distance", mask.chunks, np.float64)


# --------------------------------------------------------------------------- pipeline


def resolve_threshold(image: da.Array, threshold) -> float:
    """A threshold value from a method name, a number, or a callable."""
    if isinstance(threshold, str):
        if threshold not in METHODS:
            raise InputError(
                f"unknown `threshold` method {threshold!r}; choose one of {', '.join(METHODS)} "
                "or give a number"
            )
        if threshold == "multiotsu":
            raise InputError("multiotsu gives several thresholds; use it for class maps, not masks")
        return _global_threshold(image, threshold)
    if callable(threshold):
        return threshold(image)
    if isinstance(threshold, (int, float, np.number)) and not isinstance(threshold, bool):
        if not math.isfinite(float(threshold)):
            raise InputError(f"`threshold` must be finite, got {threshold!r}")
        return threshold
    raise InputError(f"`threshold` must be a method name, a number or a callable, got {threshold!r}")


def _checked_image(image) -> da.Array:
    x = _graph.as_dask(image)
    check_image_array(x.shape, x.dtype)
    if x.ndim not in (2, 3):
        raise InputError(f"image is {x.ndim}-D; chunkseg segments 2D and 3D images")
    if x.dtype.kind == "b":
        raise InputError("image is boolean, so it is already a mask; give an intensity image")
    return x


def _filtered_image(image, smooth, background, *, check: bool = True) -> da.Array:
    """The checked image (NaN/inf refused with count and place), pre-filtered. ``check``
    False: the caller checks the pixels it uses (the tissue's)."""
    x = _checked_image(image)
    if x.dtype.kind == "f" and check:
        image_range(x)  # refuses NaN/inf with their count and location
    return prefilter(x, smooth=smooth, background=background)


POLARITIES = ("bright", "dark")


def check_polarity(polarity) -> str:
    if polarity not in POLARITIES:
        raise InputError(f"`polarity` must be bright (objects brighter than the background) or "
                         f"dark (darker: brightfield), got {polarity!r}")
    return polarity


def foreground(image, threshold="otsu", *, smooth=None, background=None, polarity="bright",
               tissue=None):
    """``(mask, t)``: the lazy mask ``image > t`` and the threshold used.

    ``polarity="dark"``: objects darker than the background, the mask
    ``image <= t`` (the complement of the bright mask, with the same ``t``:
    scikit-image's threshold of the image); likewise for local thresholds.
    ``tissue``: a boolean array of the image's shape; the threshold is taken
    over its pixels only and the mask is false outside it.

    ``smooth`` (``"gaussian:SIGMA"``, ``"median:SIZE"`` or a sigma) and
    ``background`` (``"gaussian:SIGMA"``: the image minus its blur) filter
    the image first, chunked with their exact halos. ``threshold`` is a
    method name, a number, a callable, or ``"local:BLOCK[:OFFSET[:METHOD]]"``
    (then ``t`` is that spec and the mask is ``image > threshold_local(...)``).
    """
    return _foreground(image, threshold, smooth, background, pending=False,
                       polarity=check_polarity(polarity), tissue=tissue)


def _foreground(image, threshold, smooth, background, *, pending: bool, polarity="bright",
                tissue=None, keep_bytes: float | None = None):
    """:func:`foreground`; with ``pending``, a histogram method's threshold may come
    back still being computed: a persisted 0-d dask array (see
    :func:`chunkseg.threshold.pending_threshold`; :func:`threshold_value` reads it).
    ``keep_bytes``: keep the prepared image in memory (persisted: read, filtered or
    deconvolved once for a global threshold's passes and the seeds) when it and these bytes
    (what the later passes keep) fit :func:`distances_budget`. With a tissue mask the kept
    image is the restricted one (:func:`chunkseg.tissue.restrict`): its glass chunks are
    constants, never read."""
    spec = parse_threshold(threshold)
    local = isinstance(spec, tuple)
    x = _filtered_image(image, smooth, background, check=tissue is None or local)
    if keep_bytes is not None and isinstance(spec, str) \
            and keeps_image(x, keep_bytes):  # a threshold of the image's values: read again
        (x,) = dask.persist(x)
    tissue = _tissue_of(x, tissue)
    if local:
        _, block, offset, method = spec
        mask = _side(x, threshold_local(x, block, method, offset=offset), polarity)
        return _within(mask, tissue), spec
    counted = x if tissue is None else _graph.selected(x, tissue)
    if tissue is not None and counted.dtype.kind == "f":
        image_range(counted)  # the NaN check of the tissue's pixels, and their range (kept)
    t = pending_threshold(counted, spec) if pending and isinstance(spec, str) else None
    if t is not None:
        (t,) = dask.persist(t)  # on a cluster: returns at once, computed there
    else:
        t = resolve_threshold(counted, spec)
    return _within(_side(x, t, polarity), tissue), t


def series_threshold(images, threshold="otsu", *, smooth=None, background=None):
    """One global threshold over all of ``images`` (the time points of a series, each
    filtered as :func:`foreground` filters it): scikit-image's threshold of their values
    together, computed now."""
    spec = parse_threshold(threshold)
    if isinstance(spec, tuple) or spec == "multiotsu":
        raise InputError("`threshold_scope` series takes one global threshold (a method such "
                         "as otsu, or a number), not a local threshold or class map")
    xs = [_filtered_image(im, smooth, background) for im in images]
    return threshold_value(resolve_threshold(da.stack(xs), spec))


def _side(x, t, polarity: str):
    """The objects' side of the threshold: ``x > t``, or ``x <= t`` for dark objects."""
    return x <= t if polarity == "dark" else x > t


def _tissue_of(x: da.Array, tissue):
    if tissue is None:
        return None
    tissue = _graph.as_dask(tissue)
    if tissue.shape != x.shape:
        raise InputError(f"`tissue` (shape {tissue.shape}) must have the shape of the image "
                         f"({x.shape})")
    return tissue.astype(bool).rechunk(x.chunks)


def _within(mask: da.Array, tissue):
    return mask if tissue is None else mask & tissue


def threshold_value(t):
    """The number of a threshold from :func:`_foreground` (waits for a pending one)."""
    return t.compute()[()] if isinstance(t, da.Array) else t


def classify(image, *, classes: int = 3, smooth=None, background=None, nbins: int = 256,
             polarity: str = "bright", tissue=None):
    """``(class_map, thresholds)``: ``numpy.digitize(image, threshold_multiotsu(image, classes))``.

    The class map is lazy, uint8, 0..classes-1, bit-identical to the
    whole-image computation. ``polarity="dark"``: the classes count from the
    bright end (``classes - 1 - digitize``: 0 is the brightest, the
    background of a brightfield image). ``tissue``: thresholds over the
    tissue pixels, class 0 outside it.
    """
    classes = check_int("classes", classes, minimum=2)
    if classes > 256:
        raise InputError(f"`classes` must be at most 256 for a uint8 class map, got {classes}")
    check_polarity(polarity)
    x = _filtered_image(image, smooth, background)
    tissue = _tissue_of(x, tissue)
    counted = x if tissue is None else _graph.selected(x, tissue)
    thresholds = threshold_multiotsu(counted, classes=int(classes), nbins=nbins)
    args = () if tissue is None else (tissue,)
    classes_map = da.map_blocks(_digitize, x, *args, bins=np.asarray(thresholds),
                                top=int(classes) - 1 if polarity == "dark" else None,
                                dtype=np.uint8, meta=np.empty((0,) * x.ndim, dtype=np.uint8))
    return classes_map, thresholds


def _digitize(block, tissue=None, *, bins, top=None):
    out = np.digitize(block, bins).astype(np.uint8)
    if top is not None:
        out = np.uint8(top) - out
    if tissue is not None:
        out[~tissue] = 0
    return out


def fractions(labels: da.Array, nclasses: int) -> da.Array:
    """Lazy pixel counts of values 0..nclasses-1 (a tree reduction of bincounts)."""
    return _graph.summed_partials(labels, bincount, nclasses, np.int64,
                                  kwargs={"offset": 0, "length": nclasses})


METHODS_SEGMENT = ("watershed", "label", "threshold")


def segment(image, *, method: str = "watershed", threshold="otsu", min_distance: int = 10,
            footprint: int = 3, sampling=None, halo="auto", smooth=None, background=None,
            connectivity: int = 1, min_size: int = 0, classes: int | None = None,
            polarity: str = "bright", stain: str | None = None, stain_vectors=None,
            tissue=None) -> da.Array:
    """Segment nuclei chunk by chunk; labels equal the whole-image pipeline's.

    The pipeline is ``mask = image > t``; ``distance =
    scipy.ndimage.distance_transform_edt(mask, sampling)``; seeds from
    ``peak_local_max(distance, min_distance, footprint=np.ones((footprint,) *
    ndim), exclude_border=False)`` numbered 1..N in raster order;
    ``skimage.segmentation.watershed(-distance, seeds, mask=mask)``.

    Parameters
    ----------
    image : (M, N[, P]) dask or numpy array
    method : {"watershed", "label", "threshold"}
        ``"label"``: connected components of the mask instead
        (``scipy.ndimage.label`` with ``connectivity``), see :func:`chunkseg.label`.
        ``"threshold"``: the semantic answer, the mask as uint8 0/1; with
        ``threshold="multiotsu"`` and ``classes`` the class map 0..classes-1.
    threshold : str, number or callable
        A method of :data:`chunkseg.METHODS` (computed globally), a value, or
        a function of the (dask) image returning a value.
    min_distance, footprint : int
    sampling : sequence of float, optional
        Voxel spacing (anisotropic stacks).
    halo : "auto" or int
    smooth : float, "gaussian:SIGMA" or "median:SIZE", optional
        Filter applied before thresholding (and feeding the distance
        transform through the mask).
    background : "gaussian:SIGMA", optional
        Subtract the image's Gaussian blur first (uneven illumination).
    classes : int, optional
        Classes for ``method="threshold", threshold="multiotsu"``.
    min_size : int
        Remove objects smaller than this many pixels (whole-object size),
        keeping ids 1..N.
    polarity : {"bright", "dark"}
        ``"dark"``: objects darker than the background (brightfield grey,
        phase): the mask is ``image <= t``, see :func:`foreground`.
    stain : {"hematoxylin", "eosin", "dab"}, optional
        ``image`` is RGB (channels last): segment this stain's optical
        density, ``skimage.color.rgb2hed(image)[..., k]`` bit for bit (see
        :func:`chunkseg.stain.separate`); ``stain_vectors`` replaces the
        Ruifrok-Johnston vectors (see :func:`chunkseg.stain.stain_matrix`).
    tissue : boolean array, optional
        Where to look (see :mod:`chunkseg.tissue`): the image outside it is
        set to the background value, the threshold is taken over its pixels,
        and no object lies outside it.

    Returns
    -------
    labels : lazy dask array, uint32 (uint64 when N >= 2**32)
        Seeds are found (and the threshold computed) when this is called;
        the watershed runs when the result is computed.
    """
    check_method(method)
    min_distance = check_int("min_distance", min_distance)
    footprint = check_int("footprint", footprint)
    min_size = check_int("min_size", min_size, minimum=0)
    check_classes(method, threshold, classes)
    check_polarity(polarity)
    if stain is not None:
        from .stain import separate, stain_matrix

        image = separate(image, stain, conv=stain_matrix(stain_vectors))
    if tissue is not None:
        from .tissue import Tissue, restrict

        image, tissue, _ = restrict(_graph.as_dask(image), Tissue(_graph.as_dask(tissue), {}),
                                    polarity)
    return build(image, method=method, threshold=threshold, min_distance=min_distance,
                 footprint=footprint, sampling=sampling, halo=halo, smooth=smooth,
                 background=background, connectivity=connectivity, min_size=min_size,
                 classes=classes, polarity=polarity, tissue=tissue).labels


def check_method(method) -> str:
    if method not in METHODS_SEGMENT:
        raise InputError(f"unknown `method` {method!r}; choose one of {', '.join(METHODS_SEGMENT)}")
    return method


@dataclasses.dataclass
class Segmentation:
    """What :func:`build` made: the lazy labels and what is known of them before they run.

    ``threshold`` is the value used (a number; the class thresholds of a
    class map; a local spec tuple). ``count`` is the number of objects where
    it is known now (the seeds'), ``count_later`` a lazy count computed with
    the labels (connected components), ``class_counts`` the lazy pixel count
    per class of a mask or class map.
    """

    labels: da.Array
    threshold: object
    seeds: Seeds | None = None
    count: int | None = None
    count_later: object = None
    class_counts: da.Array | None = None


def build(image, *, method: str = "watershed", threshold="otsu", min_distance: int = 10,
          footprint: int = 3, sampling=None, halo="auto", smooth=None, background=None,
          connectivity: int = 1, min_size: int = 0, classes: int | None = None,
          known_threshold=None, known_seeds: Seeds | None = None,
          count: bool = False, timings: dict | None = None, polarity: str = "bright",
          tissue=None, keep_distances="auto", keep_image: bool = True) -> Segmentation:
    """The one dispatch of the segmentation methods, for :func:`segment` and a run.

    ``known_threshold`` and ``known_seeds``: the values a resumed run had
    settled (used instead of computing them again). ``count``: also give
    the object count (``count_later``) and, for masks and class maps, the
    class counts, computed with the labels. Parameters are checked by the
    caller. ``timings``: where to record the seconds of the threshold and seeds steps.
    ``keep_distances``: as :func:`find_seeds`'s; unless it is False, or ``keep_image``
    is, the prepared image stays in memory from the threshold to the seeds where it fits
    (:func:`keeps_image`).
    """
    timings = {} if timings is None else timings
    t = time.perf_counter()
    class_map = method == "threshold" and threshold == "multiotsu"
    nclasses = (classes or 3) if class_map else 2
    if class_map:
        labels, tval = classify(image, classes=nclasses, smooth=smooth, background=background,
                                polarity=polarity, tissue=tissue)
    elif known_threshold is not None:
        mask, tval = foreground(image, known_threshold, smooth=smooth, background=background,
                                polarity=polarity, tissue=tissue)
    else:
        # pending: on a cluster the seed pass is queued behind the histogram, no round trip
        # the image is kept for the threshold's passes and the seeds' (with their distances)
        later = None
        if keep_image and keep_distances is not False:
            later = distances_bytes(image.shape, sampling) if method == "watershed" else 0.0
        mask, tval = _foreground(image, threshold, smooth, background,
                                 pending=method == "watershed", polarity=polarity, tissue=tissue,
                                 keep_bytes=later)
    result = Segmentation(labels=None, threshold=tval)
    # a pending threshold is computed on the cluster while the seed pass waits for it:
    # then its time counts in "seeds"
    timings["threshold"] = time.perf_counter() - t
    if method == "watershed":
        t = time.perf_counter()
        seeds = known_seeds if known_seeds is not None else find_seeds(
            mask, min_distance=min_distance, footprint=footprint, sampling=sampling, halo=halo,
            keep_distances=keep_distances)
        timings["seeds"] = time.perf_counter() - t
        if seeds.count == 0:
            warnings.warn("the threshold leaves no foreground: the label image is empty",
                          stacklevel=3)
        result.seeds, result.count = seeds, seeds.count
        labels = watershed(mask, seeds, sampling=sampling, halo=halo, min_distance=min_distance)
    elif method == "label":
        labels, later = label_with_count(mask, connectivity=connectivity)
        if count:
            result.count_later = later
    elif not class_map:
        labels = mask.astype(np.uint8)
    if method == "threshold":
        if count:
            result.class_counts = fractions(labels, nclasses)
    elif min_size:
        known = result.count
        if known is None and result.count_later is not None:  # components: a cheap pass first
            known = int(result.count_later.compute())
        labels = remove_small(labels, min_size, known)
        result.count, result.count_later = None, None  # known once written
    result.labels = labels
    result.threshold = threshold_value(tval)
    return result


def remove_small(labels: da.Array, min_size: int, max_label: int | None) -> da.Array:
    """``remove_small_objects`` when ``min_size`` asks for it, else the labels as they are."""
    if not min_size:
        return labels
    return remove_small_objects(labels, min_size, max_label=max_label)
