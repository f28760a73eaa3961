"""A cells run: nuclei + an image -> ``cells`` and ``cytoplasm`` label images, and a table.

The steps of :mod:`chunkseg.run`: open and check everything (nothing is
written, no cluster starts), then on the scheduler the threshold, the lazy
cells, one graph that writes both label images with their pyramids and
measures the three compartments from the same blocks, and the report.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import dask
import numpy as np

from . import __version__
from . import _graph
from . import pyramid
from . import table as _measure
from ._monitor import PeakMemory
from ._monitor import progress as _progress
from ._validate import InputError
from .cells import cells_from_nuclei, check_connectivity, check_markers
from .cluster import scheduler as _scheduler
from .io import readers, resume, store, writers
from .options import CellsOptions
from .run import _check_table_output, _image_levels, _options, _processing_chunks, spatial_scale

__all__ = ["CellsReport", "COMPARTMENTS", "run_cells"]

#: The label images a cells run writes, and the table's column prefixes.
COMPARTMENTS = ("nucleus", "cell", "cytoplasm")
_OUTPUTS = ("cells", "cytoplasm")


@dataclasses.dataclass
class CellsReport:
    """What a cells run did."""

    outputs: dict
    method: str
    cells: int
    empty_cytoplasm: int | None
    threshold: float | None
    shape: tuple
    chunks: tuple
    timings: dict
    params: dict
    table: str | None = None
    peak_memory: int | None = None

    def to_dict(self) -> dict:
        return {"chunkseg": __version__, "command": "cells", "outputs": self.outputs,
                "method": self.method, "cells": self.cells,
                "empty_cytoplasm": self.empty_cytoplasm, "threshold": self.threshold,
                "shape": list(self.shape), "chunks": list(self.chunks), "table": self.table,
                "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
                "total_s": round(sum(self.timings.values()), 4),
                "peak_memory_bytes": self.peak_memory, "params": self.params}

    def summary(self) -> str:
        t = "" if self.threshold is None else f", threshold {self.threshold:.6g}"
        size = "x".join(map(str, self.shape))
        empty = "" if self.empty_cytoplasm is None else \
            f" ({self.empty_cytoplasm} with an empty cytoplasm)"
        return (f"{self.cells} cells{empty} by {self.method}{t}; {size} px in "
                f"{sum(self.timings.values()):.1f} s -> {self.outputs['cells']}")


@dataclasses.dataclass
class _CellsJob:
    nuclei_path: object
    image_path: object
    nuclei: object
    image: object
    info: readers.ImageInfo
    axes: str
    targets: dict
    container: object
    ngff: str
    report_path: object
    params: dict
    options: CellsOptions


def _open(nuclei, image, output, o: CellsOptions) -> _CellsJob:
    """Every check of the run; nothing is written."""
    opened = readers.read_image(image, level=o.level, channel=o.channel)
    im, info = _processing_chunks(opened.array, o.chunks), opened.info
    nuc = check_markers(readers.open_markers(nuclei, level=o.level), im.shape, "nuclei",
                        hint="; pick the matching `level`")
    check_connectivity(o.connectivity, im.ndim)
    ngff = "0.5"
    if o.into_input:
        if output is not None:
            raise InputError("give either `output` or `into_input`, not both")
        targets = {}
        for name in _OUTPUTS:
            targets[name], ngff = writers.labels_target(image, name, image_format=info.format,
                                                        level=o.level, overwrite=o.overwrite)
        container = None
    elif output is None:
        raise InputError("give an `output` path (or `into_input` for an OME-Zarr image)")
    else:
        writers.check_output_path(output, [nuclei, image])
        container = store.location(output)
        writers.refuse_existing(container, "output", overwrite=o.overwrite)
        targets = {name: container / name for name in _OUTPUTS}
    if o.table is not None:
        _check_table_output(o.table, o.overwrite, [nuclei, image])
    report_path = None
    if o.report is not False:
        report_path = store.location(o.report or f"{targets['cells']}.report.json")
        writers.refuse_existing(report_path, "report", overwrite=o.overwrite)
    params = dict(o.params(nuclei=store.recorded(nuclei), image=store.recorded(image),
                           chunks=tuple(max(c) for c in im.chunks)), version=__version__)
    return _CellsJob(nuclei_path=nuclei, image_path=image, nuclei=nuc, image=im, info=info,
                     axes=opened.axes, targets=targets, container=container, ngff=ngff,
                     report_path=report_path, params=params, options=o)


def run_cells(nuclei, image, output=None, options: CellsOptions | None = None,
              **kwargs) -> CellsReport:
    """Grow cells from ``nuclei`` in ``image`` and write ``cells`` and ``cytoplasm``.

    ``nuclei``: a chunkseg label output (refused while incomplete) or any
    integer label image of the image's shape. ``output``: a new OME-Zarr
    ``labels`` group holding the label images ``cells`` and ``cytoplasm``
    (or, with ``into_input``, the OME-Zarr image's own ``labels/``). Both
    are marked incomplete until their last chunk is written. The options are
    a :class:`~chunkseg.options.CellsOptions` (or its fields as keywords).
    """
    options = _options(CellsOptions, options, kwargs)
    with store.storage_options(options.storage_options):
        return _run(nuclei, image, output, options)


def _run(nuclei, image, output, o: CellsOptions) -> CellsReport:
    t0 = time.perf_counter()
    job = _open(nuclei, image, output, o)
    timings = {"open": time.perf_counter() - t0}
    with PeakMemory() as memory, \
            _scheduler(o.scheduler, workers=o.workers, threads_per_worker=o.threads_per_worker,
                       memory_limit=o.memory_limit) as client, \
            _progress(client, enabled=o.progress):
        t = time.perf_counter()
        cells, cytoplasm, tval = cells_from_nuclei(
            job.nuclei, job.image, method=o.method, elevation=o.elevation, distance=o.distance,
            threshold=o.threshold, connectivity=o.connectivity, halo=o.halo,
            max_halo=o.max_halo)
        timings["threshold"] = time.perf_counter() - t
        t = time.perf_counter()
        table, counts = _write(job, cells, cytoplasm)
        timings["cells+write"] = time.perf_counter() - t
    threshold = None if tval is None else float(np.asarray(tval))
    report = CellsReport(
        outputs={k: str(v) for k, v in job.targets.items()}, method=o.method,
        cells=counts["cells"], empty_cytoplasm=counts.get("empty_cytoplasm"),
        threshold=threshold, shape=tuple(job.image.shape),
        chunks=tuple(max(c) for c in job.image.chunks), timings=timings, params=job.params,
        table=None if o.table is None else str(o.table), peak_memory=memory.peak)
    if table is not None:
        writers.write_table(table, o.table)
    if job.report_path is not None:
        writers.write_report(report.to_dict(), job.report_path)
    for name in _OUTPUTS:
        resume.finish_output(job.targets[name], objects=counts["cells"], threshold=threshold)
    return report


def _create(job: _CellsJob, dtype) -> dict:
    """The two new, incomplete label images; returns their arrays by name."""
    o = job.options
    im = job.image
    chunks = tuple(max(c) for c in im.chunks)
    scale = spatial_scale(job.info, job.axes)
    if job.container is not None:
        writers.prepare_output(job.container, overwrite=o.overwrite)
        writers.create_label_container(job.container, _OUTPUTS, version=job.ngff)
    # into an OME-Zarr image: its own pyramid, and the image two levels up
    levels = _image_levels(job.info, job.axes) if o.into_input else None
    source = "../../" if o.into_input else None
    arrays = {}
    for name, target in job.targets.items():
        if o.into_input:
            writers.prepare_output(target, overwrite=o.overwrite)
            writers.add_to_labels_group(job.image_path, name)
        writers.create_labels(target, shape=im.shape, chunks=chunks, dtype=dtype, axes=job.axes,
                              scale=scale, units=job.info.units, version=job.ngff,
                              source_image=source, levels=levels,
                              attrs={"params": dict(job.params, compartment=name)})
        arrays[name] = writers.label_arrays(target)
    return arrays


def _write(job: _CellsJob, cells, cytoplasm):
    """One graph: both label images with their pyramids, the compartments measured from
    the same blocks (with a table), and the counts."""
    arrays = _create(job, cells.dtype)
    chunks = tuple(max(c) for c in job.image.chunks)
    cells, cytoplasm = cells.rechunk(chunks), cytoplasm.rechunk(chunks)
    writes = []
    for name, x in (("cells", cells), ("cytoplasm", cytoplasm)):
        write = functools.partial(writers.write_block, where=str(job.targets[name]))
        writes.append(pyramid.store_blocks(x, arrays[name], write=write, fuse=False))
    nuclei = job.nuclei.rechunk(chunks)
    want_table = job.options.table is not None
    parts = {}
    if want_table:
        image = job.image.rechunk(chunks)
        for comp, x in zip(COMPARTMENTS, (nuclei, cells, cytoplasm)):
            g, roots = _measure.measure_graph(x, image)
            parts[comp] = [g.delayed(k) for k in roots]
        results = dask.compute(writes, parts)[1]
        table = compartment_table(results, job.image.ndim)
        counts = {"cells": int(len(table)),
                  "empty_cytoplasm": int((table["cytoplasm_area"] == 0).sum())}
        return table, counts
    # every nucleus is a cell: the cells are the distinct nucleus ids (one value per object)
    _, ids = dask.compute(writes, _graph.distinct(nuclei))
    return None, {"cells": int(np.count_nonzero(ids))}


def compartment_table(parts: dict, ndim: int):
    """One row per nucleus id: ``nucleus_*``, ``cell_*`` and ``cytoplasm_*`` columns (area,
    centroid, bbox, intensity mean/min/max/std), each equal to ``regionprops_table`` of that
    compartment on the whole image. A cytoplasm that is empty (the cell is its nucleus) has
    area 0 and NaN elsewhere."""
    properties = _measure.check_properties(None, True)
    tables = {comp: _measure.table_from_parts(parts[comp], properties, ndim, None, True)
              for comp in COMPARTMENTS}
    out = None
    for comp in COMPARTMENTS:  # every nucleus has a cell; a cytoplasm may be missing
        t = tables[comp].rename(columns=lambda c, p=comp: c if c == "label" else f"{p}_{c}")
        out = t if out is None else out.merge(t, on="label", how="left")
    out["cytoplasm_area"] = out["cytoplasm_area"].fillna(0.0)
    return out
