"""Resume: what an interrupted run leaves beside its chunks, and the checks before going on.

A label output being written holds ``.chunkseg-progress/``: one marker file
per chunk written (after its chunk), and the run's global results (its
threshold and its seeds) as plain data, so that ``--resume`` computes only
the chunks still missing with exactly the values the first run used.

On object storage the chunk is its own marker: a PUT is atomic (an object
appears whole when its upload completes, or not at all) and every chunk of a
label output is written, empty ones too, so the level-0 chunks listed are the
blocks done. That saves a request per chunk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from typing import Any

import dask
import numpy as np
import zarr

from .._validate import InputError
from . import store
from . import writers
from .writers import COMPLETE_KEY

__all__ = ["PROGRESS_DIR", "RunState", "check_resume", "clear_progress", "done_blocks",
           "finish_output", "fingerprint", "marker_paths", "save_state"]

#: Folder inside a label group that records the chunks written so far (removed when complete).
PROGRESS_DIR = ".chunkseg-progress"


def _digest(block: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(block).tobytes()).hexdigest()


def fingerprint(image, path) -> str:
    """A token for the input of a run: where it is, its layout, and its first and last chunk.

    The two chunks are read and hashed where the current scheduler runs its
    tasks; only the digests come back.
    """
    from dask.base import tokenize

    where = store.recorded(path)
    first = image.blocks[(0,) * image.ndim]
    last = image.blocks[tuple(n - 1 for n in image.numblocks)]
    digests = dask.compute(dask.delayed(_digest)(first), dask.delayed(_digest)(last))
    return tokenize(where, image.shape, str(image.dtype), image.chunks, *digests)


@dataclasses.dataclass(frozen=True)
class RunState:
    """What an interrupted run had settled, as plain data.

    ``seeds`` is the record of :meth:`chunkseg.segment.Seeds.to_record`
    (arrays and numbers), or None for methods without seeds. A time series
    has one state per time point in ``series`` (and None in the others).
    """

    threshold: float | None
    seeds: dict | None
    series: list | None = None


def save_state(path, states, *, series: bool = False) -> None:
    """Keep the global results of a run beside its chunks, for ``--resume``.

    ``states``: ``(threshold, seeds)`` of the image, or of each time point
    of a ``series``; ``seeds`` a record whose array values are saved as
    ``.npy`` files and whose other values go to ``state.json``.
    """
    folder = store.location(path) / PROGRESS_DIR
    metas = [_state_meta(folder, threshold, seeds, f"t{i}-" if series else "")
             for i, (threshold, seeds) in enumerate(states)]
    meta = {"series": metas} if series else metas[0]
    (folder / "state.json").write_text(json.dumps(meta, default=_plain))


def _state_meta(folder, threshold, seeds, prefix: str) -> dict:
    scalar = threshold is not None and np.ndim(threshold) == 0  # class maps recompute theirs
    meta: dict[str, Any] = {"threshold": float(np.asarray(threshold)) if scalar else None}
    if seeds is not None:
        meta["seeds"] = {}
        for key, value in seeds.items():
            if isinstance(value, np.ndarray):
                buffer = io.BytesIO()
                np.save(buffer, value)
                name = f"{prefix}seeds-{key}.npy"
                (folder / name).write_bytes(buffer.getvalue())
                meta["seeds"][key] = {"npy": name}
            else:
                meta["seeds"][key] = value
    return meta


def _plain(value):
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not plain data")


def _load_state(path) -> RunState:
    folder = store.location(path) / PROGRESS_DIR
    try:
        meta = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError, InputError):
        raise InputError(f"{path} holds no record of its run to resume from; run again with "
                         "`overwrite`") from None
    if "series" in meta:
        return RunState(threshold=None, seeds=None,
                        series=[_state_of(folder, m) for m in meta["series"]])
    return _state_of(folder, meta)


def _state_of(folder, meta: dict) -> RunState:
    seeds = None
    if "seeds" in meta:
        seeds = {key: np.load(io.BytesIO((folder / value["npy"]).read_bytes()))
                 if isinstance(value, dict) and "npy" in value else value
                 for key, value in meta["seeds"].items()}
    return RunState(threshold=meta["threshold"], seeds=seeds)


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def check_resume(path, params: dict, *, compare_fingerprint: bool = True) -> RunState | None:
    """Refuse to resume anything but an unfinished run of the same input and parameters.

    With ``compare_fingerprint=False`` the input's fingerprint is not
    compared yet (it is computed on the workers, later) and nothing is
    loaded: the early check before a cluster starts.
    """
    if not store.exists(path):
        raise InputError(f"nothing to resume at {path}; run without `resume`")
    try:
        group = zarr.open_group(store.location(path).zarr_store(read_only=True), mode="r")
    except Exception:
        raise InputError(f"{path} is not a chunkseg label output; nothing to resume") from None
    meta = group.attrs.get(COMPLETE_KEY, {})
    if "params" not in meta:
        raise InputError(f"{path} is not a chunkseg label output; nothing to resume")
    if meta.get("complete"):
        raise InputError(f"{path} is complete; nothing to resume")
    old = meta["params"]
    if compare_fingerprint and old.get("input_fingerprint") != params["input_fingerprint"]:
        raise InputError(f"{path} was written from another input (or the input changed); "
                         "run with `overwrite` to start again")
    differ = [k for k in sorted(set(old) | set(params))
              if k != "input_fingerprint" and _jsonable(old.get(k)) != _jsonable(params.get(k))]
    if "input" in differ:
        raise InputError(f"{path} was written from another input ({old.get('input')}); resume "
                         "with that input, or run with `overwrite` to start again")
    if differ:
        k = differ[0]
        raise InputError(f"{path} was written with {k}={old.get(k)!r}, not {params.get(k)!r}; "
                         "resume with the same parameters, or run with `overwrite`")
    return _load_state(path) if compare_fingerprint else None


def _block_name(index) -> str:
    return ".".join(map(str, index))


def marker_paths(path, indices) -> dict:
    """The marker file of each block index (its folder created): written after the chunk.
    Empty on object storage, where the chunk is its own marker."""
    loc = store.location(path)
    if not loc.local:
        return {}
    loc = store.location(loc.resolved())
    (loc.path / PROGRESS_DIR / "done").mkdir(parents=True, exist_ok=True)
    folder = loc / PROGRESS_DIR / "done"
    return {idx: (folder / _block_name(idx)).name for idx in indices}


def done_blocks(path) -> set:
    """Block indices whose chunk was fully written: their marker exists (local disk), their
    level-0 chunk is stored (object storage)."""
    loc = store.location(path)
    if loc.local:
        folder = loc / PROGRESS_DIR / "done"
        return {tuple(int(v) for v in name.split(".")) for name in folder.names()}
    array = writers.label_arrays(path, mode="r")[0]
    stored = (loc / array.path).keys()
    return {idx for idx in np.ndindex(*array.cdata_shape)
            if array.metadata.encode_chunk_key(idx) in stored}


def clear_progress(path) -> None:
    (store.location(path) / PROGRESS_DIR).remove()


def finish_output(path, **results) -> None:
    """Mark a label output complete (with its results) and drop its progress markers."""
    writers.mark_complete(zarr.open_group(store.location(path).zarr_store(read_only=False), mode="r+"),
                  True, **results)
    clear_progress(path)
