"""Readers: open an image (or a label output) lazily, with its metadata.

Reads Zarr v2/v3 arrays and groups, OME-Zarr (NGFF 0.4 and 0.5) multiscale
images and TIFF files (plain, OME, ImageJ, tiled and pyramidal such as SVS),
always lazily: the result is a dask array chunked like the storage, and no
pixel is read until a task needs it.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import zarr

from .._lazy import Deferred
from .._validate import ChunkReadError, InputError, check_image_array, time_text
from . import ngff, store
from .writers import COMPLETE_KEY, LABELS_ARRAY, is_complete, label_arrays

# imported on first use: `chunkseg info` reads metadata only
dask = Deferred("dask")
da = Deferred("dask.array")

__all__ = ["ImageInfo", "OpenedImage", "inspect_image", "label_levels", "open_image",
           "open_labels", "read_image"]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: Chunks of a TIFF that stores strips or small tiles are grown up to this many bytes.
_TIFF_CHUNK_BYTES = 16 * 2**20
_CHANNEL_AXES = {"c", "s"}


@dataclasses.dataclass
class ImageInfo:
    """What an image is, as read from its metadata (no pixels read)."""

    path: str
    format: str
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    axes: str
    levels: list[tuple[int, ...]]
    channels: list[str] | None = None
    scale: tuple[float, ...] | None = None
    #: OME axis units by axis name (e.g. {"x": "micrometer"}), when the metadata has them
    units: dict | None = None
    #: scale of every level (OME-Zarr), for label pyramids that match the image's
    level_scales: list | None = None

    def summary(self) -> str:
        lines = [
            f"path:     {self.path}",
            f"format:   {self.format}",
            f"shape:    {self.shape}  axes: {self.axes}",
            f"dtype:    {self.dtype}",
            f"chunks:   {self.chunks}",
            f"levels:   {len(self.levels)}  " + "  ".join(str(s) for s in self.levels),
        ]
        if self.channels is not None:
            lines.append("channels: " + ", ".join(f"{i}={n}" for i, n in enumerate(self.channels)))
        if self.scale is not None:
            lines.append(f"scale:    {self.scale}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- sources


@dataclasses.dataclass
class _Level:
    """One resolution level of an image, before channel selection."""

    #: makes the level's dask array, on first use (metadata alone needs no dask.array)
    build: Callable[[], da.Array]
    info: ImageInfo
    #: the same level chunked otherwise, read in one task per new chunk (Zarr sources: a
    #: chunk whole along an axis is one read of the stored chunks, not a concatenation
    #: task over tasks that each read one, whose pieces may sit on other workers)
    reopen: Callable[[tuple], da.Array] | None = None

    @functools.cached_property
    def array(self) -> da.Array:
        return self.build()


@dataclasses.dataclass(frozen=True)
class OpenedImage:
    """An image opened for a run: the selected 2D/3D array, its metadata and its kept axes."""

    array: da.Array
    info: ImageInfo
    axes: str


def _is_tiff(path: store.Location) -> bool:
    try:
        return path.head(4) in _TIFF_MAGIC
    except (OSError, InputError):
        return False


def _open_level(path, level: int, missing: str = "error", approximate: bool = False) -> _Level:
    path = store.location(path)
    if not path.exists():
        raise store.missing(path)
    if path.is_dir():
        if missing not in ("error", "fill"):
            raise InputError(f"`missing_chunks` must be error or fill, got {missing!r}")
        return _open_zarr(path, level, missing)
    vendor = _slide_vendor(path)
    if _is_tiff(path):
        # the TIFF slides (SVS, NDPI, SCN, Philips, generic) are read by tifffile: every
        # level's own pixels (OpenSlide resamples levels whose downsample is not an integer)
        source = _open_tiff(path, level)
        if vendor is not None:
            try:
                slide = _slide(path.name)
            except Exception as exc:  # noqa: BLE001 - OpenSlide refuses it: can tifffile read it?
                _first_tile(source, path, exc)
            else:
                _slide_metadata(source.info, slide, vendor, level, "tiff")
        return source
    if vendor is not None:
        return _open_slide(path, level, vendor, approximate)
    raise InputError(
        f"{path} is not an image chunkseg can read (Zarr, OME-Zarr, TIFF or a slide OpenSlide "
        "opens: SVS, NDPI, MRXS, SCN, Philips TIFF, DICOM); convert it, e.g. with tifffile or "
        "bioformats2raw"
    )


def _check_level(level: int, nlevels: int, path) -> None:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) \
            or not 0 <= level < nlevels:
        raise InputError(
            f"level {level} does not exist in {path}: it has {nlevels} level"
            f"{'s' if nlevels > 1 else ''} (0..{nlevels - 1})"
        )


def _zarr_node(path: store.Location, what: str):
    """The Zarr array or group at ``path``; one line naming ``what`` it should be if not."""
    try:
        return zarr.open(store=path.zarr_store(read_only=True), mode="r")
    except InputError:
        raise
    except PermissionError as exc:  # a listing answered from the client's cache, then refused
        raise path.denied(exc) from None
    except Exception as exc:  # zarr raises several types for "not a store"
        raise InputError(f"{path} is not {what} ({exc.__class__.__name__})") from None


def _open_zarr(path: store.Location, level: int, missing: str) -> _Level:
    node = _zarr_node(path, "a Zarr array or group")
    fmt = f"zarr-v{node.metadata.zarr_format}"
    if isinstance(node, zarr.Array):
        _check_level(level, 1, path)
        return _source_from_zarr_array(node, path, fmt, _default_axes(node.ndim, path), missing)
    meta = ngff.read_metadata(node.attrs.asdict())
    if meta is not None:
        return _open_ome_zarr(node, path, *meta, level, missing)
    arrays = sorted(name for name, _ in node.arrays())
    if not arrays:
        raise InputError(f"Zarr group {path} holds no array; point at an array or an OME-Zarr image")
    if len(arrays) > 1:
        raise InputError(
            f"Zarr group {path} holds {len(arrays)} arrays ({', '.join(arrays)}) and no "
            f"OME-Zarr metadata; point at one, e.g. {path / arrays[0]}"
        )
    _check_level(level, 1, path)
    array = node[arrays[0]]
    return _source_from_zarr_array(array, path, fmt, _default_axes(array.ndim, path), missing)


def _open_ome_zarr(group, path: Path, version: str, ome: dict, level: int,
                   missing: str) -> _Level:
    ms = ome["multiscales"][0]
    datasets = ms["datasets"]
    _check_level(level, len(datasets), path)
    axes_meta = ms.get("axes")
    units = None
    if axes_meta and isinstance(axes_meta[0], dict):
        units = {a["name"][0].lower(): a["unit"] for a in axes_meta if a.get("unit")} or None
        axes = "".join(a["name"][0].lower() for a in axes_meta)
        kinds = [a.get("type") for a in axes_meta]
        axes = "".join("c" if k == "channel" else a for a, k in zip(axes, kinds))
    elif axes_meta:
        axes = "".join(str(a)[0].lower() for a in axes_meta)
    else:
        axes = "tczyx"[-group[datasets[0]["path"]].ndim :]
    array = group[datasets[level]["path"]]
    levels = [tuple(group[d["path"]].shape) for d in datasets]
    level_scales = []
    for d in datasets:
        level_scale = None
        for t in d.get("coordinateTransformations", []):
            if t.get("type") == "scale":
                level_scale = tuple(float(s) for s in t["scale"])
        level_scales.append(level_scale)
    scale = level_scales[level]
    channels = None
    if "c" in axes:
        n = array.shape[axes.index("c")]
        labels = [c.get("label") for c in ome.get("omero", {}).get("channels", [])]
        channels = [lab if lab else str(i) for i, lab in enumerate(labels)] if len(labels) == n else [
            str(i) for i in range(n)
        ]
    source = _source_from_zarr_array(array, path, f"ome-zarr {version}", axes, missing)
    source.info.levels = levels
    source.info.channels = channels
    source.info.scale = scale
    source.info.units = units
    source.info.level_scales = level_scales if all(level_scales) else None
    return source


def _default_axes(ndim: int, path) -> str:
    if ndim == 2:
        return "yx"
    if ndim == 3:
        return "zyx"
    raise InputError(
        f"{path} is a {ndim}-D array without axis metadata; store it as OME-Zarr with "
        "axes, or give a 2D (YX) or 3D (ZYX) array"
    )


def _source_from_zarr_array(array, path: Path, fmt: str, axes: str,
                            missing: str = "error") -> _Level:
    check_image_array(array.shape, array.dtype, name=str(path))
    reader = _ZarrChunks(array, str(path), allow_missing=missing == "fill")

    def reopen(chunks):
        suffix = "" if tuple(chunks) == tuple(array.chunks) else \
            "-" + dask.base.tokenize(chunks)[:8]
        return da.from_array(reader, chunks=chunks, inline_array=True, asarray=False,
                             meta=np.empty((0,) * array.ndim, dtype=array.dtype),
                             name=f"zarr-{store.token(path)[:10]}-{reader.token}{suffix}")

    info = ImageInfo(
        path=str(path),
        format=fmt,
        shape=tuple(array.shape),
        dtype=np.dtype(array.dtype),
        chunks=tuple(array.chunks),
        axes=axes,
        levels=[tuple(array.shape)],
    )
    return _Level(lambda: reopen(array.chunks), info, reopen)


class _ZarrChunks:
    """A picklable Zarr array view whose read errors name the chunk and the store.

    A chunk that is not in a local store stops the read too: microscopy
    converters write every chunk, so a missing one means a broken copy. Set
    ``allow_missing`` for arrays
    written without their empty chunks (``missing_chunks="fill"``,
    ``--missing-chunks fill``: then they read as the fill value).
    """

    def __init__(self, array, label: str, allow_missing: bool = False):
        self.array = array
        self.allow_missing = allow_missing
        self.label = label
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        self.chunks = tuple(array.chunks)
        root = getattr(array.store, "root", None)
        local = root is not None and getattr(array, "shards", None) is None
        self._dir = Path(root) / array.path if local else None

    @functools.cached_property
    def token(self) -> str:
        from dask.base import tokenize

        return tokenize(self.label, self.shape, str(self.dtype), self.chunks)[:10]

    def _chunk_ids(self, key):
        ranges = []
        for sl, c, n in zip(key, self.chunks, self.shape):
            if isinstance(sl, slice):
                start, stop, _ = sl.indices(n)
            else:  # an integer index (dask fuses x[..., i] into the read)
                start = int(sl) % n
                stop = start + 1
            ranges.append(range(start // c, -(-stop // c)))
        return list(np.ndindex(*[len(r) for r in ranges])), ranges

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis or k is None for k in key):
            return self.array[key]
        key = key + (slice(None),) * (self.ndim - len(key))
        if self._dir is not None and not self.allow_missing:
            picks, ranges = self._chunk_ids(key)
            for pick in picks:
                cid = tuple(r[k] for r, k in zip(ranges, pick))
                name = self.array.metadata.encode_chunk_key(cid)
                if not (self._dir / name).exists():
                    raise ChunkReadError(
                        f"input chunk {cid} of {self.label} is missing (no {name}); restore the "
                        "store, or read missing chunks as the fill value (`missing_chunks` fill) "
                        "if it was "
                        "written without its empty chunks")
        try:
            return self.array[key]
        except Exception as exc:
            picks, ranges = self._chunk_ids(key)
            cids = [tuple(r[k] for r, k in zip(ranges, p)) for p in picks]
            where = f"chunk {cids[0]}" if len(cids) == 1 else f"chunks {cids[0]}..{cids[-1]}"
            hint = ("the store did not answer: once it does, run again (an output being "
                    "written stays incomplete; finish it with `resume`)") if "://" in self.label \
                else "the store is damaged; restore it from a copy"
            raise ChunkReadError(
                f"cannot read input {where} of {self.label}: {exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''} ({hint})") from None


def _slide_vendor(path: store.Location) -> str | None:
    """The slide format OpenSlide finds in a local file (``aperio``, ``hamamatsu``,
    ``mirax``, ``dicom``...), or None (not a slide, or openslide not installed)."""
    if not path.local:
        return None
    try:
        import openslide
    except ImportError:  # pragma: no cover - a dependency; absent only in odd installs
        return None
    try:
        return openslide.OpenSlide.detect_format(path.name)
    except Exception:  # noqa: BLE001 - not a slide
        return None


@functools.lru_cache(maxsize=16)
def _slide(name: str):
    """One OpenSlide handle per process and slide (opened on a worker's first read)."""
    import openslide

    return openslide.OpenSlide(name)


#: Side of the chunks a slide is read in (OpenSlide reads any region; tiles are 240-1024).
SLIDE_CHUNK = 2048


class _SlideLevel:
    """A picklable view of one level of an OpenSlide slide as (Y, X, RGB) uint8: a path and
    a level; reads go through the worker's own handle. Transparent pixels (no scan there)
    read as white glass."""

    def __init__(self, name: str, level: int, shape, downsample: float):
        self.name, self.level, self.downsample = name, level, float(downsample)
        self.shape = tuple(shape)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        (y0, y1, _), (x0, x1, _) = (k.indices(n) for k, n in zip(key[:2], self.shape))
        if y1 <= y0 or x1 <= x0:
            return np.zeros((max(y1 - y0, 0), max(x1 - x0, 0), 3), np.uint8)[..., key[2]]
        # level-0 coordinates that land on this level's pixel (x0, y0): ceil, so that the
        # division OpenSlide makes does not fall a pixel short
        ds = self.downsample
        origin = (int(np.ceil(x0 * ds - 1e-9)), int(np.ceil(y0 * ds - 1e-9)))
        try:
            rgba = np.asarray(_slide(self.name).read_region(origin, self.level,
                                                            (x1 - x0, y1 - y0)))
        except Exception as exc:
            raise ChunkReadError(f"cannot read the region ({y0}:{y1}, {x0}:{x1}) of level "
                                 f"{self.level} of {self.name}: {type(exc).__name__}: {exc}") \
                from None
        rgb = rgba[..., :3].copy()
        rgb[rgba[..., 3] == 0] = 255
        return rgb[..., key[2]]


def _open_slide(path: store.Location, level: int, vendor: str, approximate: bool) -> _Level:
    import openslide

    try:
        slide = _slide(path.name)
    except openslide.OpenSlideError as exc:
        raise InputError(f"{path} is a {vendor} slide OpenSlide cannot open ({exc}); check "
                         "the file (a copy cut short?)") from None
    dims = slide.level_dimensions
    _check_level(level, len(dims), path)
    ds = float(slide.level_downsamples[level])
    if not approximate and abs(ds - round(ds)) > 1e-6:
        integral = [i for i, d in enumerate(slide.level_downsamples) if abs(d - round(d)) <= 1e-6]
        raise InputError(f"level {level} of {path} is downsampled by {ds:.4f}, not a whole "
                         "number, and OpenSlide resamples such a level when it reads it; "
                         f"segment level {', '.join(map(str, integral))}")
    levels = [(h, w, 3) for w, h in dims]
    shape = levels[level]
    reader = _SlideLevel(path.name, level, shape, ds)
    chunks = da.core.normalize_chunks((SLIDE_CHUNK, SLIDE_CHUNK, 3), shape)
    x = da.from_array(reader, chunks=chunks, meta=np.empty((0, 0, 0), dtype=np.uint8),
                      name=f"slide-{store.token(path)}-{level}", inline_array=True)
    info = ImageInfo(path=str(path), format="", shape=shape, dtype=np.dtype(np.uint8),
                     chunks=tuple(c[0] for c in chunks), axes="yxs", levels=levels,
                     channels=["R", "G", "B"])
    _slide_metadata(info, slide, vendor, level, "openslide")
    return _Level(lambda: x, info)


def _first_tile(source: _Level, path, refused: Exception) -> None:
    """Refuse, before any work, a TIFF that neither OpenSlide nor tifffile can decode."""
    try:
        source.array.blocks[(0,) * source.array.ndim].compute(scheduler="sync")
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path} cannot be read: OpenSlide cannot open it ({refused}) and "
                         f"tifffile cannot decode it ({type(exc).__name__}); convert it "
                         "again") from None


def _slide_metadata(info: ImageInfo, slide, vendor: str, level: int, reader: str) -> None:
    """The format, and microns per pixel (OpenSlide's ``mpp-x``/``mpp-y``) as the scale."""
    import openslide

    info.format = f"{vendor} ({reader})"
    props = slide.properties
    try:
        mpp = (float(props[openslide.PROPERTY_NAME_MPP_Y]),
               float(props[openslide.PROPERTY_NAME_MPP_X]))
    except (KeyError, ValueError):
        return
    spatial = [a for a in info.axes if a in "yx"]
    if spatial != ["y", "x"] or len(info.levels) != len(slide.level_downsamples):
        return
    scales = []
    for shape in info.levels:
        h, w = (shape[info.axes.index(a)] for a in "yx")
        sy, sx = slide.dimensions[1] / h, slide.dimensions[0] / w
        scales.append(tuple(mpp[0] * sy if a == "y" else mpp[1] * sx if a == "x" else 1.0
                            for a in info.axes))
    info.level_scales, info.scale = scales, scales[level]
    info.units = {"y": "micrometer", "x": "micrometer"}


class _TiffLevel:
    """A picklable, lazily opened view of one TIFF level (series 0): a path or a URL."""

    def __init__(self, path: store.Location, level: int, shape, dtype):
        self.path = path
        self.level = level
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        # on object storage one file handle per thread: reads of a worker's threads do not
        # wait for each other behind tifffile's lock
        thread = threading.get_ident() if not self.path.local else 0
        return _tiff_zarr(self.path, self.level, thread)[key]


#: Bytes fetched ahead on each read of a remote TIFF (its tiles are read by byte ranges).
_TIFF_READAHEAD = 2**16


def _binary(path: store.Location):
    """A local path, or a remote file opened for byte-range reads."""
    if path.local:
        return path.name
    return path.fs.open(path.name, "rb", block_size=_TIFF_READAHEAD, cache_type="readahead")


@functools.lru_cache(maxsize=32)
def _tiff_zarr(path: store.Location, level: int, thread: int = 0):
    import tifffile  # imported only for TIFF inputs (it is slow to import)

    store_ = tifffile.imread(_binary(path), aszarr=True, series=0, level=level)
    return zarr.open(store_, mode="r")


def _open_tiff(path: store.Location, level: int) -> _Level:
    import tifffile

    try:
        with tifffile.TiffFile(_binary(path)) as tif:
            series = tif.series[0]
            levels = [tuple(lv.shape) for lv in series.levels]
            _check_level(level, len(levels), path)
            lv = series.levels[level]
            axes = lv.axes.lower().replace("q", "z")
            shape, dtype = tuple(lv.shape), lv.dtype
            fmt = "ome-tiff" if tif.is_ome else ("imagej-tiff" if tif.is_imagej else "tiff")
            if tif.is_svs:
                fmt = "svs (tiff)"
            channels = None
            for name in ("c", "s"):
                if name in axes:
                    channels = [str(i) for i in range(shape[axes.index(name)])]
            pixels = _ome_pixels(tif)
            scale, units = _tiff_scale(tif, pixels, axes, levels[0], shape)
            if pixels is not None and channels is not None and "c" in axes:
                chans = pixels.get("Channel", [])
                chans = chans if isinstance(chans, list) else [chans]
                names = [c.get("Name") if isinstance(c, dict) else None for c in chans]
                if len(names) == len(channels) and all(names):
                    channels = names
    except InputError:
        raise
    except PermissionError as exc:  # a listing answered from the client's cache, then refused
        raise path.denied(exc) from None
    except Exception as exc:  # tifffile raises TiffFileError, IndexError, ... for a bad file
        raise InputError(f"{path} is not a readable TIFF ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'damaged'}); check the "
                         "file or convert it again") from None
    check_image_array(shape, dtype, name=str(path))
    try:
        store_chunks = tuple(_tiff_zarr(path, level).chunks)
    except Exception as exc:
        raise InputError(f"{path} is not a readable TIFF ({exc.__class__.__name__}); check the "
                         "file or convert it again") from None
    chunks = da.core.normalize_chunks(
        "auto", shape, limit=_TIFF_CHUNK_BYTES, dtype=dtype, previous_chunks=store_chunks
    )
    reader = _TiffLevel(path, level, shape, dtype)
    # inline_array: each read task carries the (small, picklable) reader, so
    # every graph that reads this image has the same tasks under the same keys
    x = da.from_array(reader, chunks=chunks, meta=np.empty((0,) * len(shape), dtype=dtype),
                      name=f"tiff-{store.token(path)}-{level}", inline_array=True)
    info = ImageInfo(
        path=str(path),
        format=fmt,
        shape=shape,
        dtype=np.dtype(dtype),
        chunks=tuple(c[0] for c in chunks),
        axes=axes,
        levels=levels,
        channels=channels,
        scale=scale,
        units=units,
    )
    return _Level(lambda: x, info)


#: Length units of OME-TIFF and ImageJ metadata, as OME-Zarr names them.
_UNITS = {"µm": "micrometer", "um": "micrometer", "micron": "micrometer",
          "microns": "micrometer", "micrometer": "micrometer", "nm": "nanometer",
          "nanometer": "nanometer", "mm": "millimeter", "millimeter": "millimeter"}


def _ome_pixels(tif) -> dict | None:
    """The ``Pixels`` element of an OME-TIFF's first image (its OME-XML parsed once), or
    None: not OME, or XML without it."""
    if not tif.is_ome:
        return None
    import tifffile

    try:
        meta = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
        pixels = (meta[0] if isinstance(meta, list) else meta)["Pixels"]
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return pixels if isinstance(pixels, dict) else None


def _tiff_scale(tif, pixels: dict | None, axes: str, full, shape) -> tuple:
    """``(scale, units)`` of a TIFF level from its physical pixel sizes: OME-TIFF's
    ``PhysicalSize{X,Y,Z}`` in ``pixels`` (:func:`_ome_pixels`; micrometres unless a
    unit is given) or an ImageJ hyperstack's X/Y resolution tags and ``spacing``; (None,
    None) where it gives none. A reduced level's sizes grow by its downsampling; axes
    that are not space get 1."""
    sizes, unit = {}, None
    try:
        if pixels is not None:
            for a in "zyx":
                value = pixels.get(f"PhysicalSize{a.upper()}")
                if value is not None:
                    sizes[a] = float(value)
                    unit = unit or pixels.get(f"PhysicalSize{a.upper()}Unit", "µm")
        elif tif.is_imagej:
            page = tif.pages.first
            for a, tag in (("x", "XResolution"), ("y", "YResolution")):
                t = page.tags.get(tag)
                if t is not None:
                    num, den = t.value
                    if num and (num, den) != (1, 1):
                        sizes[a] = den / num  # pixels per unit
            meta = tif.imagej_metadata or {}
            if "spacing" in meta and "z" in axes:
                sizes["z"] = float(meta["spacing"])
            if sizes:
                unit = str(meta.get("unit", "")).replace("\\u00B5", "µ") or None
    except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError):
        return None, None
    sizes = {a: v for a, v in sizes.items() if a in axes and v > 0 and np.isfinite(v)}
    if not sizes:
        return None, None
    scale = tuple(sizes.get(a, 1.0) * (full[i] / shape[i] if a in "yx" else 1.0)
                  if a in "zyx" else 1.0 for i, a in enumerate(axes))
    name = _UNITS.get((unit or "").strip().lower().replace("μ", "µ"))
    return scale, ({a: name for a in sizes} if name else None)


def series_paths(input) -> list | None:
    """The files of a time series given as a list of paths, or as a glob pattern (local
    files, sorted by name) that names no file itself; None for anything else."""
    if isinstance(input, (list, tuple)):
        if not input:
            raise InputError("the series of time points is empty; give one path per time point")
        return list(input)
    if not isinstance(input, (str, Path)) or "://" in str(input) or Path(input).exists():
        return None
    text = str(input)
    if not any(c in text for c in "*?["):
        return None
    paths = sorted(glob.glob(text))
    if not paths:
        raise InputError(f"no file matches {text}; check the pattern (one file per time point)")
    return paths


def _open_source(path, level: int, missing: str = "error", approximate: bool = False) -> _Level:
    """One image's level, or a series of files stacked on a new ``t`` axis (every one
    of the first's shape and dtype, else refused naming the first that differs)."""
    paths = series_paths(path)
    if paths is None:
        return _open_level(path, level, missing, approximate)
    sources = [_open_level(p, level, missing) for p in paths]
    first = sources[0].info
    for p, src in zip(paths, sources):
        if src.info.shape != first.shape or src.info.dtype != first.dtype or \
                src.info.axes != first.axes:
            raise InputError(
                f"the time points of the series differ: {paths[0]} is {first.shape} "
                f"{first.dtype} ({first.axes}), {p} is {src.info.shape} {src.info.dtype} "
                f"({src.info.axes}); give time points of one shape")
    if "t" in first.axes:
        raise InputError(f"{paths[0]} is itself a time series; give one image per file, or "
                         "that store alone with `time`")
    n = len(sources)
    info = dataclasses.replace(
        first, path=f"{paths[0]} (+{n - 1} more time points)" if n > 1 else str(paths[0]),
        format=f"series of {first.format}", shape=(n,) + tuple(first.shape),
        chunks=(1,) + tuple(first.chunks), axes="t" + first.axes,
        levels=[(n,) + tuple(shape) for shape in first.levels],
        scale=None if first.scale is None else (1.0,) + tuple(first.scale),
        level_scales=None)
    return _Level(lambda: da.stack([src.array for src in sources]), info)


# --------------------------------------------------------------------------- public


def inspect_image(path, *, level: int = 0, storage_options: dict | None = None) -> ImageInfo:
    """Shape, dtype, chunks, levels, axes and channels of a stored image (path or URL)."""
    with store.storage_options(storage_options):
        return _open_level(path, level).info


def time_points(spec, n: int, path) -> list[int] | int:
    """The time points ``spec`` picks of ``n``: ``"all"``, one index ``T`` (an int: the image
    at that time, without a ``t`` axis) or ``(A, B)`` (Python's half-open ``A:B``, either end
    None), each refused when out of range."""
    if spec == "all":
        return list(range(n))
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        if not 0 <= spec < n:
            raise InputError(f"time point {spec} does not exist in {path}: it has {n} time "
                             f"point{'s' if n != 1 else ''} (0..{n - 1})")
        return int(spec)
    start, stop = spec
    for end in (start, stop):
        if end is not None and not 0 <= end <= n:
            raise InputError(f"time points {time_text(spec)} are outside {path}'s {n} time "
                             f"points (0..{n - 1}); pick A:B with 0 <= A < B <= {n}")
    picked = list(range(n))[start:stop]
    if not picked:
        raise InputError(f"time points {time_text(spec)} select none of {path}'s {n}; pick "
                         f"A:B with A < B")
    return picked


def _pick_time(x: da.Array, axes: str, path, time) -> tuple[da.Array, str]:
    """The time points ``time`` picks, the ``t`` axis first (dropped for one index); with
    ``time`` None a ``t`` of length one is dropped and a longer one refused."""
    if "t" not in axes:
        if time is not None:
            raise InputError(f"`time` picks time points, but {path} has no t axis (its axes "
                             f"are {axes}); drop `time`")
        return x, axes
    t = axes.index("t")
    n = x.shape[t]
    if time is None:
        if n != 1:
            raise InputError(f"{path} is a time series ({n} time points); pick them with "
                             "`time` (all, T or A:B)")
        time = 0
    picked = time_points(time, n, path)
    if isinstance(picked, int):
        return x[(slice(None),) * t + (picked,)], axes.replace("t", "")
    if picked != list(range(n)):
        x = x[(slice(None),) * t + (np.asarray(picked),)]
    return (da.moveaxis(x, t, 0) if t else x), "t" + axes.replace("t", "")


def _select(x: da.Array, info: ImageInfo, channel, rgb: bool = False,
            time=None) -> tuple[da.Array, str]:
    """The 2D/3D image of one channel (and time point one, or the time points ``time``
    picks: then the ``t`` axis comes first), or with ``rgb`` the colour image with its
    three channels where they are stored; ``axes`` names the axes kept."""
    x, axes = _pick_time(x, info.axes, info.path, time)
    series = axes.startswith("t")
    c = _channel_axis(axes, info.path)
    if rgb:
        n = x.shape[c] if c is not None else 1
        if n != 3 or channel is not None:
            what = ("RGBA (4 channels)" if n == 4 else f"{n} channel" + ("s" if n != 1 else ""))
            raise InputError(
                f"`stain` needs an RGB image (3 channels) and takes all three; {info.path} is "
                f"{what}" if channel is None else
                "`stain` uses the three colour channels: drop `channel`")
        if x.ndim - series not in (3, 4):
            raise InputError(f"{info.path} is {x.ndim - 1 - series}-D ({axes}) with its colours; "
                             "chunkseg segments 2D (YX) and 3D (ZYX) images")
        return x, axes  # the colours stay where they are stored (axes names them)
    if c is not None:
        n = x.shape[c]
        names = _channel_names(info, n)
        if channel is None:
            if n != 1:
                raise InputError(
                    f"{info.path} has {n} channels ({_listing(names)}); pick one with `channel`"
                )
            index = 0
        else:
            index = _channel_index(channel, names, info.path)
        x = x[(slice(None),) * c + (index,)]
        axes = axes[:c] + axes[c + 1 :]
    elif channel is not None and channel != 0 and channel != "0":
        raise InputError(f"channel {channel} does not exist in {info.path}: it has no channel axis")
    if x.ndim - series not in (2, 3):
        raise InputError(
            f"{info.path} is {x.ndim - series}-D ({axes}) after channel selection; chunkseg "
            "segments 2D (YX) and 3D (ZYX) images"
        )
    return x, axes


def _channel_axis(axes: str, path) -> int | None:
    """Where the one channel axis is (None: there is none); two are refused."""
    found = [i for i, a in enumerate(axes) if a in _CHANNEL_AXES]
    if len(found) > 1:
        raise InputError(f"{path} has two channel axes ({axes}); split the channels first")
    return found[0] if found else None


def _channel_names(info: ImageInfo, n: int) -> list[str]:
    return list(info.channels) if info.channels and len(info.channels) == n else \
        [str(i) for i in range(n)]


def _listing(names) -> str:
    return ", ".join(f"{i}={name}" for i, name in enumerate(names))


def _channel_index(channel, names: list, path) -> int:
    """The index of ``channel`` (a name, or an index as an int or a string of digits)."""
    if isinstance(channel, str) and not channel.lstrip("-").isdigit():
        if channel not in names:
            raise InputError(f"channel {channel!r} does not exist in {path}; channels: "
                             f"{_listing(names)}")
        return names.index(channel)
    index = int(channel)
    if not 0 <= index < len(names):
        raise InputError(f"channel {channel} does not exist in {path}; channels: "
                         f"{_listing(names)}")
    return index


def _whole_channels(source: _Level) -> da.Array:
    """The level with each block whole along the channels, read in one task where the
    source can (Zarr): not a task per stored chunk and a concatenation of their pieces,
    which may sit on other workers. Otherwise (or without a ``c`` axis) as opened."""
    info = source.info
    if source.reopen is None or "c" not in info.axes:
        return source.array
    chunks = list(info.chunks)
    chunks[info.axes.index("c")] = info.shape[info.axes.index("c")]
    return source.reopen(tuple(chunks))


def channels_last(path, *, channels, level: int = 0, time=None,
                  missing_chunks: str = "error") -> tuple[da.Array, list[str]]:
    """The image with the ``channels`` picked (``"all"`` or a list of names or indices) on
    its last axis, every other channel axis kept as in :func:`read_image` (``time``: the
    ``t`` axis first); and the picked channels' names. For tables of every channel."""
    source = _open_source(path, level, missing_chunks)
    info = source.info
    x, axes = _pick_time(source.array, info.axes, info.path, time)
    c = _channel_axis(axes, info.path)
    if c is None or x.shape[c] == 1:
        raise InputError(f"`measure_channels` measures several channels; {info.path} has one "
                         "(drop `measure_channels`: the table measures the segmented image)")
    names = _channel_names(info, x.shape[c])
    if channels == "all":
        picked = list(range(len(names)))
    else:
        picked = [_channel_index(want, names, info.path) for want in channels]
        if len(set(picked)) != len(picked):
            raise InputError(f"`measure_channels` names a channel twice: {', '.join(map(str, channels))}")
    if 2 * len(picked) > len(names):
        x, axes = _pick_time(_whole_channels(source), info.axes, info.path, time)
    if picked != list(range(len(names))):
        x = x[(slice(None),) * c + (np.asarray(picked),)]
    # whole along the channels as stored, then moved last: each block a view (no copy)
    x = da.moveaxis(x.rechunk({c: -1}), c, -1)
    return x, [names[i] for i in picked]


def open_image(path, *, level: int = 0, channel: int | str | None = None,
               missing_chunks: str = "error", storage_options: dict | None = None) -> da.Array:
    """Open an image lazily as a dask array chunked like its storage.

    Parameters
    ----------
    path : str, Path, numpy array or dask array
        A Zarr array or group (v2 or v3), an OME-Zarr image (NGFF 0.4/0.5), or
        a TIFF (plain, OME, ImageJ, tiled, pyramidal). Arrays pass through.
    level : int, optional
        Resolution level of a multiscale image (0 is full resolution).
    channel : int or str, optional
        Index or name of the channel, needed when the image has a channel axis
        (OME ``c``, TIFF ``C``, or RGB samples ``S``) of more than one.
    missing_chunks : "error" or "fill"
        A Zarr chunk absent from a local store stops the read with an error
        naming it (default), or reads as the fill value (arrays written
        without their empty chunks). On object storage a missing chunk reads
        as the fill value.
    storage_options : dict, optional
        For URLs (``s3://``, ``gs://``, ``az://``, ``https://``): options of
        the fsspec filesystem (credentials, ``endpoint_url``, ``anon``).

    Returns
    -------
    image : (M, N[, P]) dask array
        Nothing is read until it is computed.
    """
    if isinstance(path, (np.ndarray, da.Array)):
        x = path if isinstance(path, da.Array) else da.from_array(path, chunks="auto")
        check_image_array(x.shape, x.dtype)
        if x.ndim not in (2, 3):
            raise InputError(f"image is {x.ndim}-D; chunkseg segments 2D and 3D images")
        return x
    return read_image(path, level=level, channel=channel, missing_chunks=missing_chunks,
                      storage_options=storage_options).array


def read_image(path, *, level: int = 0, channel=None, missing_chunks: str = "error",
               storage_options: dict | None = None, rgb: bool = False,
               approximate: bool = False, time=None) -> OpenedImage:
    """Like :func:`open_image`, also returning the metadata and the kept axes; with ``rgb``
    the colour image for a stain. ``approximate``: a slide level OpenSlide resamples is
    read too (for estimates on a low-resolution level: tissue, stain vectors). ``time``:
    the time points of a series (see :func:`time_points`; the ``t`` axis comes first)."""
    with store.storage_options(storage_options):
        source = _open_source(path, level, missing_chunks, approximate)
    x, axes = _select(_whole_channels(source) if rgb else source.array, source.info, channel,
                      rgb=rgb, time=time)
    return OpenedImage(x, source.info, axes)


def open_labels(path, *, allow_incomplete: bool = False, storage_options: dict | None = None):
    """Open a label output of chunkseg (a path or URL) as a lazy dask array.

    Refuses an output whose run did not finish (some chunks may be missing)
    unless ``allow_incomplete``.
    """
    with store.storage_options(storage_options):
        return _open_labels(path, allow_incomplete)


def _open_labels(path, allow_incomplete: bool):
    path = store.location(path)
    if not path.exists():
        raise store.missing(path)
    return _labels_of(path, _zarr_node(path, "a Zarr label store"), allow_incomplete)


def _labels_of(path: store.Location, node, allow_incomplete: bool):
    """The level-0 labels of an opened label output (group or array), checked complete."""
    if isinstance(node, zarr.Group):
        if LABELS_ARRAY not in node:
            raise InputError(f"{path} holds no label array '{LABELS_ARRAY}'")
        group, array = node, node[LABELS_ARRAY]
    else:
        group, array = node, node
    if not allow_incomplete and not is_complete(group):
        raise InputError(
            f"{path} is incomplete: the run that wrote it did not finish. Finish it with "
            "`resume` (or pass allow_incomplete=True to read what is there)"
        )
    return da.from_zarr(array)


def open_markers(path, *, level: int = 0, storage_options: dict | None = None):
    """Marker labels (nuclei) for a cell run: a chunkseg label output, refused while it is
    incomplete, or any integer image (a Zarr array, a TIFF, OME-Zarr labels of another tool)."""
    with store.storage_options(storage_options):
        loc = store.location(path)
        if loc.exists() and loc.is_dir():
            node = _zarr_node(loc, "a Zarr label store or image")
            if COMPLETE_KEY in node.attrs:
                return _labels_of(loc, node, False)
        return open_image(path, level=level)


def label_levels(path) -> list:
    """The pyramid levels of a label output (lazily, as dask arrays), level 0 first."""
    return [da.from_zarr(a) for a in label_arrays(path, mode="r")]
