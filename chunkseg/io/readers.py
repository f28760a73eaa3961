"""The only module that touches storage: open images, write arrays, metadata.

Reads Zarr v2/v3 arrays and groups, OME-Zarr (NGFF 0.4 and 0.5) multiscale
images and TIFF files (plain, OME, ImageJ, tiled and pyramidal such as SVS),
always lazily: the result is a dask array chunked like the storage, and no
pixel is read until a task needs it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr

from ._validate import ChunkReadError, InputError, check_image_array

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


def _open_source(path, level: int, missing: str = "error") -> _Source:
    path = Path(path)
    if not path.exists():
        raise _missing(path)
    if path.is_dir():
        if missing not in ("error", "fill"):
            raise InputError(f"--missing-chunks must be error or fill, got {missing!r}")
        return _open_zarr(path, level, missing)
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


def _open_zarr(path: Path, level: int, missing: str) -> _Source:
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:  # zarr raises several types for "not a store"
        raise InputError(f"{path} is not a Zarr array or group ({exc.__class__.__name__})") from None
    fmt = f"zarr-v{node.metadata.zarr_format}"
    if isinstance(node, zarr.Array):
        _check_level(level, 1, path)
        return _source_from_zarr_array(node, path, fmt, _default_axes(node.ndim, path), missing)
    attrs = node.attrs.asdict()
    ome = attrs.get("ome", attrs)
    if "multiscales" in ome:
        return _open_ome_zarr(node, path, ome, level, missing)
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


def _open_ome_zarr(group, path: Path, ome: dict, level: int, missing: str) -> _Source:
    ms = ome["multiscales"][0]
    version = ome.get("version") or ms.get("version") or "0.4"
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
        labels = [c.get("label") for c in ome.get("omero", attrs_omero(group)).get("channels", [])]
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


def _source_from_zarr_array(array, path: Path, fmt: str, axes: str, missing: str = "error") -> _Source:
    check_image_array(array.shape, array.dtype, name=str(path))
    reader = _ZarrChunks(array, str(path), allow_missing=missing == "fill")
    x = da.from_array(reader, chunks=array.chunks, inline_array=True, asarray=False,
                      meta=np.empty((0,) * array.ndim, dtype=array.dtype),
                      name=f"zarr-{tokenize_path(path)[:10]}-{reader.token}")
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
        from dask.base import tokenize

        self.token = tokenize(self.label, self.shape, str(self.dtype), self.chunks)[:10]

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
                        "store, or pass --missing-chunks fill (missing_chunks='fill') if it was "
                        "written without its empty chunks")
        try:
            return self.array[key]
        except Exception as exc:
            picks, ranges = self._chunk_ids(key)
            cids = [tuple(r[k] for r, k in zip(ranges, p)) for p in picks]
            where = f"chunk {cids[0]}" if len(cids) == 1 else f"chunks {cids[0]}..{cids[-1]}"
            raise ChunkReadError(
                f"cannot read input {where} of {self.label}: {exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''} (the store is damaged; "
                "restore it from a copy)") from None


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
    import tifffile  # imported only for TIFF inputs (it is slow to import)

    store = tifffile.imread(path, aszarr=True, series=0, level=level)
    return zarr.open(store, mode="r")


def _open_tiff(path: Path, level: int) -> _Source:
    import tifffile

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


def open_image(path, *, level: int = 0, channel: int | str | None = None,
               missing_chunks: str = "error") -> da.Array:
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
        without their empty chunks).

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
    source = _open_source(path, level, missing_chunks)
    x, _ = _select(source.array, source.info, channel)
    return x


def open_image_with_info(path, *, level: int = 0, channel=None,
                         missing_chunks: str = "error") -> tuple[da.Array, ImageInfo, str]:
    """Like :func:`open_image`, also returning the metadata and the kept axes."""
    source = _open_source(path, level, missing_chunks)
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
                          config={"write_empty_chunks": True},
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


def pyramid_shapes(shape, chunks) -> list[tuple[int, ...]]:
    """Shapes of the label pyramid: Y and X halved until a level fits in one chunk."""
    shapes = [tuple(shape)]
    while (shapes[-1][-1] > chunks[-1] or shapes[-1][-2] > chunks[-2]) and len(shapes) < 12:
        prev = shapes[-1]
        shapes.append(prev[:-2] + tuple((n + 1) // 2 for n in prev[-2:]))
    return shapes


def check_pyramid(shapes) -> None:
    """Refuse, before any work, a pyramid chunkseg cannot match (non-integer factors)."""
    _level_steps(shapes)


def _level_steps(shapes) -> list[tuple[int, ...]]:
    """Integer strides from each level to the next; refuses other pyramids."""
    steps = []
    for above, below in zip(shapes[:-1], shapes[1:]):
        step = tuple(max(1, round(a / b)) for a, b in zip(above, below))
        if any(-(-a // s) != b for a, b, s in zip(above, below, step)):
            raise InputError(f"pyramid level of shape {below} is not an integer downsampling of "
                             f"{above}; chunkseg's label pyramids need integer factors")
        steps.append(step)
    return steps


def _multiscales(axes: str, scales, units, version: str) -> list[dict]:
    datasets = []
    for level, s in enumerate(scales):
        datasets.append({"path": str(level),
                         "coordinateTransformations": [{"type": "scale", "scale": s}]})
    axis_meta = []
    for a in axes:
        entry = {"name": a, "type": "space"}
        if units and units.get(a):
            entry["unit"] = units[a]
        axis_meta.append(entry)
    ms = {"name": "labels", "axes": axis_meta, "datasets": datasets,
          "metadata": {"method": "nearest (every k-th pixel of the level above)"}}
    if version == "0.4":
        ms["version"] = "0.4"
    return [ms]


def create_labels(path, *, shape, chunks, dtype, axes: str, scale=None, units=None, attrs=None,
                  version: str = "0.5", source_image: str | None = None, pyramid: bool = True,
                  levels=None):
    """Create an empty OME-Zarr label image (marked incomplete) and return its level-0 array.

    Layout: an OME-Zarr image-label group (NGFF 0.5 on Zarr v3, or 0.4 on
    Zarr v2) whose ``multiscales`` list level ``"0"`` (the labels) and the
    downsampled levels ``"1"``, ``"2"``... that :func:`write_pyramid` fills:
    Y and X halved per level, or ``levels`` = [(shape, scale), ...] to match
    an image's own pyramid (integer factors).
    """
    fmt = 3 if version == "0.5" else 2
    scale = [float(v) for v in scale] if scale is not None else [1.0] * len(shape)
    if levels is None:
        shapes = pyramid_shapes(shape, chunks) if pyramid else [tuple(shape)]
        scales = [scale[:-2] + [v * 2**lv for v in scale[-2:]] for lv in range(len(shapes))]
    else:
        shapes = [tuple(s) for s, _ in levels]
        scales = [list(sc) for _, sc in levels]
    _level_steps(shapes)
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    mark_complete(group, False, **(attrs or {}))
    multiscales = _multiscales(axes, scales, units, version)
    label_meta = {"version": version} if version == "0.4" else {}
    if source_image is not None:
        label_meta["source"] = {"image": source_image}
    if version == "0.5":
        group.attrs["ome"] = {"version": "0.5", "multiscales": multiscales, "image-label": label_meta}
    else:
        group.attrs["multiscales"] = multiscales
        group.attrs["image-label"] = label_meta
    arrays = []
    for level, level_shape in enumerate(shapes):
        extra = {"dimension_names": list(axes)} if fmt == 3 else {}
        # every chunk is written, empty ones too: a label output read as an input
        # (open_image) must not look as if chunks were lost
        arrays.append(group.create_array(str(level), shape=level_shape, chunks=chunks, dtype=dtype,
                                         config={"write_empty_chunks": True},
                                         fill_value=0, **extra))
    return arrays[0]


def write_pyramid(path) -> int:
    """Fill levels 1.. of a label group from the level above (nearest: every k-th pixel).

    Each level is read chunk by chunk from the one written before it, so the
    pyramid costs about a third of a pass over the labels. Returns the
    number of levels written.
    """
    group = zarr.open_group(str(path), mode="r+")
    nlevels = 1
    while str(nlevels) in group:
        nlevels += 1
    shapes = [group[str(lv)].shape for lv in range(nlevels)]
    for level, step in enumerate(_level_steps(shapes), start=1):
        above = da.from_zarr(group[str(level - 1)])
        target = group[str(level)]
        down = above[tuple(slice(None, None, s) for s in step)].rechunk(target.chunks)
        da.store(down, target, lock=False)
    return nlevels - 1


def labels_target(image_path, name: str, *, level: int, overwrite: bool,
                  resume: bool = False) -> tuple[Path, str]:
    """Where label image ``name`` goes inside an OME-Zarr image, and its NGFF version.

    Checks only (nothing is written): the input must be an OME-Zarr image
    segmented at level 0, and the name new unless ``overwrite``.
    """
    info = inspect_image(image_path)
    if not info.format.startswith("ome-zarr"):
        raise InputError(f"--into-input needs an OME-Zarr image as INPUT; {image_path} is "
                         f"{info.format}: give an OUTPUT path instead")
    if level != 0:
        raise InputError("--into-input labels the full-resolution image: use --level 0")
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise InputError(f"--into-input NAME must be a plain name like 'nuclei', got {name!r}")
    target = Path(image_path) / "labels" / name
    if target.exists() and not (overwrite or resume):
        raise InputError(f"{target} exists; pass --overwrite to replace it, or --resume to "
                         "finish an interrupted run")
    return target, info.format.split()[-1]


def add_to_labels_group(image_path, name: str) -> None:
    """Register label image ``name`` in an OME-Zarr image's ``labels/`` group.

    Creates ``labels/`` if needed and adds ``name`` to its list; touches
    nothing else in the image.
    """
    fmt = zarr.open_group(str(image_path), mode="r").metadata.zarr_format
    labels = zarr.open_group(str(Path(image_path) / "labels"), mode="a", zarr_format=fmt)
    if fmt == 3:
        ome = dict(labels.attrs.get("ome", {"version": "0.5"}))
        names = list(ome.get("labels", []))
        if name not in names:
            ome["labels"] = names + [name]
        labels.attrs["ome"] = ome
    else:
        names = list(labels.attrs.get("labels", []))
        if name not in names:
            labels.attrs["labels"] = names + [name]


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
            f"{path} is incomplete: the run that wrote it did not finish. Finish it with "
            "`chunkseg segment ... --resume` (or pass allow_incomplete=True to read what is there)"
        )
    return da.from_zarr(array)


# --------------------------------------------------------------------------- resuming

#: Folder inside a label group that records the chunks written so far (removed when complete).
PROGRESS_DIR = ".chunkseg-progress"


def _digest(block: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(block).tobytes()).hexdigest()


def fingerprint(image: da.Array, path) -> str:
    """A token for the input of a run: where it is, its layout, and its first and last chunk.

    The two chunks are read and hashed where the current scheduler runs its
    tasks; only the digests come back.
    """
    from dask.base import tokenize

    where = str(Path(path).resolve()) if isinstance(path, (str, os.PathLike)) else "array"
    first = image.blocks[(0,) * image.ndim]
    last = image.blocks[tuple(n - 1 for n in image.numblocks)]
    digests = dask.compute(dask.delayed(_digest)(first), dask.delayed(_digest)(last))
    return tokenize(where, image.shape, str(image.dtype), image.chunks, *digests)


@dataclasses.dataclass
class RunState:
    """What an interrupted run had settled: its threshold and its seeds."""

    threshold: float | None
    seeds: Any | None


def save_state(path, *, threshold, seeds) -> None:
    """Keep the global results of a run beside its chunks, for ``--resume``."""
    folder = Path(path) / PROGRESS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    scalar = threshold is not None and np.ndim(threshold) == 0  # class maps recompute theirs
    meta = {"threshold": float(np.asarray(threshold)) if scalar else None}
    if seeds is not None:
        np.save(folder / "seeds.npy", seeds.flat)
        meta["seeds"] = {"shape": list(seeds.shape), "chunks": [list(c) for c in seeds.chunks],
                         "max_distance": seeds.max_distance, "halo": list(seeds.halo),
                         "undecided": seeds.undecided}
    (folder / "state.json").write_text(json.dumps(meta))


def _load_state(path) -> RunState:
    from .segment import Seeds

    folder = Path(path) / PROGRESS_DIR
    try:
        meta = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError):
        raise InputError(f"{path} holds no record of its run to resume from; run again with "
                         "--overwrite") from None
    seeds = None
    if "seeds" in meta:
        s = meta["seeds"]
        seeds = Seeds(flat=np.load(folder / "seeds.npy"), shape=tuple(s["shape"]),
                      chunks=tuple(tuple(c) for c in s["chunks"]),
                      max_distance=s["max_distance"], halo=tuple(s["halo"]),
                      undecided=s["undecided"])
    return RunState(threshold=meta["threshold"], seeds=seeds)


def check_resume(path, params: dict, fingerprint: bool = True) -> RunState | None:
    """Refuse to resume anything but an unfinished run of the same input and parameters.

    With ``fingerprint=False`` (or None) the input's fingerprint is not
    compared yet (it is computed on the workers, later).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"nothing to resume at {path}; run without --resume")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception:
        raise InputError(f"{path} is not a chunkseg label output; nothing to resume") from None
    meta = group.attrs.get(_COMPLETE_KEY, {})
    if "params" not in meta:
        raise InputError(f"{path} is not a chunkseg label output; nothing to resume")
    if meta.get("complete"):
        raise InputError(f"{path} is complete; nothing to resume")
    old = meta["params"]
    if fingerprint and old.get("input_fingerprint") != params["input_fingerprint"]:
        raise InputError(f"{path} was written from another input (or the input changed); "
                         "run with --overwrite to start again")
    differ = [k for k in sorted(set(old) | set(params))
              if k != "input_fingerprint" and _jsonable(old.get(k)) != _jsonable(params.get(k))]
    if "input" in differ:
        raise InputError(f"{path} was written from another input ({old.get('input')}); resume "
                         "with that input, or run with --overwrite to start again")
    if differ:
        k = differ[0]
        raise InputError(f"{path} was written with {k}={old.get(k)!r}, not {params.get(k)!r}; "
                         "resume with the same parameters, or run with --overwrite")
    return _load_state(path) if fingerprint else None


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def label_array(path):
    return zarr.open_group(str(path), mode="r+")[LABELS_ARRAY]


def _block_name(index) -> str:
    return ".".join(map(str, index))


def done_blocks(path) -> set:
    """Block indices whose chunk was fully written (their marker exists)."""
    folder = Path(path) / PROGRESS_DIR / "done"
    if not folder.exists():
        return set()
    return {tuple(int(v) for v in p.name.split(".")) for p in folder.iterdir()}


def _piece(block, *, origin, step):
    """The pixels of ``block`` (at ``origin``) that the next level keeps, and where they go."""
    sl = tuple(slice((-o) % s, None, s) for o, s in zip(origin, step))
    start = tuple(-(-o // s) for o, s in zip(origin, step))
    return start, np.ascontiguousarray(block[sl])


def _write_block(block, *, array, region, marker, piece=None):
    """Write one block (then its marker); return the next level's piece of it, if asked."""
    array[region] = block
    if marker is not None:
        with open(marker, "wb"):
            pass
    return None if piece is None else _piece(block, **piece)


def _make_and_write_block(*values, make, **kwargs):
    """Compute a block (``make(*values)``, the task that made it) and write it."""
    return _write_block(make(*values), **kwargs)


def _inlinable(x: da.Array, key):
    """The task ``(func, *dependency keys)`` that makes block ``key`` of ``x``, when it is one
    (the hand-built graphs of chunkseg._graph), else None."""
    layer = x.dask.layers.get(x.name) if hasattr(x.dask, "layers") else None
    task = None if layer is None else layer.get(key)
    if isinstance(task, tuple) and task and callable(task[0]) and not isinstance(task[0], type):
        return task
    return None


def _level_block(*pieces, region, dtype):
    """One chunk of a pyramid level, assembled from the pieces of the level above."""
    out = np.zeros(tuple(r.stop - r.start for r in region), dtype=dtype)
    for start, piece in pieces:
        dst, src = [], []
        for a, (s0, r) in enumerate(zip(start, region)):
            lo, hi = max(s0, r.start), min(s0 + piece.shape[a], r.stop)
            dst.append(slice(lo - r.start, hi - r.start))
            src.append(slice(lo - s0, hi - s0))
        out[tuple(dst)] = piece[tuple(src)]
    return out


def _write_level(*pieces, array, region, piece=None):
    """Assemble, write and (but for the last level) pass on one chunk of a pyramid level."""
    block = _level_block(*pieces, region=region, dtype=array.dtype)
    return _write_block(block, array=array, region=region, marker=None, piece=piece)


def _children(index, chunks, step, shape_above, chunks_above):
    """Block indices of the level above whose kept pixels fall in block ``index``."""
    ranges = []
    for i, c, s, n, ca in zip(index, chunks, step, shape_above, chunks_above):
        lo, hi = i * c * s, min((i + 1) * c * s, n)
        ranges.append(range(lo // ca, -(-hi // ca)))
    return [tuple(r[k] for r, k in zip(ranges, pick))
            for pick in np.ndindex(*[len(r) for r in ranges])]


def store_blocks(x: da.Array, array, path, *, skip=frozenset(), pyramid: bool = False,
                 fuse: bool = False):
    """Delayed write of every block of ``x`` not in ``skip``, each marked done once written.

    Workers write straight to the store; a marker file per block (written
    after its chunk) tells ``--resume`` which chunks are complete. With
    ``pyramid``, the levels 1, 2... of the label group are written in the
    same graph from the blocks as they are written (each level chunk from
    the kept pixels of the chunks above it), so the labels are never read back.
    ``fuse``: nothing else uses the blocks of ``x``, so a block made by a
    plain task (the watershed's) is made by its write task: one task a chunk
    fewer, and the block never sits in worker memory between two tasks.
    """
    from . import _graph

    folder = Path(path).resolve() / PROGRESS_DIR / "done"
    folder.mkdir(parents=True, exist_ok=True)
    levels = []
    if pyramid:
        group = zarr.open_group(str(path), mode="r+")
        while str(len(levels) + 1) in group:
            levels.append(group[str(len(levels) + 1)])
    if levels and skip:
        raise ValueError("a resumed run writes its pyramid afterwards (write_pyramid), not here")
    steps = _level_steps([array.shape] + [a.shape for a in levels])
    g = _graph.Graph("write", x)
    # One task per chunk writes it and, with a pyramid, returns the pixels the
    # next level keeps; one task per level chunk assembles, writes and passes
    # on. The last tasks return None: the final barrier holds no data.
    writes = []
    for idx in np.ndindex(*x.numblocks):
        if idx in skip:
            continue
        region = _graph.chunk_slices(x.chunks, idx)
        piece = {"origin": tuple(r.start for r in region), "step": steps[0]} if levels else None
        marker = str(folder / _block_name(idx))
        made = _inlinable(x, (x.name, *idx)) if fuse else None
        if made is not None:
            writes.append(g.task("write", idx, _make_and_write_block, *made[1:], make=made[0],
                                 array=array, region=region, marker=marker, piece=piece))
        else:
            writes.append(g.task("write", idx, _write_block, (x.name, *idx), array=array,
                                 region=region, marker=marker, piece=piece))
    above = array
    for level, target in enumerate(levels, start=1):
        grid = tuple(-(-n // c) for n, c in zip(target.shape, target.chunks))
        writes = []
        for idx in np.ndindex(*grid):
            region = tuple(slice(i * c, min((i + 1) * c, n))
                           for i, c, n in zip(idx, target.chunks, target.shape))
            kids = _children(idx, target.chunks, steps[level - 1], above.shape, above.chunks)
            pieces = [g.key("write" if level == 1 else f"write{level - 1}", *k) for k in kids]
            piece = {"origin": tuple(r.start for r in region), "step": steps[level]} \
                if level < len(levels) else None
            writes.append(g.task(f"write{level}", idx, _write_level, *pieces, array=target,
                                 region=region, piece=piece))
        above = target
    # every chunk of a level is a piece of the next, so the last level's tasks
    # depend on every write
    return g.delayed(g.task("done", (), _graph.barrier, *writes))


def clear_progress(path) -> None:
    shutil.rmtree(Path(path) / PROGRESS_DIR, ignore_errors=True)


def finish_output(path, **results) -> None:
    """Mark a label output complete (with its results) and drop its progress markers."""
    mark_complete(zarr.open_group(str(path), mode="r+"), True, **results)
    clear_progress(path)


def label_levels(path) -> list:
    """The pyramid levels of a label output (lazily, as dask arrays), level 0 first."""
    group = zarr.open_group(str(path), mode="r")
    if LABELS_ARRAY not in group:
        raise InputError(f"{path} holds no label array '{LABELS_ARRAY}'")
    levels = []
    while str(len(levels)) in group:
        levels.append(da.from_zarr(group[str(len(levels))]))
    return levels


def write_mosaic(path, mosaic: np.ndarray, chunks) -> Path:
    """Write an in-memory image as a (new or replaced) Zarr v3 array with every chunk stored."""
    zarr.create_array(str(path), data=mosaic, chunks=chunks, overwrite=True,
                      config={"write_empty_chunks": True})
    return Path(path)
