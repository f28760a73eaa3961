"""Per-chunk region statistics that merge exactly across chunks.

A *partial* is a dict of 1-D/2-D numpy arrays, one row per label, sorted by
label: pixel count, coordinate sums (int64, exact), bounding-box corners,
and for intensities the count-weighted mean, the sum of squared deviations
(``m2``, merged with Chan's formula, so no catastrophic cancellation) and
min/max. Two partials of the same label merge into one row; the merge is
associative, so partials combine in any tree. An image with channels last
gives intensity rows of one value per channel (2-D arrays), the label work
(the sort of the pixels by label) done once for all of them.
"""

from __future__ import annotations

import numpy as np

_EMPTY_LABELS = np.empty(0, dtype=np.uint64)


def _groups(keys: np.ndarray):
    """Sort order, group starts and unique keys of ``keys``."""
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    if len(ks) == 0:
        return order, np.empty(0, dtype=np.intp), ks
    starts = np.flatnonzero(np.concatenate([[True], ks[1:] != ks[:-1]]))
    return order, starts, ks[starts]


def empty_partial(ndim: int, intensity: bool, channels: int | None = None) -> dict:
    part = {
        "label": _EMPTY_LABELS,
        "count": np.empty(0, np.int64),
        "coord_sum": np.empty((0, ndim), np.int64),
        "bbox_min": np.empty((0, ndim), np.int64),
        "bbox_max": np.empty((0, ndim), np.int64),
    }
    if intensity:
        shape = (0,) if channels is None else (0, channels)
        part.update(mean=np.empty(shape), m2=np.empty(shape), min=np.empty(shape),
                    max=np.empty(shape))
    return part


def _per_row(counts: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``counts`` shaped to scale rows of ``like`` (one value per row, or per row and channel)."""
    return counts.reshape((-1,) + (1,) * (like.ndim - 1))


def block_partial(labels: np.ndarray, image: np.ndarray | None = None, *, origin) -> dict:
    """Statistics of every label in one chunk (0 is background); ``image`` has the labels'
    shape, or one more axis last (channels: intensities per channel)."""
    ndim = labels.ndim
    channels = image.shape[-1] if image is not None and image.ndim == ndim + 1 else None
    flat = labels.ravel()
    where = np.flatnonzero(flat)
    if len(where) == 0:
        return empty_partial(ndim, image is not None, channels)
    keys = flat[where].astype(np.uint64)
    order, starts, uniq = _groups(keys)
    where = where[order]
    counts = np.diff(np.append(starts, len(where))).astype(np.int64)
    coords = np.unravel_index(where, labels.shape)
    coord_sum = np.empty((len(uniq), ndim), np.int64)
    lo = np.empty((len(uniq), ndim), np.int64)
    hi = np.empty((len(uniq), ndim), np.int64)
    for axis, c in enumerate(coords):
        c = c.astype(np.int64) + int(origin[axis])
        coord_sum[:, axis] = np.add.reduceat(c, starts)
        lo[:, axis] = np.minimum.reduceat(c, starts)
        hi[:, axis] = np.maximum.reduceat(c, starts) + 1
    part = {"label": uniq, "count": counts, "coord_sum": coord_sum, "bbox_min": lo, "bbox_max": hi}
    if image is not None:
        # channels first (the storage order: a view of a channels-last block), one row each
        pixels = image.reshape(1, -1) if channels is None else \
            np.moveaxis(image, -1, 0).reshape(channels, -1)
        stats = _intensity(pixels[:, where], starts, counts)
        if channels is None:
            stats = {k: v[0] for k, v in stats.items()}
        else:
            stats = {k: np.ascontiguousarray(v.T) for k, v in stats.items()}
        part.update(stats)
    return part


def _intensity(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> dict:
    """Mean, m2, min and max of each group of ``values`` (channels, pixels sorted by label)
    per channel: rows of one channel each, a column per group.

    Unsigned 8- and 16-bit images sum exactly in integers (values, and squares in 32
    bits), and m2 = sum(x^2) - sum(x)^2 / n is formed exactly from them (Python integers,
    one per group and channel), so no float array of the pixels is made; other dtypes go
    through float64 deviations from the group mean."""
    n = counts.astype(np.float64)
    lo = np.minimum.reduceat(values, starts, axis=1).astype(np.float64)
    hi = np.maximum.reduceat(values, starts, axis=1).astype(np.float64)
    if values.dtype.kind == "u" and values.dtype.itemsize <= 2:
        total = np.add.reduceat(values, starts, axis=1, dtype=np.int64)
        squares = np.add.reduceat(np.square(values, dtype=np.uint32), starts, axis=1,
                                  dtype=np.uint64)
        k = counts.astype(object)
        m2 = (squares.astype(object) * k - total.astype(object) ** 2) / k
        return {"mean": total / n, "m2": m2.astype(np.float64), "min": lo, "max": hi}
    x = values.astype(np.float64)
    mean = np.add.reduceat(x, starts, axis=1) / n
    dev = x - np.repeat(mean, counts, axis=1)
    return {"mean": mean, "m2": np.add.reduceat(dev * dev, starts, axis=1), "min": lo, "max": hi}


def merge(*parts: dict | None) -> dict | None:
    """One partial from several: rows of the same label combined (None if no rows)."""
    parts = [p for p in parts if p is not None and len(p["label"])]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order, starts, uniq = _groups(cat["label"])
    cat = {k: v[order] for k, v in cat.items()}
    counts = np.add.reduceat(cat["count"], starts)
    out = {
        "label": uniq,
        "count": counts,
        "coord_sum": np.add.reduceat(cat["coord_sum"], starts, axis=0),
        "bbox_min": np.minimum.reduceat(cat["bbox_min"], starts, axis=0),
        "bbox_max": np.maximum.reduceat(cat["bbox_max"], starts, axis=0),
    }
    if "mean" in cat:
        n = _per_row(cat["count"].astype(np.float64), cat["mean"])
        mean = np.add.reduceat(n * cat["mean"], starts, axis=0) / _per_row(counts, n)
        dev = cat["mean"] - np.repeat(mean, np.diff(np.append(starts, len(n))), axis=0)
        out.update(
            mean=mean,
            m2=np.add.reduceat(cat["m2"] + n * dev * dev, starts, axis=0),
            min=np.minimum.reduceat(cat["min"], starts, axis=0),
            max=np.maximum.reduceat(cat["max"], starts, axis=0),
        )
    return out


def merge_bucket(*parts, bucket: int, nbuckets: int) -> dict | None:
    """Merge the rows of chunk partials whose label falls in ``bucket`` (label % nbuckets)."""
    picked = []
    for p in parts:
        if p is None or not len(p["label"]):
            continue
        if nbuckets > 1:
            sel = (p["label"] % np.uint64(nbuckets)) == bucket
            p = {k: v[sel] for k, v in p.items()}
        picked.append(p)
    return merge(*picked)
