"""One end-to-end run: open -> threshold -> seeds -> watershed -> write -> report."""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from . import __version__
from . import io as _io
from . import measure as _measure
from .cluster import scheduler as _scheduler
from .filters import describe_threshold, parse_filter, parse_threshold
from .segment import (
    METHODS_SEGMENT,
    _check_positive,
    _check_sampling,
    check_classes,
    classify,
    find_seeds,
    foreground,
    fractions,
    label_dtype,
    remove_small,
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
    fractions: list | None = None

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
        if self.method == "threshold":
            if len(self.fractions) == 2:
                what = f"foreground {100 * self.fractions[1]:.2f}%"
            else:
                what = "classes " + ", ".join(f"{k}: {100 * f:.2f}%" for k, f in enumerate(self.fractions))
            return f"{what}, threshold {self._threshold_text()}, {tail}"
        return f"{self.objects} objects, threshold {self._threshold_text()}, {tail}"


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
                table=None) -> SegmentReport:
    """Segment ``input`` into a label store at ``output`` and report.

    Everything is checked before any pixel is read; the output is marked
    incomplete until its last chunk is written.
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
    image, info, axes = _io.open_image_with_info(input, level=level, channel=channel)
    chunks = _parse_chunks(chunks, image.ndim)
    sampling = _check_sampling(spacing, image.ndim) if spacing is not None else None
    _io.check_output_path(output, [input])
    if Path(output).exists() and not overwrite:
        raise InputError(f"output {output} exists; pass --overwrite to replace it")
    if table is not None:
        if method == "threshold":
            raise InputError("--table measures objects: use it with --method watershed or label")
        _check_table_output(table, overwrite, [input, output])
    if chunks is not None:
        image = image.rechunk(chunks)
    timings["open"] = time.perf_counter() - t0

    seeds = None
    count = None
    count_delayed = None
    parts = None
    with _scheduler(scheduler, workers=workers):
        t = time.perf_counter()
        if method == "threshold" and threshold == "multiotsu":
            labels, tval = classify(image, classes=classes or 3, smooth=smooth, background=background)
            nclasses = (classes or 3)
        else:
            mask, tval = foreground(image, threshold, smooth=smooth, background=background)
            nclasses = 2
        timings["threshold"] = time.perf_counter() - t
        t = time.perf_counter()
        if method == "watershed":
            seeds = find_seeds(mask, min_distance=min_distance, footprint=footprint,
                               sampling=sampling, halo=halo)
            timings["seeds"] = time.perf_counter() - t
            count = seeds.count
            labels = watershed(mask, seeds, sampling=sampling, halo=halo,
                               min_distance=min_distance).astype(label_dtype(count))
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
        dtype = labels.dtype
        t = time.perf_counter()
        out_chunks = tuple(max(c) for c in labels.chunks)
        labels = labels.rechunk(out_chunks)
        _io.prepare_output(output, overwrite=overwrite)
        params = {
            "input": str(input), "level": level, "channel": channel, "method": method,
            "threshold": describe_threshold(threshold) if not isinstance(threshold, (int, float))
            else float(threshold),
            "smooth": None if smooth is None else str(smooth),
            "background": None if background is None else str(background),
            "min_distance": min_distance, "footprint": footprint, "classes": classes,
            "min_size": min_size, "connectivity": connectivity,
            "spacing": list(sampling) if sampling else None, "halo": halo,
            "chunks": list(out_chunks), "version": __version__,
        }
        scale = info.scale[-image.ndim:] if info.scale else sampling
        array = _io.create_labels(output, shape=labels.shape, chunks=out_chunks, dtype=dtype,
                                  axes=axes, scale=scale, attrs={"params": params})
        store = da.store(labels, array, lock=False, compute=False)
        extra = [x for x in (count_delayed, parts) if x is not None]
        if table is not None:  # measured from the same label blocks as they are written
            mg, roots = _measure.measure_graph(labels, image.rechunk(labels.chunks))
            extra += [mg.delayed(k) for k in roots]
        results = dask.compute(store, *extra)[1:]
        if table is not None:
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
    report = SegmentReport(
        output=str(output), method=method, objects=count,
        threshold=describe_threshold(tval) if isinstance(tval, tuple) else np.asarray(tval).tolist(),
        shape=tuple(labels.shape), chunks=out_chunks, dtype=str(dtype),
        seed_halo=seeds.halo if seeds else None, watershed_halo=halo,
        max_distance=seeds.max_distance if seeds else None,
        undecided_seeds=seeds.undecided if seeds else 0, timings=timings, fractions=frac,
    )
    import zarr

    if table is not None:
        _measure.write_table(objects, table)
    group = zarr.open_group(str(output), mode="r+")
    _io.mark_complete(group, True, objects=report.objects, threshold=report.threshold,
                      fractions=frac)
    return report


def _check_table_output(table, overwrite: bool, inputs) -> None:
    _measure.check_table_path(table)
    _io.check_output_path(table, inputs)
    if Path(table).exists() and not overwrite:
        raise InputError(f"table {table} exists; pass --overwrite to replace it")


def run_measure(labels, output, *, image=None, spacing=None, properties=None, level: int = 0,
                channel=None, overwrite: bool = False, scheduler: str = "threads",
                workers: int | None = None):
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
    with _scheduler(scheduler, workers=workers):
        table = _measure.measure(x, im, properties=properties, spacing=spacing)
    _measure.write_table(table, output)
    return table


def demo_input(directory) -> Path:
    """The bundled nuclei image tiled 2x2 into a Zarr mosaic larger than one chunk."""
    import importlib.resources

    import tifffile
    import zarr

    directory = Path(directory)
    path = directory / "mosaic.zarr"
    if path.exists():
        return path
    ref = importlib.resources.files("chunkseg") / "data" / "human_mitosis.tif"
    with importlib.resources.as_file(ref) as tif:
        tile = tifffile.imread(tif)
    mosaic = np.block([[tile, tile[:, ::-1]], [tile[::-1], tile[::-1, ::-1]]])
    directory.mkdir(parents=True, exist_ok=True)
    zarr.create_array(str(path), data=mosaic, chunks=(256, 256))
    return path


def run_compare(a, b, *, out=None, overwrite: bool = False) -> tuple[int, int]:
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
        return int(count.compute()), int(np.prod(x.shape))
    out_chunks = tuple(max(c) for c in diff.chunks)
    _io.prepare_output(out, overwrite=overwrite)
    array = _io.create_labels(out, shape=diff.shape, chunks=out_chunks, dtype=np.uint8,
                              axes="zyx"[-diff.ndim:], attrs={"params": {"compare": [str(a), str(b)]}})
    store = da.store(diff.astype(np.uint8).rechunk(out_chunks), array, lock=False, compute=False)
    _, differ = dask.compute(store, count)
    import zarr

    _io.mark_complete(zarr.open_group(str(out), mode="r+"), True, differ=int(differ))
    return int(differ), int(np.prod(x.shape))
