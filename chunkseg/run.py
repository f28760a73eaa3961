"""One end-to-end run, in steps: open (and check) -> build -> write -> measure -> report.

:func:`run_segment` takes a :class:`~chunkseg.options.SegmentOptions` (or its
fields as keywords); :func:`plan_segment` says what that run would do,
computing nothing. Every check happens in the open step, before a cluster
starts or a pixel is read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from . import __version__
from . import pyramid
from . import table as _measure
from ._layout import level_steps
from ._monitor import PeakMemory
from ._monitor import progress as _progress
from ._validate import InputError, check_sampling
from .cluster import placement_on
from .cluster import scheduler as _scheduler
from .filters import describe_threshold
from .io import readers, resume, store, writers
from .options import CompareOptions, MeasureOptions, SegmentOptions
from .segment import (Seeds, Segmentation, build, distances_bytes, keeps_distances,
                      keeps_image, series_threshold, watershed_halo)

log = logging.getLogger(__name__)

# run_cells comes from its own module on first use (see __getattr__ below)
__all__ = ["Plan", "SegmentReport", "plan_segment", "run_cells", "run_compare",  # noqa: F822
           "run_measure", "run_segment"]


@dataclasses.dataclass
class SegmentReport:
    """What a run did: the numbers a user checks."""

    output: str
    method: str
    objects: int | None
    threshold: object
    shape: tuple
    chunks: tuple
    dtype: str
    seed_halo: tuple | None
    watershed_halo: tuple | str
    max_distance: float | None
    undecided_seeds: int
    timings: dict
    #: pass 1's distances kept in the workers for pass 2 (else recomputed there)
    kept_distances: bool = False
    fractions: list | None = None
    warnings: list = dataclasses.field(default_factory=list)
    tasks: int | None = None
    #: with --resume: chunks found written, chunks written now, all chunks
    resumed: dict | None = None
    peak_memory: int | None = None
    params: dict | None = None
    plan: "Plan | None" = None
    #: how the stain vectors and the tissue were found (``stain``, ``tissue``)
    found: dict | None = None
    #: the GeoJSON written (path and feature count)
    geojson: dict | None = None
    #: a time series: per time point its index, objects, threshold (and class fractions)
    series: list | None = None
    #: the object table written: path, rows, parts (1: one file; more: a Parquet dataset)
    table: dict | None = None

    def to_dict(self) -> dict:
        """The JSON run report: parameters, versions, results, timings, memory, chunks."""
        out = {
            "chunkseg": __version__,
            "versions": _versions(),
            "output": self.output,
            "method": self.method,
            "objects": self.objects,
            "threshold": self.threshold,
            "fractions": self.fractions,
            "shape": list(self.shape),
            "chunks": list(self.chunks),
            "chunk_count": int(np.prod([-(-n // c) for n, c in zip(self.shape, self.chunks)])),
            "dtype": self.dtype,
            "halo": {"seeds": list(self.seed_halo) if self.seed_halo else None,
                     "watershed": self.watershed_halo,
                     "max_distance": self.max_distance,
                     "undecided_seeds": self.undecided_seeds,
                     "distances_kept_between_passes": self.kept_distances},
            "warnings": list(self.warnings),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "total_s": round(sum(self.timings.values()), 4),
            "peak_memory_bytes": self.peak_memory,
            "tasks": self.tasks,
            "resumed": self.resumed,
            "params": self.params,
            "stain": (self.found or {}).get("stain"),
            "tissue": (self.found or {}).get("tissue"),
            "geojson": self.geojson,
            "time_points": self.series,
            "table": self.table,
        }
        if self.plan is not None:
            out["plan"] = self.plan.to_dict()
        return out

    def _threshold_text(self) -> str:
        t = self.threshold
        if isinstance(t, str):
            return t
        values = np.atleast_1d(np.asarray(t, dtype=float))
        return " ".join(f"{v:.6g}" for v in values)

    def summary(self) -> str:
        total = sum(self.timings.values())
        size = "x".join(map(str, self.shape))
        tail = f"{size} px in {total:.1f} s -> {self.output}"
        if self.resumed:
            r = self.resumed
            tail += (f" (resumed: {r['already_written']} of {r['chunks']} chunks were written, "
                     f"{r['written']} written now)")
        tissue = (self.found or {}).get("tissue")
        if tissue:
            tail += (f"; no tissue in {tissue['chunks_skipped']} of {tissue['chunks']} chunks "
                     f"({100 * tissue['chunks_skipped'] / tissue['chunks']:.0f}%, not read)")
        if self.geojson:
            tail += f"; {self.geojson['features']} polygons -> {self.geojson['path']}"
        if self.series is not None:
            return self._series_summary(tail)
        if self.method == "threshold":
            if len(self.fractions) == 2:
                what = f"foreground {100 * self.fractions[1]:.2f}%"
            else:
                what = "classes " + ", ".join(f"{k}: {100 * f:.2f}%" for k, f in enumerate(self.fractions))
            return f"{what}, threshold {self._threshold_text()}, {tail}"
        return f"{self.objects} objects, threshold {self._threshold_text()}, {tail}"

    def _series_summary(self, tail: str) -> str:
        n = len(self.series)
        values = [np.atleast_1d(np.asarray(p["threshold"], dtype=float))
                  for p in self.series if not isinstance(p["threshold"], str)]
        if not values:
            what = f"threshold {self.series[0]['threshold']}"
        elif all(np.array_equal(v, values[0]) for v in values):
            what = "threshold " + " ".join(f"{v:.6g}" for v in values[0]) + " (all)"
        else:
            first = [v[0] for v in values]
            what = f"thresholds {min(first):.6g}..{max(first):.6g}"
        if self.method == "threshold":
            fg = [100 * (1 - p["fractions"][0]) for p in self.series]
            return f"{n} time points: foreground {min(fg):.2f}..{max(fg):.2f}%, {what}, {tail}"
        counts = [p["objects"] for p in self.series]
        return (f"{n} time points: {self.objects} objects ({min(counts)}..{max(counts)} per "
                f"time point), {what}, {tail}")


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("dask", "distributed", "zarr", "numpy", "scipy", "scikit-image", "numba", "edt",
                 "tifffile"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover
            out[name] = None
    return out


#: Tasks per chunk of each pass (counted on the graphs chunkseg builds; see test_report).
_TASKS_PER_CHUNK = {"watershed": 4, "label": 13, "threshold": 6}
#: Face tasks per chunk that sends its faces to another worker (one per pass).
_FACE_TASKS = {"watershed": 2}
#: Tasks per chunk where chunks are not kept by band (one summary of kept seeds each).
_UNPLACED_TASKS = {"watershed": 1}
#: Working bytes per pixel of the padded block in the heaviest kernel of each method.
_BYTES_PER_PIXEL = {"watershed": 30, "label": 20, "threshold": 10}
#: Resident memory of an idle worker process (Python, numpy, dask, numba).
_WORKER_BASE = 250 * 2**20


@dataclasses.dataclass
class Plan:
    """What a run will do, before it does it (``chunkseg segment --dry-run``)."""

    shape: tuple
    dtype: str
    chunks: tuple
    chunk_count: int
    method: str
    halo: tuple
    halo_note: str
    tasks: int
    workers: int
    threads_per_worker: int
    memory_per_worker: int
    output: str
    kept_distances: bool = False

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}

    def summary(self) -> str:
        gb = self.memory_per_worker / 2**30
        return "\n".join([
            f"input:    {'x'.join(map(str, self.shape))} {self.dtype}",
            f"chunks:   {'x'.join(map(str, self.chunks))}  ({self.chunk_count} chunks)",
            f"method:   {self.method}",
            f"halo:     {'x'.join(map(str, self.halo))}  ({self.halo_note})",
            f"tasks:    about {self.tasks}",
            f"workers:  {self.workers} x {self.threads_per_worker} thread(s), about {gb:.2f} GB "
            "each" + (" (with the distances kept between the passes)" if self.kept_distances else ""),
            f"output:   {self.output} (nothing computed or written: dry run)",
        ])


def make_plan(image, *, method, halo, min_distance, footprint, sampling, scheduler, workers,
              threads_per_worker, output, series: int = 1, memory_limit="auto") -> Plan:
    """Shapes, chunks, halo, task count and memory per worker of a run, computing nothing.
    ``series``: ``image`` is one of that many time points, each segmented alike.
    ``memory_limit``: each local worker's; the distances are kept when they fit a quarter
    of the workers' limits together (:func:`chunkseg.segment.distances_budget`)."""
    import os

    chunks = tuple(max(c) for c in image.chunks)
    nchunks = int(np.prod(image.numblocks)) * series
    if method == "watershed":
        if halo == "auto":
            # the seed pass measures the largest distance; until then assume objects of
            # about twice the seed spacing (a retry doubles the halo when they are larger)
            h = watershed_halo(2.0 * min_distance, min_distance, sampling, image.ndim)
            note = "auto: measured in the seed pass; estimated from `min_distance`"
        else:
            h = (int(halo),) * image.ndim
            note = "given"
    elif method == "label":
        h, note = (1,) * image.ndim, "one plane of each neighbour"
    else:
        h, note = (0,) * image.ndim, "none needed"
    input_tasks = len(image.__dask_graph__()) * series
    # neighbours in one memory are used whole; across the seams of the workers'
    # bands (chunkseg._graph.band) they send faces: about a row of chunks each
    # side; without placement (chunkseg.placement: false) every chunk sends them
    if scheduler == "threads":
        bands = 1
    elif scheduler == "processes" and placement_on():
        bands = workers or os.cpu_count() or 1
    else:
        bands = None
    row = nchunks // (image.numblocks[0] * series)
    sending = nchunks if bands is None else min(nchunks, 2 * (bands - 1) * row)
    tasks = input_tasks + _TASKS_PER_CHUNK[method] * nchunks + _FACE_TASKS.get(method, 0) * sending
    if bands is None:
        tasks += _UNPLACED_TASKS.get(method, 0) * nchunks
    padded = int(np.prod([c + 2 * hh for c, hh in zip(chunks, h)]))
    nworkers = workers or (os.cpu_count() or 1)
    per_thread = padded * (_BYTES_PER_PIXEL[method] + image.dtype.itemsize)
    if scheduler == "threads":
        threads, nproc = nworkers, 1
    else:
        threads, nproc = threads_per_worker, nworkers
    # pass 1's distances stay in the workers for pass 2 when they fit (find_seeds)
    whole = ((series,) if series > 1 else ()) + tuple(image.shape)
    budget = None
    if scheduler == "processes" and memory_limit not in ("auto", None):
        from distributed.worker_memory import parse_memory_limit  # as the workers read it

        limit = parse_memory_limit(memory_limit, threads, logger=log)
        budget = None if limit is None else limit * nproc // 4
    kept = method == "watershed" and keeps_distances(whole, sampling, budget)
    memory = _WORKER_BASE + threads * per_thread + \
        (distances_bytes(whole, sampling) / nproc if kept else 0)
    if method == "watershed" and series == 1 and kept and keeps_image(
            image, distances_bytes(whole, sampling), budget):
        # the image kept from the threshold to the seeds (segment.keeps_image): its
        # reads run once, in a computation of their own
        tasks += input_tasks
        memory += image.nbytes / nproc
    return Plan(shape=whole, dtype=str(image.dtype), chunks=chunks,
                chunk_count=nchunks, method=method, halo=tuple(int(v) for v in h), halo_note=note,
                tasks=int(tasks), workers=nproc, threads_per_worker=threads,
                memory_per_worker=int(memory), output=str(output), kept_distances=kept)



def _options(cls, options, kwargs):
    if options is None:
        return cls(**kwargs)
    if not isinstance(options, cls):
        raise TypeError(f"`options` must be a {cls.__name__}, got {type(options).__name__}")
    return options.replace(**kwargs) if kwargs else options


@dataclasses.dataclass
class _Job:
    """A checked run: the opened image (rechunked), where it goes, and what it records."""

    input: object
    output: Path
    options: SegmentOptions
    image: da.Array
    info: readers.ImageInfo
    axes: str
    sampling: tuple | None
    ngff: str
    report_path: Path | None
    params: dict
    #: (shape, scale) of every level of the OME-Zarr image the labels go into
    image_levels: list | None = None
    #: the tissue mask at full resolution (``tissue``), or None
    tissue: da.Array | None = None
    #: how the stain and the tissue were found, for the report (``stain``, ``tissue``)
    found: dict = dataclasses.field(default_factory=dict)
    #: a time series (``image`` has the ``t`` axis first): the input's index of each time point
    times: list | None = None
    #: the channels the table measures, last (``measure_channels``), and their names
    measured: da.Array | None = None
    channel_names: list | None = None
    #: what the run says once, as a warning (the report lists it)
    notes: str | None = None

    @property
    def chunks(self) -> tuple:
        return tuple(max(c) for c in self.image.chunks)

    @property
    def spatial_axes(self) -> str:
        return self.axes[1:] if self.times is not None else self.axes

    @property
    def physical(self):
        """The spacing of the table's areas and centroids: ``spacing``, else the image's
        own scale where its metadata gives units (a slide's microns per pixel)."""
        if self.sampling is not None or not self.info.units:
            return self.sampling
        return spatial_scale(self.info, self.spatial_axes)

    def images(self) -> list:
        """The image of each time point (one: the image)."""
        return [self.image] if self.times is None else [self.image[i] for i in range(len(self.times))]

    def intensities(self, i: int) -> da.Array:
        """What the table measures at time point ``i``: the segmented image, or the
        ``measure_channels`` last."""
        x = self.measured if self.measured is not None else self.image
        return x if self.times is None else x[i]


def spatial_scale(info, axes: str):
    """The scale of the kept (spatial) ``axes`` from the image's metadata, or None."""
    if not info.scale:
        return None
    return [float(info.scale[info.axes.index(a)]) for a in axes]


def _sampling(spacing, info, axes: str, ndim: int, input) -> tuple:
    """``(sampling, note)``: the spacing the segmentation uses (None: isotropic pixels)
    and what to say about it. ``spacing="auto"`` takes the image's own scale (OME-Zarr,
    OME-TIFF, ImageJ), None where its pixels are square (the same labels, the faster
    kernels); without ``spacing``, metadata that says the pixels are not square gets a
    note that it was not used."""
    scale = spatial_scale(info, axes)
    anisotropic = scale is not None and len(set(scale)) > 1
    shown = ",".join(f"{v:g}" for v in scale) if scale is not None else ""
    unit = next(iter((info.units or {}).values()), None)
    shown += f" {unit}" if unit else ""
    if spacing == "auto":
        if scale is None:
            return None, (f"`spacing` auto: {input} gives no physical pixel sizes; "
                          "segmented with a spacing of 1 on every axis")
        return (tuple(scale) if anisotropic else None), None
    if spacing is None and anisotropic:
        return None, (f"{input} gives a spacing of {shown} ({','.join(axes).upper()}), not "
                      "used for the segmentation: pass `spacing` auto to segment in physical "
                      "distances")
    return check_sampling(spacing, ndim, name="spacing"), None


def _open(input, output, opts: SegmentOptions) -> _Job:
    """Step 1: open the input and check everything about the run; nothing is written."""
    t0 = time.perf_counter()
    rgb = opts.stain is not None
    opened = readers.read_image(input, level=opts.level, channel=opts.channel,
                                missing_chunks=opts.missing_chunks, rgb=rgb, time=opts.time)
    image, info = opened.array, opened.info
    series = opened.axes.startswith("t")
    inputs = readers.series_paths(input) or [input]
    times = readers.time_points(opts.time, info.shape[info.axes.index("t")], input) \
        if series else None
    found = {}
    if rgb:
        image, found["stain"] = _stained(input, opened, opts)
        opened = dataclasses.replace(opened, axes=opened.axes.replace("c", "").replace("s", ""))
    image = _processing_chunks(image, opts.chunks, series, opts.method)
    tissue_mask = None
    if opts.tissue != "none":
        image, tissue_mask, found["tissue"] = _in_tissue(input, opened, image, opts)
    sampling, spacing_note = _sampling(opts.spacing, info, opened.axes[1:] if series
                                       else opened.axes, image.ndim - series, input)
    measured, names = None, None
    if opts.measure_channels is not None:
        measured, names = readers.channels_last(input, channels=opts.measure_channels,
                                                level=opts.level, time=opts.time,
                                                missing_chunks=opts.missing_chunks)
    ngff, image_levels = "0.5", None
    if opts.into_input is not None:
        if output is not None:
            raise InputError("give either `output` or `into_input`, not both")
        if series and len(times) != info.shape[info.axes.index("t")]:
            raise InputError("`into_input` labels every time point of the image: give `time` "
                             "all (or write the time points picked to an `output`)")
        output, ngff = writers.labels_target(input, opts.into_input, image_format=info.format,
                                             level=opts.level, overwrite=opts.overwrite,
                                             resume=opts.resume)
        image_levels = _image_levels(info, opened.axes)
        level_steps([shape for shape, _ in image_levels])
    elif output is None:
        raise InputError("give an `output` path (or `into_input` for an OME-Zarr input)")
    else:
        writers.check_output_path(output, inputs)
    output = store.location(output)
    writers.refuse_existing(output, "output", overwrite=opts.overwrite, resume=opts.resume)
    if opts.table is not None:
        _check_table_output(opts.table, opts.overwrite, [*inputs, output])
    if opts.geojson is not None:
        writers.check_output_path(opts.geojson, [*inputs, output])
        writers.refuse_existing(opts.geojson, "geojson", overwrite=opts.overwrite)
    report_path = None if opts.report is False else store.location(opts.report or
                                                                  f"{output}.report.json")
    if report_path is not None:
        writers.refuse_existing(report_path, "report", overwrite=opts.overwrite or opts.resume)
    params = dict(opts.params(input=store.recorded(input), chunks=tuple(max(c) for c in image.chunks),
                              spacing=sampling), version=__version__)
    if opts.resume:  # refused before any cluster starts when the output cannot be resumed
        resume.check_resume(output, params, compare_fingerprint=False)
    log.debug("opened %s in %.3f s", input, time.perf_counter() - t0)
    if "stain" in found:
        params["stain_matrix"] = found["stain"]["matrix"]
    return _Job(input=input, output=output, options=opts, image=image, info=info,
                axes=opened.axes, sampling=sampling, ngff=ngff, report_path=report_path,
                params=params, image_levels=image_levels, tissue=tissue_mask, found=found,
                times=times, measured=measured, channel_names=names, notes=spacing_note)


def _low_resolution(input, opened, opts, rgb: bool):
    """``(level, step, array)``: the level estimates are made on (stain vectors, tissue):
    the largest at most :data:`chunkseg.tissue.DETECT_PIXELS` pixels, at or below
    ``level``; every ``step``-th pixel of the smallest where none is that small (which is
    then read whole)."""
    from . import tissue

    info = opened.info
    spatial = [tuple(n for n, a in zip(shape, info.axes) if a not in "cst")
               for shape in info.levels[opts.level:]]
    index = opts.level + tissue.pick_level(spatial)
    low = readers.read_image(input, level=index, channel=opts.channel, rgb=rgb,
                             approximate=True)
    x = da.moveaxis(low.array, _colour_axis(low.axes), -1) if rgb else low.array
    size = int(np.prod(x.shape[:x.ndim - rgb]))
    step = 1
    while size // step ** (x.ndim - rgb) > tissue.DETECT_PIXELS:
        step += 1
    if step > 1:
        x = x[(slice(None, None, step),) * (x.ndim - rgb)]
    return index, step, x.compute()


def _colour_axis(axes: str) -> int:
    return next(i for i, a in enumerate(axes) if a in "cs")


def _stained(input, opened, opts):
    """The stain's optical density of the RGB image, and the stain record of the report."""
    from . import stain

    how = {"stain": opts.stain}
    if isinstance(opts.stain_vectors, str) and opts.stain_vectors == "macenko":
        level, step, low = _low_resolution(input, opened, opts, rgb=True)
        conv, used = stain.estimate_vectors(low)
        how.update(used, level=level, step=step)
    else:
        conv = stain.stain_matrix(opts.stain_vectors)
        how["vectors"] = "ruifrok-johnston" if opts.stain_vectors is None else \
            np.linalg.inv(conv).round(6).tolist()
    how["matrix"] = np.asarray(conv).tolist()
    return stain.separate(opened.array, opts.stain, conv=conv,
                          channel_axis=_colour_axis(opened.axes)), how


def _in_tissue(input, opened, image, opts):
    """The image restricted to the tissue (chunks without tissue never read), the mask,
    and the tissue record of the report."""
    from . import tissue

    if opts.tissue == "auto":
        rgb = opts.stain is not None
        level, step, low = _low_resolution(input, opened, opts, rgb=rgb)
        mask, how = tissue.detect(low, rgb=rgb, polarity=opts.polarity)
        how.update(level=level, step=step)
        found = tissue.Tissue(mask, how)
    else:
        mask = readers.open_image(opts.tissue)
        if mask.shape != image.shape:
            raise InputError(f"the `tissue` mask {opts.tissue} has shape {mask.shape}, the "
                             f"image at level {opts.level} {image.shape}; give a mask of that "
                             "shape")
        found = tissue.Tissue(mask > 0, {"method": "mask", "path": str(opts.tissue)})
    restricted, full, skipped = tissue.restrict(image, found, opts.polarity)
    found.how.update(chunks_skipped=skipped, chunks=int(np.prod(image.numblocks)))
    return restricted, full, found.how


#: The largest block a 3D watershed run grows its processing blocks to by itself (voxels).
AUTO_BLOCK_VOXELS = 256**3
#: ... while the image keeps at least this many blocks (four per worker on two workers).
AUTO_BLOCKS = 8


def auto_blocks(shape, chunks) -> tuple:
    """Processing blocks of a 3D watershed where none are given: the storage chunks, each
    axis doubled (the smallest first) while the block stays within
    :data:`AUTO_BLOCK_VOXELS` and the image keeps :data:`AUTO_BLOCKS` blocks.

    In 3D the halo costs most: a 128^3 chunk with a 27-voxel halo computes 2.9x its
    voxels, a 256^3 block 1.8x; at 512^3 (dense stack, 2 worker processes) 256^3 blocks
    took 11.7-16.3 s against 17.7-19.6 s for the 128^3 storage chunks. The labels are the
    same for every chunking. The rule depends on the image alone, so a resumed run picks
    the same blocks whatever its workers."""
    block = [int(c) for c in chunks]
    while True:
        a = min(range(len(block)), key=lambda i: block[i])
        grown = block.copy()
        grown[a] *= 2
        count = int(np.prod([-(-n // c) for n, c in zip(shape, grown)]))
        if grown[a] > 2 * shape[a] or np.prod(grown, dtype=np.int64) > AUTO_BLOCK_VOXELS \
                or count < AUTO_BLOCKS:
            return tuple(min(b, n) for b, n in zip(block, shape))
        block = grown


def _processing_chunks(image: da.Array, chunks, series: bool = False,
                       method: str | None = None) -> da.Array:
    """``image`` in the processing ``chunks`` (one size for every axis, or one per axis);
    a ``series`` (``t`` first) in chunks of one time point. Without ``chunks``, a 3D
    watershed grows the storage chunks (:func:`auto_blocks`)."""
    ndim = image.ndim - series
    if chunks is None:
        if series:
            return image.rechunk({0: 1})
        if method == "watershed" and ndim == 3:
            blocks = auto_blocks(image.shape, [max(c) for c in image.chunks])
            return image.rechunk(blocks) if blocks != tuple(max(c) for c in image.chunks) \
                else image
        return image
    if len(chunks) == 1:
        chunks = chunks * ndim
    if len(chunks) != ndim:
        raise InputError(f"`chunks` must be {ndim} positive integers (or one), got "
                         f"{chunks}")
    return image.rechunk(((1,) if series else ()) + tuple(chunks))


def _plan(job: _Job) -> Plan:
    o = job.options
    series = job.times is not None
    return make_plan(job.image[0] if series else job.image, method=o.method, halo=o.halo,
                     min_distance=o.min_distance, footprint=o.footprint, sampling=job.sampling,
                     scheduler=o.scheduler, workers=o.workers,
                     threads_per_worker=o.threads_per_worker, output=job.output,
                     series=len(job.times) if series else 1, memory_limit=o.memory_limit)


def plan_segment(input, output=None, options: SegmentOptions | None = None, **kwargs) -> Plan:
    """What :func:`run_segment` would do (chunks, halo, tasks, memory), computing nothing."""
    opts = _options(SegmentOptions, options, kwargs)
    with store.storage_options(opts.storage_options):
        return _plan(_open(input, output, opts))


def run_segment(input, output=None, options: SegmentOptions | None = None,
                **kwargs) -> SegmentReport:
    """Segment ``input`` into a label store at ``output`` and report.

    ``options`` is a :class:`~chunkseg.options.SegmentOptions`; its fields
    may also be given as keywords (``min_distance=7``). Everything is checked
    before any pixel is read; the output is marked incomplete until its last
    chunk is written. The JSON run report goes to ``report`` (default
    ``OUTPUT.report.json``; False: none).
    """
    opts = _options(SegmentOptions, options, kwargs)
    with store.storage_options(opts.storage_options):  # every location of the run uses them
        return _run_segment(input, output, opts)


def _run_segment(input, output, opts: SegmentOptions) -> SegmentReport:
    t0 = time.perf_counter()
    job = _open(input, output, opts)
    plan = _plan(job)
    timings = {"open": time.perf_counter() - t0}
    with PeakMemory() as memory, warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        if job.notes:
            warnings.warn(job.notes, stacklevel=2)
        report, objects = _execute(job, timings)
    for w in warned:  # recorded for the report, then passed on to the caller
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    report.peak_memory = memory.peak
    report.plan = plan
    # what the run says; not the interpreter's notes on file handles collected meanwhile
    report.warnings = [str(w.message) for w in warned
                       if not issubclass(w.category, ResourceWarning)]
    if isinstance(objects, dict):  # a Parquet dataset, written by the workers
        report.table, objects = objects, None
    elif objects is not None and job.options.table is not None:
        writers.write_table(objects, job.options.table)
        report.table = {"path": str(job.options.table), "rows": len(objects), "parts": 1}
    if job.report_path is not None:
        writers.write_report(report.to_dict(), job.report_path)
    resume.finish_output(job.output, objects=report.objects, threshold=report.threshold,
                         fractions=report.fractions)
    return report


@dataclasses.dataclass
class _Written:
    """What the write step found: the level-0 array, chunks already there, counts (in
    all, and of each time point of a series)."""

    array: object
    done: set
    count: int | None
    fractions: list | None
    objects: object = None
    counts: list | None = None
    class_fractions: list | None = None


@dataclasses.dataclass
class _Series:
    """The time points of a series, each segmented on its own (:func:`_build_series`), and
    their labels stacked on the ``t`` axis."""

    parts: list
    labels: da.Array

    @property
    def threshold(self) -> list:
        return [p.threshold for p in self.parts]


def _parts(seg) -> list:
    return seg.parts if isinstance(seg, _Series) else [seg]


def _execute(job: _Job, timings: dict):
    """Steps 2-5 on a scheduler: build, write (and measure), report."""
    o = job.options
    with contextlib.ExitStack() as stack:
        if o.stain is not None or o.tissue != "none" or job.times is not None:
            # the stain's and tissue's tasks read their blocks (as a time point's selection
            # does); dask's low-level fusion merges the two in one computation of the run and
            # not in the next, and a cluster then warns of a changed task under the same key
            # (measured: no slower without the fusion)
            stack.enter_context(dask.config.set({"optimization.fuse.active": False}))
        client = stack.enter_context(_scheduler(o.scheduler, workers=o.workers,
                                                threads_per_worker=o.threads_per_worker,
                                                memory_limit=o.memory_limit,
                                                start_method=_start_method(job.input, job.output,
                                                                          job.options.table)))
        tasks = stack.enter_context(_progress(client, enabled=o.progress))
        # on the workers: only the two digests reach this process
        job.params["input_fingerprint"] = resume.fingerprint(job.image, job.input)
        state = resume.check_resume(job.output, job.params) if o.resume else None
        # an output being replaced is removed while the passes run (0.15 s for 32768^2)
        removed = None
        if state is None and o.overwrite and store.exists(job.output):
            removed = stack.enter_context(ThreadPoolExecutor(1)).submit(
                writers.prepare_output, job.output, overwrite=True)
        seg = _build(job, state, timings)
        t = time.perf_counter()
        written = _write(job, seg, state, removed)
        timings[f"{o.method}+write"] = time.perf_counter() - t
        if (o.table or o.geojson) is not None and written.objects is None:
            # resumed: measure what is complete
            t = time.perf_counter()
            written.objects = _measure_written(job, written.array)
            timings["measure"] = time.perf_counter() - t
        if written.done:
            t = time.perf_counter()
            pyramid.write_levels(writers.label_arrays(job.output))
            timings["pyramid"] = time.perf_counter() - t
        geojson = None
        if o.geojson is not None:
            t = time.perf_counter()
            geojson = _write_geojson(job, written)
            timings["geojson"] = time.perf_counter() - t
    report = _report(job, seg, written, state, timings, tasks.total)
    report.geojson = geojson
    return report, written.objects


def _measure_written(job: _Job, array):
    """The table of a resumed run, from the labels as written."""
    labels = da.from_zarr(array)
    folder = _dataset_folder(job, None)
    tasks = _measure_tasks(job, [labels if job.times is None else labels[i]
                                 for i in range(len(job.times or [None]))], folder)
    return _objects(job, list(dask.compute(*tasks)), folder)


#: Rows of an object table above which a ``.parquet`` table is written as a dataset
#: directory of parts by the workers (``chunkseg.table-rows`` in dask's config).
TABLE_ROWS = 10_000_000


def _dataset_folder(job: _Job, parts):
    """Where the parts of a Parquet dataset table go (None: the table is one file): a
    ``.parquet/`` path, or a ``.parquet`` one whose rows, known before the write (the seeds'
    count), exceed ``chunkseg.table-rows``."""
    table = job.options.table
    if table is None:
        return None
    kind = writers.check_table_path(table)
    rows = None
    if parts is not None and all(p.count is not None for p in parts):
        rows = sum(p.count for p in parts)
    big = kind == ".parquet" and rows is not None and \
        rows > dask.config.get("chunkseg.table-rows", TABLE_ROWS)
    return writers.table_parts(table) if kind == "dataset" or big else None


def _measure_tasks(job: _Job, labels: list, folder) -> list:
    """Per time point, the lazy bucket partials of its table (measured from ``labels``, the
    blocks being written), or with a dataset ``folder`` the writes of its parts."""
    out = []
    for i, lab in enumerate(labels):
        g, roots = _measure.measure_graph(lab, job.intensities(i))
        if folder is not None:
            t = None if job.times is None else job.times[i]
            roots = [g.task("part", (k,), _table_part, r, job=_TableSpec.of(job), t=t,
                            folder=str(folder), name=f"part-{i:05d}-{k:03d}.parquet")
                     for k, r in enumerate(roots)]
        out.append([g.delayed(k) for k in roots])
    return out


@dataclasses.dataclass(frozen=True)
class _TableSpec:
    """What a table part needs of its job (small, picklable)."""

    ndim: int
    spacing: tuple | None
    channels: tuple | None

    @classmethod
    def of(cls, job: _Job) -> _TableSpec:
        return cls(len(job.spatial_axes), None if job.physical is None else tuple(job.physical),
                   None if job.channel_names is None else tuple(job.channel_names))

    def frame(self, parts, t):
        table = _measure.table_from_parts(parts, _measure.check_properties(None, True),
                                          self.ndim, self.spacing, True, self.channels)
        if t is not None:
            table.insert(0, "t", np.full(len(table), t, dtype=np.int64))
        return table


def _table_part(partial, *, job: _TableSpec, t, folder, name) -> int:
    return writers.write_table_part(job.frame([partial], t), folder, name)


def _objects(job: _Job, results: list, folder):
    """The object table from each time point's computed partials: one time point's rows,
    or every time point's after a ``t`` column; with a dataset ``folder`` (its parts
    written), the dataset's record instead."""
    import pandas as pd

    if folder is not None:
        writers.finish_table(folder, job.options.table)
        return {"path": str(job.options.table), "rows": int(sum(map(sum, results))),
                "parts": sum(len(r) for r in results)}
    spec = _TableSpec.of(job)
    tables = [spec.frame(p, None if job.times is None else t)
              for p, t in zip(results, job.times or [None])]
    return tables[0] if len(tables) == 1 else pd.concat(tables, ignore_index=True)


def _write_geojson(job: _Job, written: _Written) -> dict:
    """The objects' polygons, from the labels as written and the table measured with them."""
    from .geojson import to_geojson

    o = job.options
    what = f"{o.stain}_od_mean" if o.stain else "intensity_mean"
    if job.channel_names is None:
        measurements = {"area": "area", what: "intensity_mean"}
    else:
        measurements = {"area": "area", **{f"intensity_mean-{c}": f"intensity_mean-{c}"
                                           for c in job.channel_names}}
    # the path was checked in the open step (refused there if it existed)
    table = None if isinstance(written.objects, dict) else written.objects  # else measured
    count = to_geojson(da.from_zarr(written.array), o.geojson, table=table,
                       measurements=measurements, overwrite=True)
    return {"path": str(o.geojson), "features": count}


def _start_method(*paths) -> str | None:
    """Local worker processes start fresh ("spawn") when the run reads or writes a store that
    a forked process cannot use (obstore's: its runtime threads do not survive the fork, and
    a forked worker waits in its first chunk read for ever); everywhere else, the 0.1 s fork
    (fsspec's and zarr's event loops are made anew in the child; measured on the S3
    benchmark: fork 9.9 s, spawn 14.2 s)."""
    unsafe = [p for p in paths
              if p is not None and store.is_location(p) and not store.location(p).fork_safe]
    return "spawn" if unsafe else None


#: Time points of a series whose threshold and seed steps run at once (each waits on the
#: cluster most of its time: its histogram, its seed pass, its global step on the client).
SERIES_IN_FLIGHT = 8


def _build(job: _Job, state, timings: dict):
    """Step 2: the lazy labels (the threshold and the seeds computed now, or kept)."""
    if job.times is not None:
        return _build_series(job, state, timings)
    return _build_one(job, job.image, state, timings)


def _build_one(job: _Job, image, state, timings: dict, known_threshold=None,
               keep_distances="auto") -> Segmentation:
    o = job.options
    seeds = state.seeds if state is not None else None
    if state is not None:
        known_threshold = state.threshold
    return build(image, method=o.method, threshold=o.threshold,
                 min_distance=o.min_distance, footprint=o.footprint, sampling=job.sampling,
                 halo=o.halo, smooth=o.smooth, background=o.background,
                 connectivity=o.connectivity, min_size=o.min_size, classes=o.classes,
                 known_threshold=known_threshold,
                 known_seeds=Seeds.from_record(seeds) if seeds is not None else None, count=True,
                 timings=timings, polarity=o.polarity, tissue=job.tissue,
                 keep_distances=keep_distances, keep_image=job.times is None)


def _build_series(job: _Job, state, timings: dict) -> _Series:
    """Every time point built on its own, their threshold and seed steps in flight together
    (threads of this process, each waiting on the one cluster); the threshold of the whole
    series first with ``threshold_scope`` series."""
    o = job.options
    images = job.images()
    known = None
    t = time.perf_counter()
    if state is None and o.threshold_scope == "series":
        known = series_threshold(images, o.threshold, smooth=o.smooth, background=o.background)
    timings["threshold"] = time.perf_counter() - t
    # the distances of every time point are held until the labels are written
    keep = keeps_distances(job.image.shape, job.sampling)
    states = state.series if state is not None else [None] * len(images)

    def one(i):
        return _build_one(job, images[i], states[i], {}, known_threshold=known,
                          keep_distances=keep)

    t = time.perf_counter()
    with ThreadPoolExecutor(min(len(images), SERIES_IN_FLIGHT)) as pool:
        parts = list(pool.map(one, range(len(images))))
    timings["seeds"] = time.perf_counter() - t
    dtype = np.result_type(*[p.labels.dtype for p in parts])
    return _Series(parts, da.stack([p.labels.astype(dtype) for p in parts]))


def _create_output(job: _Job, seg, removed):
    """A new, incomplete label group with the run's state; returns its arrays."""
    if removed is not None:
        removed.result()
    writers.prepare_output(job.output, overwrite=job.options.overwrite)
    into = job.options.into_input
    series = job.times is not None
    scale = spatial_scale(job.info, job.axes) or (
        ([1.0] if series else []) + list(job.sampling) if job.sampling else None)
    if into is not None:
        writers.add_to_labels_group(job.input, into)
    writers.create_labels(job.output, shape=seg.labels.shape, chunks=job.chunks,
                          dtype=seg.labels.dtype, axes=job.axes, scale=scale,
                          units=job.info.units, version=job.ngff,
                          source_image="../../" if into else None,
                          levels=job.image_levels if into else None,
                          attrs={"params": job.params})
    states = []
    for p in _parts(seg):
        tval = p.threshold
        states.append((None if isinstance(tval, tuple) else tval,
                       p.seeds.to_record() if p.seeds is not None else None))
    resume.save_state(job.output, states, series=series)
    return writers.label_arrays(job.output)


def _write(job: _Job, seg, state, removed) -> _Written:
    """Step 3 (and 4 where it can): write every chunk not yet written, with the pyramid in
    the same graph on a fresh run, the count and the table measured from the same blocks."""
    parts = _parts(seg)
    series = job.times is not None
    labels = seg.labels.rechunk(job.chunks)
    if state is None:
        arrays = _create_output(job, seg, removed)
        done = set()
    else:
        arrays = writers.label_arrays(job.output)[:1]  # the pyramid is rebuilt afterwards
        done = resume.done_blocks(job.output)
    extra = [x for p in parts for x in (p.count_later, p.class_counts) if x is not None]
    measure_now = (job.options.table is not None or job.options.geojson is not None) and \
        not done
    markers = resume.marker_paths(job.output, [i for i in np.ndindex(*labels.numblocks)
                                               if i not in done])
    # labels used by nothing but their writes: each made inside its write task
    write = functools.partial(writers.write_block, where=str(job.output))
    writes = pyramid.store_blocks(labels, arrays, write=write, markers=markers,
                                  skip=done, fuse=not extra and not measure_now)
    measured, folder = [], None
    if measure_now:  # measured from the same label blocks as they are written
        folder = _dataset_folder(job, parts)
        measured = _measure_tasks(job, [labels[i] if series else labels
                                        for i in range(len(parts))], folder)
    results = list(dask.compute(writes, *extra, measured)[1:])
    partials = results.pop()
    objects = _objects(job, partials, folder) if measure_now else None
    counts, fractions = [], []
    for p in parts:
        count = p.count
        if p.count_later is not None:
            count = int(results.pop(0))
        if p.class_counts is not None:
            c = np.asarray(results.pop(0), dtype=np.int64)
            fractions.append((c / c.sum()).tolist())
        counts.append(count)
    if job.options.method != "threshold" and None in counts:  # after a size filter: N is the max
        written = da.from_zarr(arrays[0])
        counts = [int(v) for v in dask.compute(*[(written[i] if series else written).max()
                                                 for i in range(len(parts))])]
    total = None if None in counts else int(sum(counts))
    return _Written(array=arrays[0], done=done, count=total,
                    fractions=fractions[0] if fractions and not series else None,
                    objects=objects, counts=counts, class_fractions=fractions or None)


def _report(job: _Job, seg, written: _Written, state, timings, tasks) -> SegmentReport:
    """Step 5: the numbers a user checks."""
    parts = _parts(seg)
    seeds = [p.seeds for p in parts if p.seeds is not None]
    nblocks = int(np.prod(_labels_blocks(job)))
    thresholds = [describe_threshold(p.threshold) if isinstance(p.threshold, tuple)
                  else np.asarray(p.threshold).tolist() for p in parts]
    series = None
    if job.times is not None:
        series = [{"t": t, "objects": n, "threshold": th}
                  for t, n, th in zip(job.times, written.counts, thresholds)]
        for entry, fr in zip(series, written.class_fractions or []):
            entry["fractions"] = fr
    return SegmentReport(
        output=str(job.output), method=job.options.method, objects=written.count,
        threshold=thresholds if series is not None else thresholds[0],
        shape=tuple(job.image.shape), chunks=job.chunks, dtype=str(seg.labels.dtype),
        seed_halo=tuple(max(h) for h in zip(*[s.halo for s in seeds])) if seeds else None,
        watershed_halo=job.options.halo,
        max_distance=max(s.max_distance for s in seeds) if seeds else None,
        undecided_seeds=sum(s.undecided for s in seeds), timings=timings,
        fractions=written.fractions,
        kept_distances=bool(seeds and all(s.held is not None for s in seeds)),
        params=job.params, tasks=tasks, found=job.found or None, series=series,
        resumed=None if state is None else {"already_written": len(written.done),
                                            "written": nblocks - len(written.done),
                                            "chunks": nblocks},
    )


def _labels_blocks(job: _Job) -> tuple:
    """The chunk grid of the label output."""
    return tuple(-(-n // c) for n, c in zip(job.image.shape, job.chunks))


def _image_levels(info, axes: str):
    """(shape, scale) of every level of an OME-Zarr image, spatial axes only."""
    keep = [i for i, a in enumerate(info.axes) if a in axes]
    scales = info.level_scales or [None] * len(info.levels)
    return [(tuple(shape[i] for i in keep),
             [sc[i] for i in keep] if sc else [1.0] * len(keep))
            for shape, sc in zip(info.levels, scales)]


def _check_table_output(table, overwrite: bool, inputs) -> None:
    writers.check_table_path(table)
    writers.check_output_path(table, inputs)
    writers.refuse_existing(table, "table", overwrite=overwrite)


def run_measure(labels, output, options: MeasureOptions | None = None, **kwargs):
    """Measure a label store (and optionally an intensity image) into a CSV/Parquet table."""
    o = _options(MeasureOptions, options, kwargs)
    _check_table_output(output, o.overwrite, [labels, o.image])
    x = readers.open_labels(labels)
    im = None
    if o.image is not None:
        im = readers.open_image(o.image, level=o.level, channel=o.channel)
        if im.shape != x.shape:
            raise InputError(f"`image` (shape {im.shape}) must have the shape of the labels "
                             f"({x.shape}); pick the matching `level`")
    properties = _measure.check_properties(o.properties, im is not None)
    with _scheduler(o.scheduler, workers=o.workers) as client, \
            _progress(client, enabled=o.progress):
        table = _measure.measure(x, im, properties=properties, spacing=o.spacing)
    writers.write_table(table, output)
    return table


def demo_input(directory) -> Path:
    """The bundled nuclei image tiled 2x2 into a Zarr mosaic larger than one chunk."""
    from .datasets import human_mitosis

    directory = Path(directory)
    path = directory / "mosaic.zarr"
    if path.exists():
        return path
    tile = human_mitosis()
    mosaic = np.block([[tile, tile[:, ::-1]], [tile[::-1], tile[::-1, ::-1]]])
    directory.mkdir(parents=True, exist_ok=True)
    return writers.write_mosaic(path, mosaic, (256, 256))


def _open_mask(path):
    """A label output (complete) or any image, for :func:`run_compare`."""
    try:
        return readers.open_labels(path)
    except InputError:
        return readers.open_image(path)


def run_compare(a, b, options: CompareOptions | None = None, **kwargs) -> tuple[int, int]:
    """Pixels where two masks or class maps (label outputs or images) disagree.

    Counted by a Dask reduction; with ``out`` the disagreement is written as
    a uint8 mask, chunk by chunk. Returns ``(differing, total)``.
    """
    o = _options(CompareOptions, options, kwargs)
    x, y = _open_mask(a), _open_mask(b)
    if x.shape != y.shape:
        raise InputError(f"`a` (shape {x.shape}) must have the shape of `b` (shape {y.shape})")
    if o.out is not None:
        writers.check_output_path(o.out, [a, b])
        writers.refuse_existing(o.out, "output", overwrite=o.overwrite)
    diff = x != y.rechunk(x.chunks)
    count = diff.sum(dtype=np.int64)
    with _scheduler(o.scheduler, workers=o.workers) as client, \
            _progress(client, enabled=o.progress):
        if o.out is None:
            return int(count.compute()), int(np.prod(x.shape))
        out_chunks = tuple(max(c) for c in diff.chunks)
        writers.prepare_output(o.out, overwrite=o.overwrite)
        array = writers.create_labels(o.out, shape=diff.shape, chunks=out_chunks, dtype=np.uint8,
                                      axes="zyx"[-diff.ndim:], pyramid=False,
                                      attrs={"params": {"compare": [str(a), str(b)]}})
        writes = da.store(diff.astype(np.uint8).rechunk(out_chunks), array, lock=False,
                          compute=False)
        _, differ = dask.compute(writes, count)
    resume.finish_output(o.out, differ=int(differ))
    return int(differ), int(np.prod(x.shape))


def __getattr__(name: str):
    """``run_cells``, the cells run beside segment's (its module builds on this one's steps)."""
    if name == "run_cells":
        from .run_cells import run_cells

        return run_cells
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
