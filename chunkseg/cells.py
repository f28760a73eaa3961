"""Cells from nuclei: a chunked seeded watershed of any elevation, label expansion, and the
three compartments (nucleus, cell, cytoplasm) that correspond one to one.

Both operations equal their scikit-image twins on the whole image:

- :func:`seeded_watershed` floods any elevation image (a membrane stain, an
  inverted cytoplasm stain, a gradient) from any marker image, like
  ``skimage.segmentation.watershed(image, markers, mask=mask,
  connectivity=connectivity)``. How far a flood reaches cannot be derived
  from parameters, so every chunk proves its result at run time (the
  certificate of :mod:`chunkseg._kernels.watershed`) and tries twice the
  halo when it cannot, up to ``max_halo``.
- :func:`expand_labels` grows every label by ``distance`` pixels into the
  background without overlap, like ``skimage.segmentation.expand_labels``:
  the nearest label within the distance is inside a halo of that distance.
"""

from __future__ import annotations

import functools
import math

import dask.array as da
import numpy as np

from . import _graph
from ._kernels import halo as _halo
from ._kernels import watershed as _ws
from ._validate import HaloTooSmallError, InputError, check_int

__all__ = ["ELEVATIONS", "cells_from_nuclei", "elevation_of", "expand_labels", "seeded_watershed"]

#: What a cell watershed floods (CellProfiler's Watershed-Image / Watershed-Gradient): the
#: image as it is (a membrane stain: bright boundaries flood last), the image inverted (a
#: bright cytoplasm stain floods first), or its Sobel gradient magnitude.
ELEVATIONS = ("image", "inverted", "sobel")

#: The first halo a chunk of :func:`seeded_watershed` tries, and the largest, in pixels.
DEFAULT_HALO = 32
DEFAULT_MAX_HALO = 128


def _sobel_block(block):
    from skimage.filters import sobel

    return sobel(block)


def _invert_block(block):
    from skimage.util import invert

    return invert(block)


def elevation_of(image, kind: str = "image") -> da.Array:
    """The elevation a cell watershed floods: ``"image"``, ``"inverted"``
    (``skimage.util.invert``) or ``"sobel"`` (``skimage.filters.sobel``, float64, chunked
    with its one-pixel halo: equal to the whole image's, its edges included)."""
    x = _graph.as_dask(image)
    if kind == "image":
        return x
    if kind == "inverted":
        if x.dtype.kind == "b":
            raise InputError("the image is boolean; give an intensity image to invert")
        return x.map_blocks(_invert_block, dtype=x.dtype)
    if kind == "sobel":
        x = _graph.rechunk_for_depth(x, (1,) * x.ndim)
        return x.map_overlap(_sobel_block, depth=1, boundary="none", dtype=np.float64,
                             meta=np.empty((0,) * x.ndim, dtype=np.float64))
    raise InputError(f"unknown `elevation` {kind!r}; choose one of {', '.join(ELEVATIONS)}")


def check_markers(markers, shape, name: str = "markers", *, hint: str = "") -> da.Array:
    """An integer label image of ``shape`` (bool and floats refused: labels are ids);
    ``hint`` ends the shape message (what the caller can change)."""
    m = _graph.as_dask(markers)
    if tuple(m.shape) != tuple(shape):
        raise InputError(f"`{name}` (shape {tuple(m.shape)}) must have the shape of the image "
                         f"(shape {tuple(shape)}){hint}")
    if m.dtype.kind not in "iu":
        raise InputError(f"`{name}` must be an integer label image, got {m.dtype}; label it "
                         "first (chunkseg.label) or give chunkseg's nuclei labels")
    return m


def check_distance(distance) -> float:
    """A non-negative finite number of pixels (the growth of :func:`expand_labels`)."""
    if isinstance(distance, bool):
        raise InputError(f"`distance` must be a number, got {distance!r}")
    try:
        d = float(distance)
    except (TypeError, ValueError):
        raise InputError(f"`distance` must be a number, got {distance!r}") from None
    if not math.isfinite(d) or d < 0:
        raise InputError(f"`distance` must be a non-negative number of pixels, got {distance!r}")
    return d


def check_connectivity(connectivity, ndim: int) -> int:
    c = check_int("connectivity", connectivity)
    if c > ndim:
        raise InputError(f"`connectivity` must be 1..{ndim} for a {ndim}-D image, got {c}")
    return c


def _pack(elev, markers, mask=None, *, dtype):
    out = np.empty(elev.shape, dtype=dtype)
    out["e"] = elev
    out["m"] = markers
    if mask is not None:
        out["k"] = mask
    return out


#: Per worker process: the smallest halo that proved the last chunk of a run (keyed by the
#: run's graph name). Any halo that proves a chunk gives the same labels, so starting the
#: next chunk there only saves the attempts that would fail (on 8192^2 cells: one flood a
#: chunk instead of two).
_PROVEN_AT: dict = {}


def _watershed_task(block, *, start, core, halos, image_shape, connectivity, dtype, masked,
                    block_index, run):
    def attempt(window, *, start, core, halo):
        # each field copied out whole first: the kernel on the packed fields' strided,
        # unaligned views took 2.3x as long (1088^2: 86 -> 37 ms)
        elev, markers = np.ascontiguousarray(window["e"]), np.ascontiguousarray(window["m"])
        mask = np.ascontiguousarray(window["k"]) if masked else None
        return _ws.flood_markers_block(elev, markers, mask, start=start,
                                       image_shape=image_shape, core=core,
                                       connectivity=connectivity, dtype=dtype)

    first = _PROVEN_AT.get(run, halos[0])
    tries = [h for h in halos if h >= first]
    halo, result = _halo.first_proven(block, start=start, core=core, halos=tries,
                                      kernel=attempt)
    if result is not None:
        if len(_PROVEN_AT) > 64:  # one number per run; a long-lived worker forgets old runs
            _PROVEN_AT.clear()
        _PROVEN_AT[run] = halo
        return result
    raise HaloTooSmallError(
        f"chunk {tuple(block_index)}: the watershed could not be proven with a halo of "
        f"{halos[-1]} px: floods from outside it reach farther. Rerun with a `max_halo` of "
        f"{2 * halos[-1]} or more, or with larger chunks")


def _halos(halo, max_halo) -> list[int]:
    first = DEFAULT_HALO if halo == "auto" else check_int("halo", halo)
    last = max(first, DEFAULT_MAX_HALO) if max_halo is None else check_int("max_halo", max_halo)
    if last < first:
        raise InputError(f"`max_halo` ({last}) must be at least `halo` ({first})")
    halos = [first]
    while halos[-1] < last:
        halos.append(min(2 * halos[-1], last))
    return halos


def seeded_watershed(image, markers, *, mask=None, connectivity: int = 1, halo="auto",
                     max_halo: int | None = None) -> da.Array:
    """Lazy chunked watershed of ``image`` flooded from ``markers``.

    Equals ``skimage.segmentation.watershed(image, markers, mask=mask,
    connectivity=connectivity)`` on the whole image, and the result is
    bit-identical for every chunking and scheduler. The one freedom
    scikit-image leaves to its heap layout, which of two floods reaching a
    pixel at the same level and time wins, is decided here by the marker
    pixels' raster order (the same in every chunk).

    Parameters
    ----------
    image : (M, N[, P]) array (numpy or dask)
        The elevation, integer or float: low floods first.
    markers : integer array of the same shape
        Marker labels (0: none); each label keeps its value in the result, so
        cells flooded from nuclei keep their nucleus's id. Markers outside
        ``mask`` are dropped, as scikit-image drops them.
    mask : bool array of the same shape, optional
        The pixels that may be flooded (default: all).
    connectivity : int
        1 (faces) up to ``ndim`` (the whole 3**ndim cube), as scikit-image's.
    halo, max_halo : int
        A chunk is flooded with ``halo`` pixels of its neighbours (default
        32); when its certificate fails (a flood entering from the cut
        reaches its core), with twice that, up to ``max_halo`` (default 128;
        the most any chunk reads). Past it, :class:`HaloTooSmallError` names
        the chunk and a ``max_halo`` to try.

    Returns
    -------
    labels : dask array of the markers' dtype
    """
    elev = _graph.as_dask(image)
    if elev.ndim not in (2, 3):
        raise InputError(f"image is {elev.ndim}-D; the watershed takes 2D and 3D images")
    if elev.dtype.kind not in "biuf":
        raise InputError(f"`image` must be numeric, got {elev.dtype}")
    m = check_markers(markers, elev.shape)
    connectivity = check_connectivity(connectivity, elev.ndim)
    halos = _halos(halo, max_halo)
    fields = [("e", elev.dtype), ("m", m.dtype)]
    inputs = [elev, m.rechunk(elev.chunks)]
    if mask is not None:
        k = _graph.as_dask(mask)
        if tuple(k.shape) != tuple(elev.shape):
            raise InputError(f"`mask` (shape {tuple(k.shape)}) must have the shape of the image "
                             f"(shape {tuple(elev.shape)})")
        fields.append(("k", bool))
        inputs.append(k.astype(bool).rechunk(elev.chunks))
    packed_dtype = np.dtype(fields)
    packed = da.map_blocks(functools.partial(_pack, dtype=packed_dtype), *inputs,
                           dtype=packed_dtype, meta=np.empty((0,) * elev.ndim, dtype=packed_dtype))
    graph = _graph.Graph("seeded-watershed", packed)
    pad = (halos[-1],) * elev.ndim
    for idx in np.ndindex(*packed.numblocks):
        _graph.padded_task(graph, "labels", packed, idx, pad, _watershed_task, whole=False,
                           halos=halos, image_shape=tuple(elev.shape),
                           connectivity=connectivity, dtype=m.dtype, masked=mask is not None,
                           block_index=idx, run=graph.name)
    return graph.array("labels", packed.chunks, m.dtype)


def _expand_block(block, *, distance, spacing):
    from ._kernels.expand import expand_block

    return expand_block(block, distance, spacing)


def expand_labels(labels, distance: float = 1, *, spacing=1) -> da.Array:
    """Lazy ``skimage.segmentation.expand_labels(labels, distance, spacing=spacing)``.

    Every label grows by up to ``distance`` (in the units of ``spacing``)
    into the background, each background pixel taking its nearest label, with
    scikit-image's own choice between labels at equal distance: the nearest
    label pixel within ``distance`` lies within that many pixels, so a halo of
    ``ceil(distance / spacing)`` per axis gives every chunk the whole-image
    answer (tested with exact ties).
    """
    x = _graph.as_dask(labels)
    if x.dtype.kind not in "iu":
        raise InputError(f"`labels` must be an integer label image, got {x.dtype}")
    d = check_distance(distance)
    sp = np.broadcast_to(np.asarray(spacing, dtype=float), (x.ndim,))
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise InputError(f"`spacing` must be positive numbers, got {spacing!r}")
    if d == 0:
        return x
    depth = tuple(int(math.ceil(d / s)) for s in sp)
    x = _graph.rechunk_for_depth(x, depth)
    return x.map_overlap(_expand_block, depth=depth, boundary="none", dtype=x.dtype,
                         meta=np.empty((0,) * x.ndim, dtype=x.dtype), distance=d,
                         spacing=tuple(float(s) for s in sp))


def cells_from_nuclei(nuclei, image, *, method: str = "watershed", elevation: str = "inverted",
                      distance: float = 10, threshold="otsu", connectivity: int = 1,
                      halo="auto", max_halo: int | None = None):
    """``(cells, cytoplasm, t)``: cells grown from ``nuclei`` in ``image``, lazily.

    The cell mask is ``image > t`` for a global ``threshold`` (a method name
    or a number; ``"none"``: every pixel), united with the nuclei. ``method``
    ``"watershed"`` floods :func:`elevation_of` ``(image, elevation)`` from
    the nuclei inside the mask; ``"expand"`` grows every nucleus by
    ``distance`` pixels (:func:`expand_labels`), inside the mask. Every cell
    keeps its nucleus's id and contains its whole nucleus (a nucleus whose
    cell would be empty gets the nucleus itself as its cell), so nuclei,
    cells and cytoplasm (the cell without its nucleus, which may be empty)
    correspond one to one. ``t`` is the threshold (None without a mask).
    """
    from .segment import foreground

    im = _graph.as_dask(image)
    nuc = check_markers(nuclei, im.shape, "nuclei").rechunk(im.chunks)
    if method not in ("watershed", "expand"):
        raise InputError(f"unknown cells `method` {method!r}; choose watershed or expand")
    mask, t = None, None
    if not (isinstance(threshold, str) and threshold == "none") and threshold is not None:
        fg, t = foreground(im, threshold)
        mask = fg | (nuc > 0)
    if method == "watershed":
        cells = seeded_watershed(elevation_of(im, elevation), nuc, mask=mask,
                                 connectivity=connectivity, halo=halo, max_halo=max_halo)
    else:
        cells = expand_labels(nuc, distance)
        if mask is not None:
            cells = da.where(mask, cells, 0).astype(nuc.dtype)
    cytoplasm = da.where(nuc == 0, cells, 0).astype(cells.dtype)
    return cells, cytoplasm, t
