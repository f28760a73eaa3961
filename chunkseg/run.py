"""One end-to-end run: open -> threshold -> seeds -> watershed -> write -> report."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from . import __version__
from . import io as _io
from . import table as _measure
from ._monitor import PeakMemory
from ._monitor import progress as _progress
from .cluster import placement_on
from .cluster import scheduler as _scheduler
from .filters import describe_threshold, parse_filter, parse_threshold
from .segment import (
    METHODS_SEGMENT,
    _check_positive,
    _check_sampling,
    check_classes,
    classify,
    _foreground,
    find_seeds,
    foreground,
    fractions,
    remove_small,
    threshold_value,
    watershed,
)
from .stitch import label_with_count
from ._validate import InputError, check_int

log = logging.getLogger(__name__)

__all__ = ["SegmentReport", "run_segment"]


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
        if self.method == "threshold":
            if len(self.fractions) == 2:
                what = f"foreground {100 * self.fractions[1]:.2f}%"
            else:
                what = "classes " + ", ".join(f"{k}: {100 * f:.2f}%" for k, f in enumerate(self.fractions))
            return f"{what}, threshold {self._threshold_text()}, {tail}"
        return f"{self.objects} objects, threshold {self._threshold_text()}, {tail}"


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
    kept_levels: bool = False

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
            "each" + (" (with the distances kept between the passes)" if self.kept_levels else ""),
            f"output:   {self.output} (nothing computed or written: dry run)",
        ])


def make_plan(image, *, method, halo, min_distance, footprint, sampling, scheduler, workers,
              threads_per_worker, output) -> Plan:
    """Shapes, chunks, halo, task count and memory per worker of a run, computing nothing."""
    import os

    from .segment import keeps_levels, levels_bytes, watershed_halo

    chunks = tuple(max(c) for c in image.chunks)
    nchunks = int(np.prod(image.numblocks))
    if method == "watershed":
        if halo == "auto":
            # the seed pass measures the largest distance; until then assume objects of
            # about twice the seed spacing (a retry doubles the halo when they are larger)
            h = watershed_halo(2.0 * min_distance, min_distance, sampling, image.ndim)
            note = "auto: measured in the seed pass; estimated from --min-distance"
        else:
            h = (int(halo),) * image.ndim
            note = "given"
    elif method == "label":
        h, note = (1,) * image.ndim, "one plane of each neighbour"
    else:
        h, note = (0,) * image.ndim, "none needed"
    input_tasks = len(image.__dask_graph__())
    # neighbours in one memory are used whole; across the seams of the workers'
    # bands (chunkseg._graph.band) they send faces: about a row of chunks each
    # side; without placement (chunkseg.placement: false) every chunk sends them
    if scheduler == "threads":
        bands = 1
    elif scheduler == "processes" and placement_on():
        bands = workers or os.cpu_count() or 1
    else:
        bands = None
    row = nchunks // image.numblocks[0]
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
    kept = method == "watershed" and keeps_levels(image.shape, sampling)
    memory = _WORKER_BASE + threads * per_thread + \
        (levels_bytes(image.shape, sampling) / nproc if kept else 0)
    return Plan(shape=tuple(image.shape), dtype=str(image.dtype), chunks=chunks,
                chunk_count=nchunks, method=method, halo=tuple(int(v) for v in h), halo_note=note,
                tasks=int(tasks), workers=nproc, threads_per_worker=threads,
                memory_per_worker=int(memory), output=str(output), kept_levels=kept)


def _parse_chunks(chunks, ndim: int):
    if chunks is None:
        return None
    if isinstance(chunks, str):
        try:
            chunks = tuple(int(c) for c in chunks.split(","))
        except ValueError:
            raise InputError(f"--chunks must be N or Z,Y,X integers, got {chunks!r}") from None
    if isinstance(chunks, int):
        chunks = (chunks,)
    chunks = tuple(chunks)
    if len(chunks) == 1:
        chunks = chunks * ndim
    if len(chunks) != ndim or any(c < 1 for c in chunks):
        raise InputError(f"--chunks must be {ndim} positive integers (or one), got {chunks}")
    return chunks


def run_segment(input, output, *, level: int = 0, channel=None, method: str = "watershed",
                threshold="otsu", smooth=None, background=None, min_distance: int = 10,
                footprint: int = 3, spacing=None, halo="auto", chunks=None,
                scheduler: str = "threads", workers: int | None = None, overwrite: bool = False,
                min_size: int = 0, connectivity: int = 1, classes: int | None = None,
                table=None, into_input: str | None = None, dry_run: bool = False,
                progress: bool | None = None, report: str | bool | None = None,
                threads_per_worker: int = 1, memory_limit: str | None = "auto",
                resume: bool = False, missing_chunks: str = "error"):
    """Segment ``input`` into a label store at ``output`` and report.

    Everything is checked before any pixel is read; the output is marked
    incomplete until its last chunk is written. ``dry_run`` returns the
    :class:`Plan` instead, computing and writing nothing. ``progress``
    shows a bar on stderr (None: when it is a terminal). ``report``: where
    to write the JSON run report (default ``OUTPUT.report.json``; False:
    none).
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if method not in METHODS_SEGMENT:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS_SEGMENT)}")
    min_size = check_int("--min-size", min_size, minimum=0)
    min_distance = _check_positive("--min-distance", min_distance)
    footprint = _check_positive("--footprint", footprint)
    if halo != "auto":
        halo = _check_positive("--halo", halo)
    threshold = parse_threshold(threshold)
    check_classes(method, threshold, classes)
    parse_filter(smooth)
    parse_filter(background, option="--background")
    image, info, axes = _io.open_image_with_info(input, level=level, channel=channel,
                                                 missing_chunks=missing_chunks)
    chunks = _parse_chunks(chunks, image.ndim)
    sampling = _check_sampling(spacing, image.ndim) if spacing is not None else None
    ngff = "0.5"
    if into_input is not None:
        if output is not None:
            raise InputError("give either OUTPUT or --into-input NAME, not both")
        output, ngff = _io.labels_target(input, into_input, level=level, overwrite=overwrite,
                                         resume=resume)
        _io.check_pyramid([shape for shape, _ in _image_levels(info, axes)])
    elif output is None:
        raise InputError("give an OUTPUT path (or --into-input NAME for an OME-Zarr input)")
    else:
        _io.check_output_path(output, [input])
    if resume and overwrite:
        raise InputError("--resume finishes an output, --overwrite replaces it: pick one")
    if Path(output).exists() and not overwrite and not resume:
        raise InputError(f"output {output} exists; pass --overwrite to replace it, or --resume "
                         "to finish an interrupted run")
    if table is not None:
        if method == "threshold":
            raise InputError("--table measures objects: use it with --method watershed or label")
        _check_table_output(table, overwrite, [input, output])
    if chunks is not None:
        image = image.rechunk(chunks)
    timings["open"] = time.perf_counter() - t0
    plan = make_plan(image, method=method, halo=halo, min_distance=min_distance,
                     footprint=footprint, sampling=sampling, scheduler=scheduler, workers=workers,
                     threads_per_worker=threads_per_worker, output=output)
    if dry_run:
        return plan
    report_path = None if report is False else Path(report or f"{output}.report.json")
    if report_path is not None and report_path.exists() and not (overwrite or resume):
        raise InputError(f"report {report_path} exists; pass --overwrite to replace it")
    out_chunks = tuple(max(c) for c in image.chunks)
    params = {
        "input": str(Path(input).resolve()), "level": level, "channel": channel,
        "method": method,
        "threshold": describe_threshold(threshold) if not isinstance(threshold, (int, float))
        else float(threshold),
        "smooth": None if smooth is None else str(smooth),
        "background": None if background is None else str(background),
        "min_distance": min_distance, "footprint": footprint, "classes": classes,
        "min_size": min_size, "connectivity": connectivity,
        "spacing": list(sampling) if sampling else None, "halo": halo,
        "chunks": list(out_chunks), "version": __version__,
    }
    if resume:  # refused before any cluster starts when the output cannot be resumed
        _io.check_resume(output, params, fingerprint=None)
    with PeakMemory() as memory, warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        result, objects = _run(
            image, output, info=info, axes=axes, method=method, threshold=threshold,
            smooth=smooth, background=background, classes=classes, min_distance=min_distance,
            footprint=footprint, sampling=sampling, halo=halo, min_size=min_size,
            connectivity=connectivity, table=table, into_input=into_input, ngff=ngff,
            input=input, overwrite=overwrite, params=params, resume=resume, timings=timings,
            scheduler=scheduler, workers=workers, threads_per_worker=threads_per_worker,
            memory_limit=memory_limit, progress=progress)
    for w in warned:  # recorded for the report, then passed on to the caller
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    result.peak_memory = memory.peak
    result.plan = plan
    result.warnings = [str(w.message) for w in warned]
    if table is not None:
        _measure.write_table(objects, table)
    if report_path is not None:
        report_path.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    _io.finish_output(output, objects=result.objects, threshold=result.threshold,
                      fractions=result.fractions)
    return result


def _run(image, output, *, info, axes, method, threshold, smooth, background, classes,
         min_distance, footprint, sampling, halo, min_size, connectivity, table, into_input,
         ngff, input, overwrite, params, resume, timings, scheduler, workers,
         threads_per_worker, memory_limit, progress):
    """The computing part of :func:`run_segment` (checks done, output not yet touched)."""
    seeds = None
    count = None
    count_delayed = None
    parts = None
    objects = None
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(_scheduler(scheduler, workers=workers,
                                                threads_per_worker=threads_per_worker,
                                                memory_limit=memory_limit))
        tasks = stack.enter_context(_progress(client, enabled=progress))
        # on the workers: only the two digests reach this process
        params["input_fingerprint"] = _io.fingerprint(image, input)
        state = _io.check_resume(output, params) if resume else None
        # an output being replaced is removed while the passes run (0.15 s for 32768^2)
        removed = None
        if state is None and overwrite and Path(output).exists():
            removed = stack.enter_context(ThreadPoolExecutor(1)).submit(
                _io.prepare_output, output, overwrite=True)
        t = time.perf_counter()
        if method == "threshold" and threshold == "multiotsu":
            labels, tval = classify(image, classes=classes or 3, smooth=smooth, background=background)
            nclasses = (classes or 3)
        elif state is not None and state.threshold is not None:  # resumed: the value it used
            tval = state.threshold
            mask, _ = foreground(image, tval, smooth=smooth, background=background)
            nclasses = 2
        else:
            # pending: the seed pass is submitted behind the histogram, no round trip between
            mask, tval = _foreground(image, threshold, smooth, background,
                                     pending=method == "watershed")
            nclasses = 2
        # a pending threshold is computed on the cluster while the seed pass waits for
        # it: then its time counts in "seeds"
        timings["threshold"] = time.perf_counter() - t
        t = time.perf_counter()
        if method == "watershed":
            if state is not None and state.seeds is not None:
                seeds = state.seeds
            else:
                seeds = find_seeds(mask, min_distance=min_distance, footprint=footprint,
                                   sampling=sampling, halo=halo)
            timings["seeds"] = time.perf_counter() - t
            count = seeds.count
            labels = watershed(mask, seeds, sampling=sampling, halo=halo,
                               min_distance=min_distance)
        elif method == "label":
            labels, count_delayed = label_with_count(mask, connectivity=connectivity)
        elif not (threshold == "multiotsu"):
            labels = mask.astype(np.uint8)
        if method == "threshold":
            parts = fractions(labels, nclasses)
        if count == 0:
            warnings.warn("the threshold leaves no foreground: the label image is empty",
                          stacklevel=2)
        if min_size and method != "threshold":
            if count is None:  # connected components: count them first (a cheap pass)
                count = int(count_delayed.compute())
                timings["components"] = time.perf_counter() - t
            labels = remove_small(labels, min_size, count)
            count = None  # known once written
            count_delayed = None
        tval = threshold_value(tval)
        dtype = labels.dtype
        t = time.perf_counter()
        out_chunks = tuple(params["chunks"])
        labels = labels.rechunk(out_chunks)
        if state is None:
            if removed is not None:
                removed.result()
            _io.prepare_output(output, overwrite=overwrite)
            scale = info.scale[-image.ndim:] if info.scale else sampling
            if into_input is not None:
                _io.add_to_labels_group(input, into_input)
            array = _io.create_labels(output, shape=labels.shape, chunks=out_chunks, dtype=dtype,
                                      axes=axes, scale=scale, units=info.units, version=ngff,
                                      source_image="../../" if into_input else None,
                                      levels=_image_levels(info, axes) if into_input else None,
                                      attrs={"params": params})
            _io.save_state(output, threshold=None if isinstance(tval, tuple) else tval,
                           seeds=seeds)
            done = set()
        else:
            array = _io.label_array(output)
            done = _io.done_blocks(output)
        # a fresh run writes the pyramid in the same graph; a resumed one rebuilds it after
        extra = [x for x in (count_delayed, parts) if x is not None]
        measure_now = table is not None and not done
        # labels used by nothing but their writes: each made inside its write task
        store = _io.store_blocks(labels, array, output, skip=done, pyramid=not done,
                                 fuse=not extra and not measure_now)
        if measure_now:  # measured from the same label blocks as they are written
            mg, roots = _measure.measure_graph(labels, image.rechunk(labels.chunks))
            extra += [mg.delayed(k) for k in roots]
        results = dask.compute(store, *extra)[1:]
        if measure_now:
            nroots = len(roots)
            objects = _measure.table_from_parts(
                results[-nroots:], _measure.check_properties(None, True), labels.ndim, sampling,
                True)
            results = results[:-nroots]
        if count_delayed is not None:
            count = int(results[0])
        if parts is not None:
            counts = np.asarray(results[-1], dtype=np.int64)
            frac = (counts / counts.sum()).tolist()
        else:
            frac = None
        if count is None and method != "threshold":  # after a size filter: N is the maximum
            count = int(da.from_zarr(array).max().compute())
        timings[f"{method}+write"] = time.perf_counter() - t
        if table is not None and objects is None:  # resumed: measure what is now complete
            t = time.perf_counter()
            objects = _measure.measure(da.from_zarr(array), image.rechunk(array.chunks),
                                       spacing=sampling)
            timings["measure"] = time.perf_counter() - t
        if done:
            t = time.perf_counter()
            _io.write_pyramid(output)
            timings["pyramid"] = time.perf_counter() - t
    nblocks = int(np.prod([-(-n // c) for n, c in zip(labels.shape, out_chunks)]))
    result = SegmentReport(
        output=str(output), method=method, objects=count,
        threshold=describe_threshold(tval) if isinstance(tval, tuple) else np.asarray(tval).tolist(),
        shape=tuple(labels.shape), chunks=out_chunks, dtype=str(dtype),
        seed_halo=seeds.halo if seeds else None, watershed_halo=halo,
        max_distance=seeds.max_distance if seeds else None,
        undecided_seeds=seeds.undecided if seeds else 0, timings=timings, fractions=frac,
        kept_distances=bool(seeds is not None and seeds.held is not None),
        params=params, tasks=tasks.total,
        resumed=None if state is None else {"already_written": len(done),
                                            "written": nblocks - len(done), "chunks": nblocks},
    )
    return result, objects


def _image_levels(info, axes: str):
    """(shape, scale) of every level of an OME-Zarr image, spatial axes only."""
    keep = [i for i, a in enumerate(info.axes) if a in axes]
    scales = info.level_scales or [None] * len(info.levels)
    return [(tuple(shape[i] for i in keep),
             [sc[i] for i in keep] if sc else [1.0] * len(keep))
            for shape, sc in zip(info.levels, scales)]


def _check_table_output(table, overwrite: bool, inputs) -> None:
    _measure.check_table_path(table)
    _io.check_output_path(table, inputs)
    if Path(table).exists() and not overwrite:
        raise InputError(f"table {table} exists; pass --overwrite to replace it")


def run_measure(labels, output, *, image=None, spacing=None, properties=None, level: int = 0,
                channel=None, overwrite: bool = False, scheduler: str = "threads",
                workers: int | None = None, progress: bool | None = None):
    """Measure a label store (and optionally an intensity image) into a CSV/Parquet table."""
    _check_table_output(output, overwrite, [labels, image])
    x = _io.open_labels(labels)
    im = None
    if image is not None:
        im = _io.open_image(image, level=level, channel=channel)
        if im.shape != x.shape:
            raise InputError(f"--image (shape {im.shape}) must have the shape of the labels "
                             f"({x.shape}); pick the matching --level")
    properties = _measure.check_properties(properties, im is not None)
    with _scheduler(scheduler, workers=workers) as client, _progress(client, enabled=progress):
        table = _measure.measure(x, im, properties=properties, spacing=spacing)
    _measure.write_table(table, output)
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
    return _io.write_mosaic(path, mosaic, (256, 256))


def run_compare(a, b, *, out=None, overwrite: bool = False,
                progress: bool | None = None) -> tuple[int, int]:
    """Pixels where two masks or class maps (label outputs or images) disagree.

    Counted by a Dask reduction; with ``out`` the disagreement is written as
    a uint8 mask, chunk by chunk. Returns ``(differing, total)``.
    """
    arrays = []
    for path in (a, b):
        try:
            arrays.append(_io.open_labels(path))
        except InputError:
            arrays.append(_io.open_image(path))
    x, y = arrays
    if x.shape != y.shape:
        raise InputError(f"MASK_A (shape {x.shape}) must have the shape of MASK_B (shape {y.shape})")
    if out is not None:
        _io.check_output_path(out, [a, b])
        if Path(out).exists() and not overwrite:
            raise InputError(f"output {out} exists; pass --overwrite to replace it")
    y = y.rechunk(x.chunks)
    diff = (x != y)
    count = diff.sum(dtype=np.int64)
    if out is None:
        with _progress(None, enabled=progress):
            return int(count.compute()), int(np.prod(x.shape))
    out_chunks = tuple(max(c) for c in diff.chunks)
    _io.prepare_output(out, overwrite=overwrite)
    array = _io.create_labels(out, shape=diff.shape, chunks=out_chunks, dtype=np.uint8,
                              axes="zyx"[-diff.ndim:], pyramid=False, attrs={"params": {"compare": [str(a), str(b)]}})
    store = da.store(diff.astype(np.uint8).rechunk(out_chunks), array, lock=False, compute=False)
    with _progress(None, enabled=progress):
        _, differ = dask.compute(store, count)
    _io.finish_output(out, differ=int(differ))
    return int(differ), int(np.prod(x.shape))
