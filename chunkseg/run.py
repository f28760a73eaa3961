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
from .cluster import scheduler as _scheduler
from .segment import (
    METHODS_SEGMENT,
    _check_positive,
    _check_sampling,
    find_seeds,
    foreground,
    label_dtype,
    remove_small,
    watershed,
)
from .stitch import label_with_count
from ._validate import InputError

log = logging.getLogger(__name__)

__all__ = ["SegmentReport", "run_segment"]


@dataclasses.dataclass
class SegmentReport:
    """What a run did: the numbers a user checks."""

    output: str
    objects: int
    threshold: float
    shape: tuple
    chunks: tuple
    dtype: str
    seed_halo: tuple
    watershed_halo: tuple | str
    max_distance: float
    undecided_seeds: int
    timings: dict

    def summary(self) -> str:
        total = sum(self.timings.values())
        return (f"{self.objects} objects, threshold {self.threshold:.6g}, "
                f"{'x'.join(map(str, self.shape))} px in {total:.1f} s -> {self.output}")


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
                threshold="otsu", smooth=None, min_distance: int = 10, footprint: int = 3,
                spacing=None, halo="auto", chunks=None, scheduler: str = "threads",
                workers: int | None = None, overwrite: bool = False, min_size: int = 0,
                connectivity: int = 1) -> SegmentReport:
    """Segment ``input`` into a label store at ``output`` and report.

    Everything is checked before any pixel is read; the output is marked
    incomplete until its last chunk is written.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if method not in METHODS_SEGMENT:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS_SEGMENT)}")
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
        raise InputError(f"--min-size must be a non-negative integer, got {min_size!r}")
    min_distance = _check_positive("--min-distance", min_distance)
    footprint = _check_positive("--footprint", footprint)
    if halo != "auto":
        halo = _check_positive("--halo", halo)
    image, info, axes = _io.open_image_with_info(input, level=level, channel=channel)
    spatial = axes
    chunks = _parse_chunks(chunks, image.ndim)
    sampling = _check_sampling(spacing, image.ndim) if spacing is not None else None
    _io.check_output_path(output, [input])
    if Path(output).exists() and not overwrite:
        raise InputError(f"output {output} exists; pass --overwrite to replace it")
    if chunks is not None:
        image = image.rechunk(chunks)
    timings["open"] = time.perf_counter() - t0

    with _scheduler(scheduler, workers=workers):
        t = time.perf_counter()
        mask, tval = foreground(image, threshold, smooth=smooth)
        timings["threshold"] = time.perf_counter() - t
        t = time.perf_counter()
        seeds = None
        if method == "watershed":
            seeds = find_seeds(mask, min_distance=min_distance, footprint=footprint,
                               sampling=sampling, halo=halo)
            timings["seeds"] = time.perf_counter() - t
            count = seeds.count
            labels = watershed(mask, seeds, sampling=sampling, halo=halo,
                               min_distance=min_distance).astype(label_dtype(count))
        else:
            labels, count_delayed = label_with_count(mask, connectivity=connectivity)
            count = None
        if count == 0:
            warnings.warn("the threshold leaves no foreground: the label image is empty",
                          stacklevel=2)
        if min_size:
            if count is None:  # connected components: count them first (a cheap pass)
                count = int(count_delayed.compute())
                timings["components"] = time.perf_counter() - t
            labels = remove_small(labels, min_size, count)
            count = None  # known once written
        dtype = labels.dtype
        t = time.perf_counter()
        out_chunks = tuple(max(c) for c in labels.chunks)
        labels = labels.rechunk(out_chunks)
        _io.prepare_output(output, overwrite=overwrite)
        params = {
            "input": str(input), "level": level, "channel": channel, "method": method,
            "threshold": threshold if isinstance(threshold, str) else float(threshold),
            "smooth": smooth, "min_distance": min_distance, "footprint": footprint,
            "min_size": min_size, "connectivity": connectivity,
            "spacing": list(sampling) if sampling else None, "halo": halo,
            "chunks": list(out_chunks), "version": __version__,
        }
        scale = info.scale[-image.ndim:] if info.scale else sampling
        array = _io.create_labels(output, shape=labels.shape, chunks=out_chunks, dtype=dtype,
                                  axes=spatial, scale=scale, attrs={"params": params})
        store = da.store(labels, array, lock=False, compute=False)
        if count is None and method == "label" and not min_size:
            _, count = dask.compute(store, count_delayed)
        else:
            store.compute()
        if count is None:  # after a size filter: ids are 1..N, so N is the maximum
            count = int(da.from_zarr(array).max().compute())
        timings[f"{method}+write"] = time.perf_counter() - t
    report = SegmentReport(
        output=str(output), objects=int(count), threshold=float(np.asarray(tval)),
        shape=tuple(labels.shape), chunks=out_chunks, dtype=str(dtype),
        seed_halo=seeds.halo if seeds else None, watershed_halo=halo,
        max_distance=seeds.max_distance if seeds else None,
        undecided_seeds=seeds.undecided if seeds else 0, timings=timings,
    )
    import zarr

    group = zarr.open_group(str(output), mode="r+")
    _io.mark_complete(group, True, objects=report.objects, threshold=report.threshold)
    return report


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
