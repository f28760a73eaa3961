"""Brightfield stains: colour deconvolution of an RGB image into one stain's optical density.

``separate(rgb, "hematoxylin")`` is a lazy float64 image equal to
``skimage.color.rgb2hed(rgb)[..., 0]`` on the whole image, bit for bit, so the
chunking cannot change it and the rest of the pipeline (threshold, seeds,
watershed, components, class maps) runs on it unchanged. The stain vectors
are Ruifrok and Johnston's (``skimage.color.rgb_from_hed``) unless given, or
estimated from the slide by Macenko's method on one low-resolution level
(:func:`estimate_vectors`: one pass, then fixed for every chunk).
"""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np

from . import _graph
from ._kernels import stain as _ks
from ._validate import InputError

__all__ = ["STAINS", "estimate_vectors", "separate", "stain_matrix"]

#: The stains of the H-E-DAB space, in the order of ``skimage.color.rgb2hed``'s channels.
STAINS = ("hematoxylin", "eosin", "dab")


def check_stain(stain) -> int:
    """The channel of ``stain`` in the H-E-DAB space; one line naming the choices if unknown."""
    if stain not in STAINS:
        raise InputError(f"unknown `stain` {stain!r}; choose one of {', '.join(STAINS)}")
    return STAINS.index(stain)


def _read_vectors(spec) -> np.ndarray:
    if isinstance(spec, (str, Path)):
        text = str(spec)
        path = Path(text)
        if path.suffix in (".json", ".txt", ".csv", ".npy") and not path.exists():
            raise InputError(f"`stain_vectors` file {path} does not exist")
        if path.exists():
            if path.suffix == ".npy":
                return np.load(path)
            text = path.read_text()
            if path.suffix == ".json":
                return np.asarray(json.loads(text), dtype=float)
        rows = [r for r in text.replace("\n", ";").split(";") if r.strip()]
        try:
            return np.array([[float(v) for v in r.replace(",", " ").split()] for r in rows])
        except ValueError:
            raise InputError(f"`stain_vectors` must be numbers like '0.65,0.70,0.29;"
                             f"0.07,0.99,0.11;0.27,0.57,0.78', got {spec!r}") from None
    try:
        return np.asarray(spec, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"`stain_vectors` must be a 3x3 matrix, got {spec!r}") from None


def stain_matrix(vectors=None) -> np.ndarray:
    """The stain-from-RGB matrix ``separate_stains`` takes, from the stains' RGB vectors.

    ``vectors``: None (``skimage.color.hed_from_rgb``, Ruifrok and Johnston), or
    one row per stain of its optical density in R, G, B (like
    ``skimage.color.rgb_from_hed``): three rows, or two (the third is their
    cross product, as for a two-stain slide). A string is
    ``'r,g,b;r,g,b;r,g,b'`` or a ``.json``/``.txt``/``.csv``/``.npy`` file of
    it. Rows are scaled to unit length.
    """
    from skimage.color import hed_from_rgb

    if vectors is None:
        return hed_from_rgb
    m = _read_vectors(vectors)
    if m.ndim != 2 or m.shape[1] != 3 or m.shape[0] not in (2, 3):
        raise InputError(f"`stain_vectors` must be a 3x3 matrix (one row of R,G,B optical "
                         f"density per stain; two rows for two stains), got shape {m.shape}")
    if not np.isfinite(m).all():
        raise InputError("`stain_vectors` must be finite numbers")
    if m.shape[0] == 2:
        m = np.vstack([m, np.cross(m[0], m[1])])
    norms = np.linalg.norm(m, axis=1)
    if (norms == 0).any():
        raise InputError("`stain_vectors` has a row of zeros; every stain needs a direction")
    m = m / norms[:, None]
    if np.linalg.cond(m) > 1e6:
        raise InputError("`stain_vectors` is singular (two stains point the same way); give "
                         "three independent stain vectors")
    return np.linalg.inv(m)


def separate(rgb, stain: str = "hematoxylin", *, conv=None, channel_axis: int = -1) -> da.Array:
    """The optical density of ``stain`` in an RGB image, lazily, float64.

    Equals ``skimage.color.separate_stains(rgb, conv, channel_axis=...)[..., k]``
    (with the default ``conv``: ``skimage.color.rgb2hed(rgb)[..., k]``) on the
    whole image bit for bit; each chunk is computed alone. ``channel_axis``:
    where the colours are (an OME-Zarr slide stores them first: ``cyx``).
    """
    k = check_stain(stain)
    conv = stain_matrix() if conv is None else np.asarray(conv, dtype=np.float64)
    x = rgb if isinstance(rgb, da.Array) else da.from_array(np.asarray(rgb), chunks="auto")
    axis = channel_axis % x.ndim if x.ndim else 0
    check_rgb(x.shape[:axis] + x.shape[axis + 1:] + x.shape[axis:axis + 1], x.dtype)
    if len(x.chunks[axis]) > 1:
        x = x.rechunk({axis: 3})
    # one hand-built layer straight on the blocks read: its keys are the same tasks in every
    # computation (a blockwise layer fuses with the reads in one graph and not in the next,
    # and distributed warns of the changed task)
    g = _graph.Graph("stain", x)
    chunks = tuple(c for a, c in enumerate(x.chunks) if a != axis)
    for idx in np.ndindex(*[len(c) for c in chunks]):
        block = idx[:axis] + (0,) + idx[axis:]
        g.task("density", idx, _density, (x.name, *block), conv=conv, k=k, axis=axis)
    return g.array("density", chunks, np.float64)


def _density(block, *, conv, k, axis):
    return _ks.optical_density(np.moveaxis(block, axis, -1), conv, k)


def check_rgb(shape, dtype, name: str = "image") -> None:
    """An RGB image: channels last, three of them, real numbers."""
    if len(shape) < 3 or shape[-1] != 3:
        what = "RGBA (4 channels)" if shape and shape[-1] == 4 else f"shape {tuple(shape)}"
        raise InputError(f"`stain` needs an RGB image with 3 channels last; `{name}` is {what}")
    if np.dtype(dtype).kind not in "uif":
        raise InputError(f"`stain` needs an RGB image of numbers; `{name}` is {dtype}")


def estimate_vectors(rgb) -> tuple[np.ndarray, dict]:
    """Macenko's stain vectors of an RGB image (a low-resolution level, read whole: see
    :func:`chunkseg.run._low_resolution`), as the stain-from-RGB matrix, and what was used."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        scale = np.iinfo(rgb.dtype).max if rgb.dtype.kind in "ui" else 1.0
        rgb = np.clip(rgb.astype(np.float64) / scale, 0, 1) * 255
    try:
        vectors = _ks.macenko(rgb)
    except ValueError as exc:
        raise InputError(f"`stain_vectors` macenko: {exc}; give the vectors instead") from None
    used = {"vectors": "macenko", "pixels": int(np.prod(rgb.shape[:-1])),
            "estimated": vectors.round(6).tolist()}
    return stain_matrix(vectors), used
