"""The only module that touches storage: open images, write arrays, metadata.

Reads Zarr v2/v3 arrays and groups, OME-Zarr (NGFF 0.4 and 0.5) multiscale
images and TIFF files (plain, OME, ImageJ, tiled and pyramidal such as SVS),
always lazily: the result is a dask array chunked like the storage, and no
pixel is read until a task needs it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import tifffile
import zarr

from ._validate import InputError, check_image_array

__all__ = [
    "ImageInfo",
    "inspect_image",
    "is_complete",
    "mark_complete",
    "open_image",
    "open_labels",
    "create_labels",
    "to_zarr",
]

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
class _Source:
    """One resolution level of an image, before channel selection."""

    array: da.Array
    info: ImageInfo


def _missing(path: Path) -> InputError:
    return InputError(f"input not found: {path} (check the path)")


def _is_tiff(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) in _TIFF_MAGIC
    except OSError:
        return False


def _open_source(path, level: int) -> _Source:
    path = Path(path)
    if not path.exists():
        raise _missing(path)
    if path.is_dir():
        return _open_zarr(path, level)
    if _is_tiff(path):
        return _open_tiff(path, level)
    raise InputError(
        f"{path} is not an image chunkseg can read (Zarr, OME-Zarr or TIFF); "
        "convert it, e.g. with tifffile or bioformats2raw"
    )


def _check_level(level: int, nlevels: int, path) -> None:
    if not isinstance(level, (int, np.integer)) or not 0 <= level < nlevels:
        raise InputError(
            f"level {level} does not exist in {path}: it has {nlevels} level"
            f"{'s' if nlevels > 1 else ''} (0..{nlevels - 1})"
        )


def _open_zarr(path: Path, level: int) -> _Source:
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:  # zarr raises several types for "not a store"
        raise InputError(f"{path} is not a Zarr array or group ({exc.__class__.__name__})") from None
    fmt = f"zarr-v{node.metadata.zarr_format}"
    if isinstance(node, zarr.Array):
        _check_level(level, 1, path)
        return _source_from_zarr_array(node, path, fmt, _default_axes(node.ndim, path))
    attrs = node.attrs.asdict()
    ome = attrs.get("ome", attrs)
    if "multiscales" in ome:
        return _open_ome_zarr(node, path, ome, level)
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
    return _source_from_zarr_array(array, path, fmt, _default_axes(array.ndim, path))


def _open_ome_zarr(group, path: Path, ome: dict, level: int) -> _Source:
    ms = ome["multiscales"][0]
    version = ome.get("version") or ms.get("version") or "0.4"
    datasets = ms["datasets"]
    _check_level(level, len(datasets), path)
    axes_meta = ms.get("axes")
    if axes_meta and isinstance(axes_meta[0], dict):
        axes = "".join(a["name"][0].lower() for a in axes_meta)
        kinds = [a.get("type") for a in axes_meta]
        axes = "".join("c" if k == "channel" else a for a, k in zip(axes, kinds))
    elif axes_meta:
        axes = "".join(str(a)[0].lower() for a in axes_meta)
    else:
        axes = "tczyx"[-group[datasets[0]["path"]].ndim :]
    array = group[datasets[level]["path"]]
    levels = [tuple(group[d["path"]].shape) for d in datasets]
    scale = None
    for t in datasets[level].get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = tuple(float(s) for s in t["scale"])
    channels = None
    if "c" in axes:
        n = array.shape[axes.index("c")]
        labels = [c.get("label") for c in ome.get("omero", attrs_omero(group)).get("channels", [])]
        channels = [lab if lab else str(i) for i, lab in enumerate(labels)] if len(labels) == n else [
            str(i) for i in range(n)
        ]
    source = _source_from_zarr_array(array, path, f"ome-zarr {version}", axes)
    source.info.levels = levels
    source.info.channels = channels
    source.info.scale = scale
    return source


def attrs_omero(group) -> dict:
    return group.attrs.asdict().get("omero", {})


def _default_axes(ndim: int, path) -> str:
    if ndim == 2:
        return "yx"
    if ndim == 3:
        return "zyx"
    raise InputError(
        f"{path} is a {ndim}-D array without axis metadata; store it as OME-Zarr with "
        "axes, or give a 2D (YX) or 3D (ZYX) array"
    )


def _source_from_zarr_array(array, path: Path, fmt: str, axes: str) -> _Source:
    check_image_array(array.shape, array.dtype, name=str(path))
    x = da.from_zarr(array)
    info = ImageInfo(
        path=str(path),
        format=fmt,
        shape=tuple(array.shape),
        dtype=np.dtype(array.dtype),
        chunks=tuple(array.chunks),
        axes=axes,
        levels=[tuple(array.shape)],
    )
    return _Source(x, info)


class _TiffLevel:
    """A picklable, lazily opened view of one TIFF level (series 0)."""

    def __init__(self, path: str, level: int, shape, dtype):
        self.path = path
        self.level = level
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        return _tiff_zarr(self.path, self.level)[key]


@functools.lru_cache(maxsize=32)
def _tiff_zarr(path: str, level: int):
    store = tifffile.imread(path, aszarr=True, series=0, level=level)
    return zarr.open(store, mode="r")


def _open_tiff(path: Path, level: int) -> _Source:
    try:
        with tifffile.TiffFile(path) as tif:
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
            if tif.is_ome and channels is not None and "c" in axes:
                try:
                    meta = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
                    meta = meta[0] if isinstance(meta, list) else meta
                    chans = meta["Pixels"].get("Channel", [])
                    chans = chans if isinstance(chans, list) else [chans]
                    names = [c.get("Name") for c in chans]
                    if len(names) == len(channels) and all(names):
                        channels = names
                except (KeyError, TypeError, ValueError):
                    pass
    except tifffile.TiffFileError as exc:
        raise InputError(f"{path} is not a readable TIFF ({exc})") from None
    check_image_array(shape, dtype, name=str(path))
    store_chunks = tuple(_tiff_zarr(str(path), level).chunks)
    chunks = da.core.normalize_chunks(
        "auto", shape, limit=_TIFF_CHUNK_BYTES, dtype=dtype, previous_chunks=store_chunks
    )
    reader = _TiffLevel(str(path), level, shape, dtype)
    # inline_array: each read task carries the (small, picklable) reader, so
    # every graph that reads this image has the same tasks under the same keys
    x = da.from_array(reader, chunks=chunks, meta=np.empty((0,) * len(shape), dtype=dtype),
                      name=f"tiff-{tokenize_path(path)}-{level}", inline_array=True)
    info = ImageInfo(
        path=str(path),
        format=fmt,
        shape=shape,
        dtype=np.dtype(dtype),
        chunks=tuple(c[0] for c in chunks),
        axes=axes,
        levels=levels,
        channels=channels,
    )
    return _Source(x, info)


def tokenize_path(path) -> str:
    """A token for a file that changes when the file changes."""
    st = os.stat(path)
    from dask.base import tokenize

    return tokenize(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


# --------------------------------------------------------------------------- public


def inspect_image(path, *, level: int = 0) -> ImageInfo:
    """Shape, dtype, chunks, levels, axes and channels of an image on disk."""
    return _open_source(path, level).info


def _select(x: da.Array, info: ImageInfo, channel) -> tuple[da.Array, str]:
    axes = info.axes
    # a time axis of length one is dropped; longer ones need a choice we do not offer
    if "t" in axes:
        t = axes.index("t")
        if x.shape[t] != 1:
            raise InputError(
                f"{info.path} is a time series ({x.shape[t]} time points); chunkseg "
                "segments one 2D/3D image: write the time point you want to its own store"
            )
        x = x[(slice(None),) * t + (0,)]
        axes = axes.replace("t", "")
    chan_axes = [i for i, a in enumerate(axes) if a in _CHANNEL_AXES]
    if len(chan_axes) > 1:
        raise InputError(f"{info.path} has two channel axes ({axes}); split the channels first")
    if chan_axes:
        c = chan_axes[0]
        n = x.shape[c]
        names = info.channels or [str(i) for i in range(n)]
        listing = ", ".join(f"{i}={name}" for i, name in enumerate(names))
        if channel is None:
            if n != 1:
                raise InputError(
                    f"{info.path} has {n} channels ({listing}); pick one with "
                    "channel=... (--channel)"
                )
            index = 0
        elif isinstance(channel, str) and not channel.lstrip("-").isdigit():
            if channel not in names:
                raise InputError(f"channel {channel!r} does not exist in {info.path}; channels: {listing}")
            index = names.index(channel)
        else:
            index = int(channel)
            if not 0 <= index < n:
                raise InputError(f"channel {channel} does not exist in {info.path}; channels: {listing}")
        x = x[(slice(None),) * c + (index,)]
        axes = axes[:c] + axes[c + 1 :]
    elif channel is not None and channel != 0 and channel != "0":
        raise InputError(f"channel {channel} does not exist in {info.path}: it has no channel axis")
    if x.ndim not in (2, 3):
        raise InputError(
            f"{info.path} is {x.ndim}-D ({axes}) after channel selection; chunkseg "
            "segments 2D (YX) and 3D (ZYX) images"
        )
    return x, axes


def open_image(path, *, level: int = 0, channel: int | str | None = None) -> da.Array:
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
    source = _open_source(path, level)
    x, _ = _select(source.array, source.info, channel)
    return x


def open_image_with_info(path, *, level: int = 0, channel=None) -> tuple[da.Array, ImageInfo, str]:
    """Like :func:`open_image`, also returning the metadata and the kept axes."""
    source = _open_source(path, level)
    x, axes = _select(source.array, source.info, channel)
    return x, source.info, axes


# --------------------------------------------------------------------------- writing

_COMPLETE_KEY = "chunkseg"


def prepare_output(path, *, overwrite: bool) -> Path:
    """Refuse an existing output unless ``overwrite``; then remove it."""
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise InputError(f"output {path} exists; pass overwrite=True (--overwrite) to replace it")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return path


def mark_complete(node, complete: bool, **extra: Any) -> None:
    """Record in the store's attributes whether every chunk has been written."""
    meta = dict(node.attrs.get(_COMPLETE_KEY, {}))
    meta.update(extra)
    meta["complete"] = bool(complete)
    node.attrs[_COMPLETE_KEY] = meta


def is_complete(node) -> bool:
    return bool(node.attrs.get(_COMPLETE_KEY, {}).get("complete", False))


def _regular_chunks(x: da.Array) -> tuple[int, ...]:
    return tuple(max(c) for c in x.chunks)


def to_zarr(array, path, *, chunks=None, overwrite: bool = False, compute: bool = True):
    """Write an array to a new Zarr (v3) array at ``path``, chunk by chunk.

    The array is marked incomplete in its attributes until every chunk is
    written, so an interrupted write never looks finished.

    Parameters
    ----------
    array : numpy or dask array
    path : str or Path
    chunks : int or tuple, optional
        Storage chunks; default: the dask array's (largest) chunks.
    overwrite : bool
        Replace an existing store at ``path``.
    compute : bool
        With False, return the delayed write instead of running it.

    Returns
    -------
    zarr.Array (after the write), or a dask delayed when ``compute=False``
    """
    x = array if isinstance(array, da.Array) else da.from_array(np.asarray(array), chunks="auto")
    check_image_array(x.shape, x.dtype, name="array")
    if chunks is None:
        chunks = _regular_chunks(x)
    chunks = da.core.normalize_chunks(chunks, x.shape, dtype=x.dtype)
    chunks = tuple(c[0] for c in chunks)
    path = prepare_output(path, overwrite=overwrite)
    z = zarr.create_array(store=str(path), shape=x.shape, chunks=chunks, dtype=x.dtype,
                          fill_value=0)
    mark_complete(z, False)
    x = x.rechunk(chunks)
    writes = da.store(x, z, lock=False, compute=False, return_stored=False)
    if not compute:
        return writes
    writes.compute()
    mark_complete(z, True)
    return z


# --------------------------------------------------------------------------- labels

#: Name of the full-resolution label array inside a label group (OME-Zarr layout).
LABELS_ARRAY = "0"


def check_output_path(output, inputs=()) -> Path:
    """Refuse an output that lies inside (or is) one of the inputs."""
    out = Path(output).resolve()
    for inp in inputs:
        if inp is None or not isinstance(inp, (str, os.PathLike)):
            continue
        src = Path(inp).resolve()
        if out == src or src in out.parents:
            raise InputError(
                f"output {output} lies inside the input {inp}; write it elsewhere "
                "(the input is never modified)"
            )
    return Path(output)


def create_labels(path, *, shape, chunks, dtype, axes: str, scale=None, attrs=None):
    """Create an empty label group (marked incomplete) and return its array.

    Layout: a Zarr v3 group with the labels in array ``"0"`` and OME-Zarr 0.5
    ``multiscales`` metadata naming it, so that viewers and the OME-Zarr
    outputs can build on it.
    """
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    mark_complete(group, False, **(attrs or {}))
    scale = list(scale) if scale is not None else [1.0] * len(shape)
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [{
            "name": "labels",
            "axes": [{"name": a, "type": "space"} for a in axes],
            "datasets": [{"path": LABELS_ARRAY,
                          "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
        }],
        "image-label": {"version": "0.5"},
    }
    return group.create_array(LABELS_ARRAY, shape=shape, chunks=chunks, dtype=dtype, fill_value=0)


def open_labels(path, *, allow_incomplete: bool = False):
    """Open a label output of chunkseg as a lazy dask array.

    Refuses an output whose run did not finish (some chunks may be missing)
    unless ``allow_incomplete``.
    """
    path = Path(path)
    if not path.exists():
        raise _missing(path)
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:
        raise InputError(f"{path} is not a Zarr label store ({exc.__class__.__name__})") from None
    if isinstance(node, zarr.Group):
        if LABELS_ARRAY not in node:
            raise InputError(f"{path} holds no label array '{LABELS_ARRAY}'")
        group, array = node, node[LABELS_ARRAY]
    else:
        group, array = node, node
    if not allow_incomplete and not is_complete(group):
        raise InputError(
            f"{path} is incomplete: the run that wrote it did not finish. Rerun it (or "
            "pass allow_incomplete=True to read what is there)"
        )
    return da.from_zarr(array)
