"""Object measurements of a chunked label image: scikit-image's regionprops table.

Every chunk reports mergeable partials (count, coordinate sums, bounding-box
corners, intensity mean/m2/min/max) for the labels it holds; the partials are
split into buckets by label value and merged in a tree inside each bucket,
so no task holds more than ``split_every`` partials or one bucket's rows,
and there is neither a Python loop over labels nor a task per label.
"""

from __future__ import annotations

import math

import numpy as np

from . import _graph
from ._kernels import regions as _regions
from ._validate import InputError
from .relabel import check_labels

__all__ = ["measure", "PROPERTIES"]

#: The properties :func:`measure` computes, named as in ``skimage.measure.regionprops_table``.
PROPERTIES = ("label", "area", "num_pixels", "centroid", "bbox", "intensity_mean",
              "intensity_min", "intensity_max", "intensity_std")
_INTENSITY = {"intensity_mean", "intensity_min", "intensity_max", "intensity_std"}
_MAX_BUCKETS = 16


def check_properties(properties, has_image: bool) -> tuple[str, ...]:
    if properties is None:
        properties = ("label", "area", "centroid", "bbox")
        if has_image:
            properties += ("intensity_mean", "intensity_min", "intensity_max", "intensity_std")
        return properties
    if isinstance(properties, str):
        properties = (properties,)
    properties = tuple(properties)
    unknown = [p for p in properties if p not in PROPERTIES]
    if unknown:
        raise InputError(f"unknown properties {', '.join(unknown)}; chunkseg measures "
                         f"{', '.join(PROPERTIES)}")
    if not has_image and _INTENSITY.intersection(properties):
        raise InputError("intensity properties need an `image`")
    return properties


def _check_spacing(spacing, ndim: int):
    if spacing is None:
        return None
    spacing = tuple(float(s) for s in np.atleast_1d(spacing))
    if len(spacing) == 1:
        spacing *= ndim
    if len(spacing) != ndim or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"`spacing` must be {ndim} positive numbers, got {spacing}")
    return spacing


def _table_columns(part: dict | None, properties, ndim: int, spacing, intensity: bool,
                   channels=None) -> dict:
    if part is None:
        part = _regions.empty_partial(ndim, intensity, None if channels is None else len(channels))
    count = part["count"]
    pixel = float(np.prod(spacing)) if spacing else 1.0
    scale = np.asarray(spacing if spacing else (1.0,) * ndim)
    cols = {}
    for prop in properties:
        if prop == "label":
            cols["label"] = part["label"].astype(np.int64)
        elif prop == "area":
            cols["area"] = count * pixel
        elif prop == "num_pixels":
            cols["num_pixels"] = count
        elif prop == "centroid":
            centroid = part["coord_sum"] / np.maximum(count, 1)[:, None] * scale
            for a in range(ndim):
                cols[f"centroid-{a}"] = centroid[:, a]
        elif prop == "bbox":
            for a in range(ndim):
                cols[f"bbox-{a}"] = part["bbox_min"][:, a]
            for a in range(ndim):
                cols[f"bbox-{ndim + a}"] = part["bbox_max"][:, a]
        elif prop in _INTENSITY:
            if prop == "intensity_std":
                values = np.sqrt(np.maximum(part["m2"], 0) /
                                 np.maximum(count, 1).reshape((-1,) + (1,) * (part["m2"].ndim - 1)))
            else:
                values = part[prop.split("_")[1]]
            if channels is None:
                cols[prop] = values
            else:  # regionprops_table's names for a multichannel image: intensity_mean-0 ...
                for k, name in enumerate(channels):
                    cols[f"{prop}-{name}"] = values[:, k]
    return cols


def measure_graph(labels, image=None, *, split_every: int = 8):
    """The lazy per-bucket merged partials: ``(graph, bucket keys)``."""
    x = check_labels(labels)
    inputs = [x]
    if image is not None:
        im = _graph.as_dask(image)
        if im.shape[:x.ndim] != x.shape or im.ndim > x.ndim + 1:
            raise InputError(f"`image` (shape {im.shape}) must have the shape of the labels "
                             f"({x.shape}), or that and its channels last")
        im = im.rechunk(x.chunks + ((im.shape[-1],) if im.ndim > x.ndim else ()))
        inputs.append(im)
    g = _graph.Graph("measure", *inputs)
    origins = _graph.block_origins(x.chunks)
    leaves = []
    for idx in np.ndindex(*x.numblocks):
        origin = tuple(int(origins[a][i]) for a, i in enumerate(idx))
        keys = [(x.name, *idx)] + ([(im.name, *idx, *(0,) * (im.ndim - x.ndim))]
                                   if image is not None else [])
        leaves.append(g.task("partial", idx, _regions.block_partial, *keys, origin=origin))
    nbuckets = max(1, min(_MAX_BUCKETS, len(leaves) // 64))
    roots = [
        _graph.tree(g, f"bucket{k}", leaves, _regions.merge, split_every=split_every,
                    first=_regions.merge_bucket, bucket=k, nbuckets=nbuckets)
        for k in range(nbuckets)
    ]
    return g, roots


def measure(labels, image=None, *, properties=None, spacing=None, split_every: int = 8,
            channel_names=None):
    """Measure every labelled object: a table like ``skimage.measure.regionprops_table``.

    Parameters
    ----------
    labels : (M, N[, P]) integer array (numpy or dask)
        Label image; 0 is background. Objects may span any number of chunks.
    image : array of the same shape, optional
        Intensities, for the ``intensity_*`` properties; with one more axis
        last, the channels of a multichannel image: then each intensity
        property has a column per channel, ``intensity_mean-0`` ... as
        ``regionprops_table`` names them (``intensity_mean-NAME`` with
        ``channel_names``).
    properties : sequence of str, optional
        Any of :data:`PROPERTIES`. Default: label, area, centroid, bbox (and
        intensity mean/min/max/std when ``image`` is given).
    spacing : sequence of float, optional
        Pixel spacing per axis: ``area`` and ``centroid`` become physical, as
        in ``regionprops_table(..., spacing=spacing)``; ``bbox`` stays in pixels.
    split_every : int
        Partials merged per task.

    Returns
    -------
    pandas.DataFrame
        One row per label, sorted by label, with scikit-image's column names
        (``centroid-0``, ``bbox-0`` ...). Values equal regionprops on the
        whole image up to floating-point rounding.
    """
    x = _graph.as_dask(labels)
    properties = check_properties(properties, image is not None)
    spacing = _check_spacing(spacing, x.ndim)
    channels = None
    if image is not None and np.ndim(image) == x.ndim + 1:
        n = image.shape[-1]
        channels = [str(c) for c in (range(n) if channel_names is None else channel_names)]
        if len(channels) != n:
            raise InputError(f"`channel_names` must name the image's {n} channels, got "
                             f"{len(channels)}")
    g, roots = measure_graph(x, image, split_every=split_every)
    return table_from_parts(g.compute(roots), properties, x.ndim, spacing, image is not None,
                            channels)


def table_from_parts(parts, properties, ndim: int, spacing, intensity: bool, channels=None):
    """The DataFrame from computed bucket partials (see :func:`measure_graph`); ``channels``:
    the names of the image's channels when it had them last."""
    import pandas as pd

    merged = _regions.merge(*parts)
    return pd.DataFrame(_table_columns(merged, properties, ndim, spacing, intensity, channels))
