"""Objects as polygons for pathology tools: a GeoJSON FeatureCollection QuPath imports as
detections.

One Feature per object: ``id`` is its label, the geometry its outline along the pixel edges
in level-0 pixel coordinates (x = column, y = row; exact, so it rasterises back to the
object), and ``properties.measurements`` its area and mean intensity (the stain's optical
density on a brightfield run). Each object is owned by the chunk that holds the first row
and column of its bounding box, so it is written exactly once; each chunk's task reads its
own block and the blocks its objects reach into, and returns the text of its features,
which the caller writes in order (:func:`chunkseg.io.writers.write_geojson`): no task, and
not the caller, holds every polygon.
"""

from __future__ import annotations

import json

import dask.array as da
import numpy as np

from . import _graph
from ._kernels import polygons as _poly
from ._validate import InputError

__all__ = ["feature_tasks", "to_geojson"]

#: Chunks whose features are computed together before they are written.
BATCH = 64


def feature_tasks(labels: da.Array, table, measurements: dict | None = None):
    """``(graph, keys)``: one task per chunk that owns objects, each giving ``(text, n)``: the
    JSON of its ``n`` features, comma-separated. ``table`` has a row per object with
    ``label`` and ``bbox-0..3`` (:func:`chunkseg.measure`); ``measurements`` maps a
    measurement name to the table column it comes from."""
    if labels.ndim != 2:
        raise InputError("`geojson` outlines 2D objects; this label image is "
                         f"{labels.ndim}-D")
    measurements = dict(measurements or {})
    missing = [c for c in ["label", "bbox-0", "bbox-1", "bbox-2", "bbox-3",
                           *measurements.values()] if c not in table.columns]
    if missing:
        raise InputError(f"the object table lacks {', '.join(missing)} for the GeoJSON")
    starts = [np.cumsum((0,) + tuple(c)) for c in labels.chunks]
    bbox = table[["bbox-0", "bbox-1", "bbox-2", "bbox-3"]].to_numpy(np.int64)
    owner = np.stack([np.searchsorted(starts[0], bbox[:, 0], side="right") - 1,
                      np.searchsorted(starts[1], bbox[:, 1], side="right") - 1], axis=1)
    order = np.lexsort((owner[:, 1], owner[:, 0]))
    ids = table["label"].to_numpy(np.int64)
    values = {name: table[col].to_numpy(np.float64) for name, col in measurements.items()}
    g = _graph.Graph("geojson", labels)
    keys = []
    cuts = np.flatnonzero(np.any(np.diff(owner[order], axis=0) != 0, axis=1)) + 1
    for group in np.split(order, cuts):
        if not len(group):
            continue
        first = tuple(int(i) for i in owner[group[0]])
        # the blocks the owned objects reach into, from the owner's on
        last = (int(np.searchsorted(starts[0], bbox[group, 2].max() - 1, side="right") - 1),
                int(np.searchsorted(starts[1], bbox[group, 3].max() - 1, side="right") - 1))
        grid = [(r, c) for r in range(first[0], last[0] + 1) for c in range(first[1], last[1] + 1)]
        origin = (int(starts[0][first[0]]), int(starts[1][first[1]]))
        rows = {"label": ids[group], "bbox": bbox[group],
                **{name: v[group] for name, v in values.items()}}
        keys.append(g.task("features", first, _features,
                           *[(labels.name, *idx) for idx in grid],
                           shape=(last[0] - first[0] + 1, last[1] - first[1] + 1),
                           origin=origin, rows=rows))
    return g, keys


def _features(*blocks, shape, origin, rows):
    nested = [list(blocks[r * shape[1]:(r + 1) * shape[1]]) for r in range(shape[0])]
    region = np.block(nested) if len(blocks) > 1 else blocks[0]
    names = [k for k in rows if k not in ("label", "bbox")]
    out = []
    for i, (label, (r0, c0, r1, c1)) in enumerate(zip(rows["label"], rows["bbox"])):
        window = region[r0 - origin[0]:r1 - origin[0], c0 - origin[1]:c1 - origin[1]]
        geometry = _poly.outline(window == label, origin=(r0, c0))
        feature = {
            "type": "Feature", "id": int(label),
            "geometry": json.loads(_to_json(geometry)),
            "properties": {"objectType": "detection", "name": str(int(label)),
                           "measurements": {n: _number(rows[n][i]) for n in names}},
        }
        out.append(json.dumps(feature, separators=(",", ":")))
    return ",\n".join(out), len(out)


def _to_json(geometry) -> str:
    import shapely

    return shapely.to_geojson(geometry)


def _number(value):
    value = float(value)
    return int(value) if value.is_integer() else round(value, 6)


def to_geojson(labels, path, *, image=None, table=None, measurements=None,
               overwrite: bool = False) -> int:
    """Write every object of a 2D label image as a GeoJSON Feature; returns their number.

    ``labels``: a label output's path or a (dask) array. ``table``: its object
    table when already measured (:func:`chunkseg.measure`); else it is measured
    here, with ``image`` for the intensity. ``measurements``: measurement name
    -> table column (default ``area`` and, with an image, ``intensity_mean``).
    """
    from .io import readers, writers
    from .table import measure

    x = readers.open_labels(labels) if not isinstance(labels, (np.ndarray, da.Array)) \
        else _graph.as_dask(labels)
    writers.check_output_path(path)
    writers.refuse_existing(path, "geojson", overwrite=overwrite)
    if table is None:
        table = measure(x, image, properties=("label", "area", "bbox") +
                        (("intensity_mean",) if image is not None else ()))
    if measurements is None:
        measurements = {"area": "area"}
        if "intensity_mean" in table.columns:
            measurements["intensity_mean"] = "intensity_mean"
    g, keys = feature_tasks(x, table, measurements)
    return writers.write_geojson(path, batches(g, keys))


def batches(g, keys):
    """The values of ``keys``, computed :data:`BATCH` at a time, in order."""
    for start in range(0, len(keys), BATCH):
        yield from g.compute(keys[start:start + BATCH])
