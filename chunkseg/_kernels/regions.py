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

import numba
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
        # a row of pixels per channel, a view in both layouts (no copy of the block): a
        # channels-last view of channels-first storage (how runs read), or channels last
        if channels is None:
            pixels = image.reshape(1, -1)
        elif image.flags.c_contiguous:
            pixels = image.reshape(-1, channels).T
        else:
            pixels = np.moveaxis(image, -1, 0).reshape(channels, -1)
        stats = _intensity(pixels, where, starts, counts)
        if channels is None:
            stats = {k: v[0] for k, v in stats.items()}
        else:
            stats = {k: np.ascontiguousarray(v.T) for k, v in stats.items()}
        part.update(stats)
    return part


def _intensity(values: np.ndarray, where: np.ndarray, starts: np.ndarray,
               counts: np.ndarray) -> dict:
    """Mean, m2, min and max per channel of the pixels ``values[:, where]`` grouped by
    ``starts``/``counts`` (``values``: channels, pixels; one row per channel, a column
    per group), in one compiled pass over the pixels that reads every channel in place
    (no gathered copy of them per channel).

    Integers of 8 and 16 bits sum exactly in int64 (values and squares), and m2 is
    formed from those exact sums without cancellation; other dtypes go through float64
    deviations from the group mean (two passes)."""
    integer = values.dtype.kind in "ui" and values.dtype.itemsize <= 2
    if integer and len(counts):
        top = max(abs(int(np.iinfo(values.dtype).min)), int(np.iinfo(values.dtype).max))
        integer = int(counts.max()) * top * top < 2 ** 62  # sum(x^2) fits in int64
    stats = (_integer_stats if integer else _float_stats)(values, where, starts, counts)
    return dict(zip(("mean", "m2", "min", "max"), stats))


@numba.njit(cache=True, nogil=True)
def _empty_stats(values, starts):
    shape = (values.shape[0], len(starts))
    return np.empty(shape), np.empty(shape), np.empty(shape), np.empty(shape)


@numba.njit(cache=True, nogil=True)
def _integer_stats(values, where, starts, counts):
    """Exact sums: with tot = q n + r (0 <= r < n), n sum(x^2) - tot^2 = n A - r^2 where
    A = sum(x^2) - q^2 n - 2 q r is an int64 that does not overflow, so
    m2 = A - r^2 / n rounds once. Channels innermost: each pixel's values are read
    together, whichever the layout."""
    mean, m2, lo, hi = _empty_stats(values, starts)
    nc = values.shape[0]
    tot, sq = np.zeros(nc, np.int64), np.zeros(nc, np.int64)
    a, b = np.zeros(nc, np.int64), np.zeros(nc, np.int64)
    for g in range(len(starts)):
        s0, n = starts[g], counts[g]
        for c in range(nc):
            tot[c] = sq[c] = 0
            a[c] = b[c] = values[c, where[s0]]
        for i in range(s0, s0 + n):
            w = where[i]
            for c in range(nc):
                x = np.int64(values[c, w])
                tot[c] += x
                sq[c] += x * x
                a[c] = min(a[c], x)
                b[c] = max(b[c], x)
        for c in range(nc):
            q = tot[c] // n
            r = tot[c] - q * n
            m2[c, g] = np.float64(sq[c] - q * q * n - 2 * q * r) - np.float64(r * r) / n
            mean[c, g] = tot[c] / n
            lo[c, g] = a[c]
            hi[c, g] = b[c]
    return mean, m2, lo, hi


@numba.njit(cache=True, nogil=True)
def _float_stats(values, where, starts, counts):
    """float64 mean, then the sum of squared deviations from it; NaN propagates to every
    statistic of its group, as in numpy's reductions."""
    mean, m2, lo, hi = _empty_stats(values, starts)
    nc = values.shape[0]
    tot, dev = np.zeros(nc), np.zeros(nc)
    for g in range(len(starts)):
        s0, n = starts[g], counts[g]
        for c in range(nc):
            tot[c] = dev[c] = 0.0
            lo[c, g] = hi[c, g] = values[c, where[s0]]
        for i in range(s0, s0 + n):
            w = where[i]
            for c in range(nc):
                x = np.float64(values[c, w])
                tot[c] += x
                if x < lo[c, g] or x != x:
                    lo[c, g] = x
                if x > hi[c, g] or x != x:
                    hi[c, g] = x
        for c in range(nc):
            mean[c, g] = tot[c] / n
        for i in range(s0, s0 + n):
            w = where[i]
            for c in range(nc):
                d = np.float64(values[c, w]) - mean[c, g]
                dev[c] += d * d
        for c in range(nc):
            m2[c, g] = dev[c]
    return mean, m2, lo, hi


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
