"""The options of a run, as one frozen object each, validated once.

The CLI builds them from its arguments (the parser's names are the fields'
names), Python callers directly or through the keywords of
:func:`chunkseg.run.run_segment`. The run report's parameters and the resume
check come from the object, so an option is added in three places: here, in
the parser, and in the code that uses it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ._validate import InputError, check_classes, check_int, time_text
from .cluster import check_scheduler
from .filters import describe_threshold, parse_filter, parse_threshold
from .segment import check_method
from .threshold import METHODS

__all__ = ["CellsOptions", "CompareOptions", "MeasureOptions", "SegmentOptions"]


def _check_chunks(chunks):
    """None, N, "N", "Z,Y,X" or a tuple of positive ints: a tuple (or None)."""
    if chunks is None:
        return None
    if isinstance(chunks, str):
        try:
            chunks = tuple(int(c) for c in chunks.split(","))
        except ValueError:
            raise InputError(f"`chunks` must be N or Z,Y,X integers, got {chunks!r}") from None
    if isinstance(chunks, (int, np.integer)) and not isinstance(chunks, bool):
        chunks = (int(chunks),)
    if not isinstance(chunks, (tuple, list)) or not chunks or any(
            isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1 for c in chunks):
        raise InputError(f"`chunks` must be positive integers (one, or one per axis), got {chunks!r}")
    return tuple(int(c) for c in chunks)


def _check_threshold(threshold):
    spec = parse_threshold(threshold)
    if isinstance(spec, str) and spec not in METHODS:
        raise InputError(f"unknown `threshold` method {spec!r}; choose one of "
                         f"{', '.join(METHODS)} or give a number")
    if isinstance(spec, bool) or not (isinstance(spec, (str, tuple, int, float, np.number))
                                      or callable(spec)):
        raise InputError(f"`threshold` must be a method name, a number or a callable, got {spec!r}")
    if isinstance(spec, (int, float, np.number)) and not math.isfinite(float(spec)):
        raise InputError(f"`threshold` must be finite, got {spec!r}")
    return spec


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"`{name}` must be True or False, got {value!r}")
    return bool(value)


def _check_spacing(spacing, *, auto: bool = False):
    """None, numbers per axis, or (``auto``: a segment run) ``"auto"``: the image's own
    physical pixel sizes from its metadata."""
    if spacing is None:
        return None
    if auto and isinstance(spacing, str) and spacing == "auto":
        return "auto"
    try:
        values = tuple(float(s) for s in np.atleast_1d(np.asarray(spacing, dtype=float)))
    except (TypeError, ValueError):
        raise InputError(f"`spacing` must be numbers like (2, 0.65, 0.65), got {spacing!r}") from None
    if not values or not all(s > 0 and math.isfinite(s) for s in values):
        raise InputError(f"`spacing` must be positive and finite, got {spacing!r}")
    return values


def check_time(time):
    """None, ``"all"``, a time point ``T`` or ``"A:B"`` (half-open, either end optional, as
    Python's slices; also a ``slice``): None, "all", an int or a ``(start, stop)`` pair."""
    if time is None or (isinstance(time, str) and time == "all"):
        return time
    if isinstance(time, slice):
        if time.step not in (None, 1):
            raise InputError(f"`time` takes A:B without a step, got {time!r}")
        time = (time.start, time.stop)
    elif isinstance(time, str) and time.strip().lstrip("-").isdigit():
        time = int(time)
    elif isinstance(time, str) and time.count(":") == 1:
        try:
            time = tuple(int(v) if v.strip() else None for v in time.split(":"))
        except ValueError:
            time = None
        if time is None:
            raise InputError("`time` must be all, a time point T or A:B (integers)") from None
    if isinstance(time, (int, np.integer)) and not isinstance(time, bool):
        if time < 0:
            raise InputError(f"`time` must be all, a time point T >= 0 or A:B, got {time}")
        return int(time)
    if isinstance(time, (tuple, list)) and len(time) == 2 and all(
            v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0)
            for v in time):
        return tuple(None if v is None else int(v) for v in time)
    raise InputError(f"`time` must be all, a time point T or A:B (integers >= 0), got {time!r}")


def check_channels(channels):
    """None, ``"all"``, or channel names / indices (a list, or ``"A,B"``): a tuple."""
    if channels is None or (isinstance(channels, str) and channels == "all"):
        return channels
    if isinstance(channels, str):
        channels = [c.strip() for c in channels.split(",")]
    if isinstance(channels, (int, np.integer)) and not isinstance(channels, bool):
        channels = [int(channels)]
    if not isinstance(channels, (list, tuple)) or not channels or any(
            isinstance(c, bool) or not isinstance(c, (str, int, np.integer)) or c == ""
            for c in channels):
        raise InputError(f"`measure_channels` must be all or channel names/indices like "
                         f"DNA,Actin or 0,2, got {channels!r}")
    return tuple(int(c) if isinstance(c, (int, np.integer)) else c for c in channels)


@dataclasses.dataclass(frozen=True)
class _Common:
    """Options every command has: where it computes, and whether it may replace output."""

    scheduler: str = "threads"
    workers: int | None = None
    overwrite: bool = False
    #: a progress bar on stderr (None: when stderr is a terminal)
    progress: bool | None = None

    def __post_init__(self):
        check_scheduler(self.scheduler)
        if self.workers is not None:
            check_int("workers", self.workers)
        _check_bool("overwrite", self.overwrite)
        if self.progress is not None:
            _check_bool("progress", self.progress)

    def _set(self, **values) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def replace(self, **changes):
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class _Run(_Common):
    """Options of the runs that write label images: the level read, the worker processes,
    the table and report, and the object store's client options."""

    level: int = 0
    threads_per_worker: int = 1
    memory_limit: str | None = "auto"
    table: str | None = None
    report: str | bool | None = None
    #: options of the object store client (credentials, endpoint); never recorded
    storage_options: dict | None = None

    def __post_init__(self):
        super().__post_init__()
        from .io.store import check_storage_options

        if self.storage_options is not None:
            self._set(storage_options=check_storage_options(self.storage_options))
        check_int("level", self.level, minimum=0)
        check_int("threads_per_worker", self.threads_per_worker)


@dataclasses.dataclass(frozen=True)
class SegmentOptions(_Run):
    """Everything a segment run may be told, checked when the object is made.

    The image: ``level``, ``channel``, ``missing_chunks``. The method and its
    parameters: see :func:`chunkseg.segment`. ``chunks``: processing chunks
    (default: the storage chunks; a 3D watershed grows them, see
    :func:`chunkseg.run.auto_blocks`). Where it runs: ``scheduler``,
    ``workers``, ``threads_per_worker``, ``memory_limit``. What it writes:
    ``overwrite`` or ``resume``, ``into_input`` (a label name inside an
    OME-Zarr input), ``table`` (CSV or Parquet of every object),
    ``report`` (the JSON run report's path; False: none).
    """

    channel: int | str | None = None
    missing_chunks: str = "error"
    method: str = "watershed"
    threshold: object = "otsu"
    smooth: object = None
    background: object = None
    min_distance: int = 10
    footprint: int = 3
    spacing: tuple | str | None = None
    halo: int | str = "auto"
    chunks: tuple | None = None
    min_size: int = 0
    connectivity: int = 1
    classes: int | None = None
    resume: bool = False
    into_input: str | None = None
    #: objects brighter (bright) or darker (dark: brightfield grey, phase) than the background
    polarity: str = "bright"
    #: segment this stain's optical density of an RGB image (hematoxylin, eosin, dab)
    stain: str | None = None
    #: the stains' RGB vectors (3x3, or a file), "macenko" (estimated), or None (Ruifrok-Johnston)
    stain_vectors: object = None
    #: where to look: "none", "auto" (detected on a low-resolution level) or a mask's path
    tissue: str | None = "none"
    #: a GeoJSON FeatureCollection of the objects' polygons (QuPath detections)
    geojson: str | None = None
    #: the time points of a series: "all", T, "A:B" (each segmented on its own), or None
    time: object = None
    #: a threshold per time point ("time") or one over all the selected ones ("series")
    threshold_scope: str = "time"
    #: the channels whose intensities go into the table ("all" or names/indices)
    measure_channels: object = None

    def __post_init__(self):
        super().__post_init__()
        from .segment import check_polarity

        self._set(time=check_time(self.time),
                  measure_channels=check_channels(self.measure_channels))
        if self.threshold_scope not in ("time", "series"):
            raise InputError(f"`threshold_scope` must be time (a threshold per time point) or "
                             f"series (one over all of them), got {self.threshold_scope!r}")
        if self.threshold_scope == "series" and not (self.time == "all"
                                                     or isinstance(self.time, tuple)):
            raise InputError("`threshold_scope` series needs the time points of a series: "
                             "give `time` all or A:B")
        if self.measure_channels is not None and self.table is None:
            raise InputError("`measure_channels` puts channels in the table: give `table`")
        series = self.time is not None and not isinstance(self.time, int)
        for name in ("stain", "geojson", "into_input"):
            if series and getattr(self, name) is not None:
                raise InputError(f"`{name}` works on one image, not on a time series: pick one "
                                 "time point with `time` T")
        if series and self.tissue not in (None, "none"):
            raise InputError("`tissue` works on one slide, not on a time series: pick one "
                             "time point with `time` T")

        check_polarity(self.polarity)
        if self.stain is not None:
            from .stain import check_stain, stain_matrix

            check_stain(self.stain)
            if not (isinstance(self.stain_vectors, str) and self.stain_vectors == "macenko"):
                stain_matrix(self.stain_vectors)  # refuses bad vectors now
            if self.stain == "dab" and self.stain_vectors == "macenko":
                raise InputError("`stain_vectors` macenko estimates hematoxylin and eosin; give "
                                 "the vectors to segment dab")
            if self.channel is not None:
                raise InputError("`stain` uses the three colour channels: drop `channel`")
        elif self.stain_vectors is not None:
            raise InputError("`stain_vectors` needs `stain` (which stain to segment)")
        if self.tissue is None:
            self._set(tissue="none")
        if not isinstance(self.tissue, str):
            raise InputError(f"`tissue` must be auto, none or a mask's path, got {self.tissue!r}")
        if self.geojson is not None and self.method == "threshold":
            raise InputError("`geojson` writes objects: use it with `method` watershed or label")
        if self.missing_chunks not in ("error", "fill"):
            raise InputError(f"`missing_chunks` must be error or fill, got {self.missing_chunks!r}")
        check_method(self.method)
        self._set(threshold=_check_threshold(self.threshold))
        check_classes(self.method, self.threshold, self.classes)
        parse_filter(self.smooth)
        parse_filter(self.background, name="background")
        check_int("min_distance", self.min_distance)
        check_int("footprint", self.footprint)
        check_int("min_size", self.min_size, minimum=0)
        check_int("connectivity", self.connectivity)
        if self.halo != "auto":
            check_int("halo", self.halo)
        self._set(spacing=_check_spacing(self.spacing, auto=True),
                  chunks=_check_chunks(self.chunks))
        _check_bool("resume", self.resume)
        if self.resume and self.overwrite:
            raise InputError("`resume` finishes an output, `overwrite` replaces it: pick one")
        if self.table is not None and self.method == "threshold":
            raise InputError("`table` measures objects: use it with `method` watershed or label")

    def params(self, *, input, chunks, spacing) -> dict:
        """The parameters a run records (report, resume check): what decides its labels."""
        threshold = self.threshold
        return {
            "input": input, "level": self.level, "channel": self.channel, "method": self.method,
            "threshold": float(threshold) if isinstance(threshold, (int, float, np.number))
            else describe_threshold(threshold),
            "smooth": None if self.smooth is None else str(self.smooth),
            "background": None if self.background is None else str(self.background),
            "min_distance": self.min_distance, "footprint": self.footprint,
            "classes": self.classes, "min_size": self.min_size,
            "connectivity": self.connectivity, "spacing": list(spacing) if spacing else None,
            "halo": self.halo, "chunks": list(chunks),
            "polarity": self.polarity, "stain": self.stain,
            "stain_vectors": _vectors_record(self.stain_vectors), "tissue": self.tissue,
            "time": time_text(self.time), "threshold_scope": self.threshold_scope,
        }


def _vectors_record(vectors):
    if vectors is None or isinstance(vectors, str):
        return vectors
    return np.asarray(vectors, dtype=float).tolist()


@dataclasses.dataclass(frozen=True)
class MeasureOptions(_Common):
    """A measure run: the label store's table, with an intensity ``image`` optionally."""

    image: str | None = None
    level: int = 0
    channel: int | str | None = None
    properties: tuple | None = None
    spacing: tuple | None = None

    def __post_init__(self):
        super().__post_init__()
        check_int("level", self.level, minimum=0)
        self._set(spacing=_check_spacing(self.spacing))
        if isinstance(self.properties, str):
            self._set(properties=tuple(p for p in self.properties.split(",") if p))
        elif self.properties is not None:
            self._set(properties=tuple(self.properties))


@dataclasses.dataclass(frozen=True)
class CompareOptions(_Common):
    """A compare run: where two masks differ, optionally written to ``out``."""

    out: str | None = None


@dataclasses.dataclass(frozen=True)
class CellsOptions(_Run):
    """A cells run (:func:`chunkseg.run_cells.run_cells`): cells grown from nuclei.

    ``channel``/``level`` pick the image the cells are found in. ``method``:
    ``watershed`` (a seeded watershed of ``elevation``: image, inverted or
    sobel) or ``expand`` (every nucleus grown by ``distance`` pixels).
    ``threshold``: the cell mask is ``image > t`` (any global method or a
    number) united with the nuclei; ``"none"``: no mask. ``into_input``:
    write ``cells`` and ``cytoplasm`` into the OME-Zarr image's ``labels/``.
    ``table``: one row per nucleus with ``nucleus_*``, ``cell_*`` and
    ``cytoplasm_*`` columns.
    """

    channel: int | str | None = None
    method: str = "watershed"
    elevation: str = "inverted"
    distance: float = 10.0
    threshold: object = "otsu"
    connectivity: int = 1
    halo: int | str = "auto"
    max_halo: int | None = None
    chunks: tuple | None = None
    into_input: bool = False

    def __post_init__(self):
        super().__post_init__()
        from .cells import ELEVATIONS, check_distance

        if self.method not in ("watershed", "expand"):
            raise InputError(f"unknown cells `method` {self.method!r}; choose watershed or expand")
        if self.elevation not in ELEVATIONS:
            raise InputError(f"unknown `elevation` {self.elevation!r}; choose one of "
                             f"{', '.join(ELEVATIONS)}")
        self._set(distance=check_distance(self.distance))
        if not (isinstance(self.threshold, str) and self.threshold == "none"):
            spec = _check_threshold(self.threshold)
            if isinstance(spec, tuple) or spec == "multiotsu":
                raise InputError("the cell mask takes a global `threshold` (a method, a number "
                                 "or none)")
            self._set(threshold=spec)
        check_int("connectivity", self.connectivity)
        if self.halo != "auto":
            check_int("halo", self.halo)
        if self.max_halo is not None:
            check_int("max_halo", self.max_halo)
        self._set(chunks=_check_chunks(self.chunks))
        _check_bool("into_input", self.into_input)

    def params(self, *, nuclei, image, chunks) -> dict:
        """The parameters a cells run records in its outputs and report."""
        t = self.threshold
        return {
            "nuclei": nuclei, "image": image, "level": self.level, "channel": self.channel,
            "method": self.method,
            "elevation": self.elevation if self.method == "watershed" else None,
            "distance": self.distance if self.method == "expand" else None,
            "threshold": float(t) if isinstance(t, (int, float, np.number)) else str(t),
            "connectivity": self.connectivity, "halo": self.halo, "max_halo": self.max_halo,
            "chunks": list(chunks),
        }
