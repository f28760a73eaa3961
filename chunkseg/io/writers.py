"""Writers: arrays, OME-Zarr label groups, the blocks of a run, the report and the table.

An output is marked incomplete in its attributes when it is created and
complete only after its last chunk, so an interrupted write never looks
finished. The graphs that write blocks and their pyramid levels are built
in :mod:`chunkseg.pyramid`; the tasks there call :func:`write_block` here.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import zarr

from .._lazy import Deferred
from .._validate import ChunkWriteError, InputError, check_image_array
from . import ngff, store

__all__ = ["LABELS_ARRAY", "add_to_labels_group", "check_output_path", "check_table_path",
           "create_labels", "is_complete", "label_array", "labels_target",
           "mark_complete", "prepare_output", "to_zarr", "write_block", "write_mosaic",
           "write_report", "write_table", "write_table_part"]

da = Deferred("dask.array")  # imported on first use (the readers import this module)

#: Attribute of every chunkseg output: whether it is complete, its parameters and results.
COMPLETE_KEY = "chunkseg"
#: Name of the full-resolution label array inside a label group (OME-Zarr layout).
LABELS_ARRAY = "0"


def prepare_output(path, *, overwrite: bool) -> store.Location:
    """Refuse an existing output unless ``overwrite``; then remove it."""
    loc = store.location(path)
    loc.check_writable()
    if loc.exists():
        if not overwrite:
            raise InputError(f"output {path} exists; pass `overwrite` to replace it")
        loc.remove()
    return loc


def refuse_existing(path, what: str, *, overwrite: bool, resume: bool | None = None) -> None:
    """An existing ``what`` (output, report, table) needs ``overwrite`` (or ``resume``)."""
    loc = store.location(path)
    loc.check_writable()
    if loc.exists() and not overwrite and not resume:
        tail = ", or `resume` to finish an interrupted run" if resume is not None else ""
        raise InputError(f"{what} {path} exists; pass `overwrite` to replace it{tail}")


def check_output_path(output, inputs=()) -> store.Location:
    """Refuse an output that lies inside (or is) one of the inputs, or that cannot be written."""
    loc = store.location(output)
    loc.check_writable()
    out = loc.resolved().rstrip("/")
    for inp in inputs:
        if inp is None or not store.is_location(inp):
            continue
        src = store.location(inp).resolved().rstrip("/")
        if out == src or out.startswith(src + ("/" if "://" in src else os.sep)):
            raise InputError(f"output {output} lies inside the input {inp}; write it elsewhere "
                             "(the input is never modified)")
    return loc


def mark_complete(node, complete: bool, **extra: Any) -> None:
    """Record in the store's attributes whether every chunk has been written."""
    meta = dict(node.attrs.get(COMPLETE_KEY, {}))
    meta.update(extra)
    meta["complete"] = bool(complete)
    node.attrs[COMPLETE_KEY] = meta


def is_complete(node) -> bool:
    return bool(node.attrs.get(COMPLETE_KEY, {}).get("complete", False))


def to_zarr(array, path, *, chunks=None, overwrite: bool = False, compute: bool = True,
            storage_options: dict | None = None):
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
    storage_options : dict, optional
        For URLs: options of the fsspec filesystem (credentials, endpoint).

    Returns
    -------
    zarr.Array (after the write), or a dask delayed when ``compute=False``
    """
    with store.storage_options(storage_options):
        return _to_zarr(array, path, chunks, overwrite, compute)


def _to_zarr(array, path, chunks, overwrite, compute):
    x = array if isinstance(array, da.Array) else da.from_array(np.asarray(array), chunks="auto")
    check_image_array(x.shape, x.dtype, name="array")
    if chunks is None:
        chunks = tuple(max(c) for c in x.chunks)
    chunks = tuple(c[0] for c in da.core.normalize_chunks(chunks, x.shape, dtype=x.dtype))
    path = prepare_output(path, overwrite=overwrite)
    z = zarr.create_array(store=path.zarr_store(read_only=False), shape=x.shape, chunks=chunks, dtype=x.dtype,
                          config={"write_empty_chunks": True}, fill_value=0)
    mark_complete(z, False)
    writes = da.store(x.rechunk(chunks), z, lock=False, compute=False, return_stored=False)
    if not compute:
        return writes
    writes.compute()
    mark_complete(z, True)
    return z


def create_labels(path, *, shape, chunks, dtype, axes: str, scale=None, units=None, attrs=None,
                  version: str = "0.5", source_image: str | None = None, pyramid: bool = True,
                  levels=None):
    """Create an empty OME-Zarr label image (marked incomplete); return its level-0 array.

    Layout: an OME-Zarr image-label group (NGFF 0.5 on Zarr v3, or 0.4 on
    Zarr v2) whose ``multiscales`` list level ``"0"`` (the labels) and the
    downsampled levels ``"1"``, ``"2"``... (written by
    :mod:`chunkseg.pyramid`): Y and X halved per level, or ``levels`` =
    [(shape, scale), ...] to match an image's own pyramid (integer factors).
    """
    fmt = ngff.format_of(version)
    scale = [float(v) for v in scale] if scale is not None else [1.0] * len(shape)
    if levels is None:
        shapes = ngff.pyramid_shapes(shape, chunks) if pyramid else [tuple(shape)]
        scales = [scale[:-2] + [v * 2**lv for v in scale[-2:]] for lv in range(len(shapes))]
    else:
        shapes = [tuple(s) for s, _ in levels]
        scales = [list(sc) for _, sc in levels]
    ngff.level_steps(shapes)
    group = zarr.open_group(store.location(path).zarr_store(read_only=False), mode="w",
                            zarr_format=fmt.zarr_format)
    mark_complete(group, False, **(attrs or {}))
    fmt.write(group, multiscales=[fmt.multiscale(ngff.multiscales(axes, scales, units))],
              **{"image-label": fmt.image_label(source_image)})
    arrays = []
    extra = {"dimension_names": list(axes)} if fmt.zarr_format == 3 else {}
    for level, level_shape in enumerate(shapes):
        # every chunk is written, empty ones too: a label output read as an input
        # (open_image) must not look as if chunks were lost
        arrays.append(group.create_array(str(level), shape=level_shape, chunks=chunks, dtype=dtype,
                                         config={"write_empty_chunks": True},
                                         fill_value=0, **extra))
    return arrays[0]


def create_image(path, *, shape, chunks, dtype, axes: str, levels: int = 1,
                 channels: list | None = None, scale=None, units: dict | None = None):
    """Create an empty OME-Zarr 0.5 image with ``levels`` levels (Y and X halved per level);
    returns the group (for test and benchmark images: RGB slides are ``cyx``, time series
    ``tczyx``). ``scale``: of level 0, one per axis; ``units``: axis name -> OME unit."""
    fmt = ngff.format_of("0.5")
    shapes = [tuple(shape)]
    for _ in range(1, levels):
        shapes.append(tuple(s // 2 if a in "yx" else s for s, a in zip(shapes[-1], axes)))
    group = zarr.open_group(store.location(path).zarr_store(read_only=False), mode="w",
                            zarr_format=3)
    axis_meta = [{"name": a, "type": "channel" if a == "c" else "time" if a == "t" else "space"}
                 for a in axes]
    for entry in axis_meta:
        if units and units.get(entry["name"]):
            entry["unit"] = units[entry["name"]]
    base = [1.0] * len(axes) if scale is None else [float(v) for v in scale]
    datasets = [{"path": str(lv), "coordinateTransformations": [
        {"type": "scale", "scale": [b * 2**lv if a in "yx" else b for a, b in zip(axes, base)]}]}
        for lv in range(levels)]
    entries = {"multiscales": [{"name": "image", "axes": axis_meta, "datasets": datasets}]}
    if channels is not None:
        entries["omero"] = {"channels": [{"label": c} for c in channels]}
    fmt.write(group, **entries)
    for lv, level_shape in enumerate(shapes):
        group.create_array(str(lv), shape=level_shape, dtype=dtype, fill_value=0,
                           chunks=tuple(min(c, s) for c, s in zip(chunks, level_shape)),
                           dimension_names=list(axes))
    return group


def label_arrays(path, mode: str = "r+") -> list:
    """The arrays of a label group, level 0 first.

    Opened for writing, they write every chunk, empty ones too (zarr's
    ``write_empty_chunks`` is a setting of the open array, not of the store:
    without it here, a label output read as an input would lack its
    background chunks, as if they had been lost)."""
    group = zarr.open_group(store.location(path).zarr_store(read_only=mode == "r"), mode=mode)
    if LABELS_ARRAY not in group:
        raise InputError(f"{path} holds no label array '{LABELS_ARRAY}'")
    arrays = []
    while str(len(arrays)) in group:
        arrays.append(group[str(len(arrays))])
    if mode != "r":
        arrays = [a.with_config({"write_empty_chunks": True}) for a in arrays]
    return arrays


def label_array(path):
    return label_arrays(path)[0]


def labels_target(image_path, name: str, *, image_format: str, level: int, overwrite: bool,
                  resume: bool = False) -> tuple[store.Location, str]:
    """Where label image ``name`` goes inside an OME-Zarr image, and its NGFF version.

    Checks only (nothing is written): the input must be an OME-Zarr image
    segmented at level 0, and the name new unless ``overwrite``.
    """
    if not image_format.startswith("ome-zarr"):
        raise InputError(f"`into_input` needs an OME-Zarr image as input; {image_path} is "
                         f"{image_format}: give an output path instead")
    if level != 0:
        raise InputError("`into_input` labels the full-resolution image: use `level` 0")
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise InputError(f"`into_input` must be a plain name like 'nuclei', got {name!r}")
    target = store.location(image_path) / "labels" / name
    target.check_writable()
    if target.exists() and not (overwrite or resume):
        raise InputError(f"{target} exists; pass `overwrite` to replace it, or `resume` to "
                         "finish an interrupted run")
    return target, image_format.split()[-1]


def create_label_container(path, names, *, version: str = "0.5") -> None:
    """A new OME-Zarr ``labels`` group at ``path`` listing the label images ``names`` (each
    then made by :func:`create_labels` at ``path/name``)."""
    fmt = ngff.format_of(version)
    group = zarr.open_group(store.location(path).zarr_store(read_only=False), mode="w",
                            zarr_format=fmt.zarr_format)
    for name in names:
        fmt.add_label(group, name)


def add_to_labels_group(image_path, name: str) -> None:
    """Register label image ``name`` in an OME-Zarr image's ``labels/`` group.

    Creates ``labels/`` if needed and adds ``name`` to its list; touches
    nothing else in the image.
    """
    root = store.location(image_path)
    zarr_format = zarr.open_group(root.zarr_store(read_only=True), mode="r").metadata.zarr_format
    fmt = next(f for f in ngff.FORMATS.values() if f.zarr_format == zarr_format)
    labels = zarr.open_group((root / "labels").zarr_store(read_only=False), mode="a",
                             zarr_format=zarr_format)
    fmt.add_label(labels, name)


def write_block(block, *, array, region, marker=None, where=None):
    """Write one block into ``array`` at ``region``, then its marker file (resume).

    A failure (the store went away, after the retries of its client) names the
    chunk and ``where`` (the output); the output stays incomplete and resumable.
    """
    try:
        array[region] = block
        if marker is not None:
            store.location(marker).write_bytes(b"")
    except Exception as exc:
        index = tuple(r.start // c for r, c in zip(region, array.chunks))
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ChunkWriteError(
            f"cannot write output chunk {index} of {where or 'the output'} "
            f"({type(exc).__name__}: {text}); the output stays incomplete: once the store "
            "answers again, finish it with `resume`") from None


def write_mosaic(path, mosaic: np.ndarray, chunks) -> store.Location:
    """Write an in-memory image as a (new or replaced) Zarr v3 array with every chunk stored."""
    zarr.create_array(store.location(path).zarr_store(read_only=False), data=mosaic,
                      chunks=chunks, overwrite=True, config={"write_empty_chunks": True})
    return store.location(path)


def write_report(report: dict, path) -> None:
    """The JSON run report."""
    store.location(path).write_text(json.dumps(report, indent=2, default=str) + "\n")


def write_geojson(path, parts) -> int:
    """Write a GeoJSON FeatureCollection from ``parts`` (an iterable of ``(text, n)``: the
    JSON of ``n`` features, comma-separated), streamed in order: a local file appears under
    its name only when complete (written beside it, then renamed). Returns the features."""
    loc = store.location(path)
    count = 0
    head, tail = '{"type":"FeatureCollection","features":[\n', "\n]}\n"
    if loc.local:
        partial = loc.path.with_name(loc.path.name + ".incomplete")
        opener = open(partial, "w")
    else:
        loc.check_writable()
        partial, opener = None, loc.fs.open(loc.name, "w")
    with opener as f:
        f.write(head)
        for text, n in parts:
            if n:
                f.write((",\n" if count else "") + text)
                count += n
        f.write(tail)
    if partial is not None:
        os.replace(partial, loc.path)
    return count


_TABLE_FORMATS = (".csv", ".parquet")


def check_table_path(path) -> str:
    """Refuse a table path whose format chunkseg cannot write, before any work: ``.csv``,
    ``.parquet``, or ``"dataset"`` for a path ending in ``.parquet/`` (a Parquet dataset
    directory, one file per part, written by the workers)."""
    text = str(path)
    if text.endswith(("/", os.sep)):
        if text.rstrip("/" + os.sep).lower().endswith(".parquet"):
            return "dataset"
        raise InputError(f"table {path} ends in /, a Parquet dataset directory: name it "
                         "X.parquet/")
    suffix = text.lower()
    for ext in _TABLE_FORMATS:
        if suffix.endswith(ext):
            return ext
    raise InputError(f"table {path} must end in .csv or .parquet (or .parquet/ for a dataset "
                     "directory)")


def write_table(table, path) -> None:
    """Write a measurement table as CSV or Parquet (by the file name)."""
    import io

    buffer = io.BytesIO()
    if check_table_path(path) == ".csv":
        table.to_csv(buffer, index=False)
    else:
        table.to_parquet(buffer, index=False)
    loc = store.location(path)
    if loc.exists():  # replaced (the run was told `overwrite`): it may be a dataset directory
        loc.remove()
    loc.write_bytes(buffer.getvalue())


#: Written last into a Parquet dataset directory: every part is there.
TABLE_DONE = "_SUCCESS"


def table_parts(path) -> store.Location:
    """Where the parts of a Parquet dataset are written while the run goes on: beside it
    (renamed to ``path`` when complete) on a local disk, ``path`` itself elsewhere (complete
    once it holds :data:`TABLE_DONE`). Replaces what is there."""
    loc = store.location(str(path).rstrip("/" + os.sep))
    for old in ((loc, _parts_folder(loc)) if loc.local else (loc,)):
        if old.exists():
            old.remove()
    folder = _parts_folder(loc) if loc.local else loc
    if loc.local:
        folder.path.mkdir(parents=True)
    return folder


def _parts_folder(loc: store.Location) -> store.Location:
    return store.location(loc.path.with_name(loc.path.name + ".incomplete"))


def write_table_part(frame, folder, name: str) -> int:
    """One part of a Parquet dataset (in a worker); returns its rows."""
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    (store.location(folder) / name).write_bytes(buffer.getvalue())
    return len(frame)


def finish_table(folder, path) -> None:
    """Mark a Parquet dataset complete (and move it to ``path`` on a local disk)."""
    folder = store.location(folder)
    (folder / TABLE_DONE).write_bytes(b"")
    target = store.location(str(path).rstrip("/" + os.sep))
    if folder.local and folder.path != target.path:
        os.replace(folder.path, target.path)
