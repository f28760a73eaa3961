"""Priority flooding from markers with a total order: the watershed kernel.

The same flooding as ``skimage.segmentation.watershed(image, markers,
mask=mask)`` in scikit-image 0.25/0.26 (connectivity 1, no compactness, no
watershed lines): markers are queued with their own value, each pixel is
labelled when first reached, and the queue pops the lowest
``max(value, value of the pixel it came from)``, oldest first. scikit-image
queues all markers with the same age, so which of two equal markers floods
first depends on the heap layout of every marker in the image; here markers
are queued in a given order (global id), so the flooding of a pixel depends
only on its neighbourhood and every chunk that sees it agrees.

Priorities are small non-negative integers (ranks of the flooding levels),
and the clamp makes the popped priority never decrease, so the queue is a
bucket queue with one FIFO list per priority: (priority, age) order exactly,
in linear time (about 4x faster than a binary heap here).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _push(head, tail, nxt, p, i):
    """Append entry ``i`` to the FIFO list of bucket ``p``."""
    nxt[i] = -1
    if head[p] < 0:
        head[p] = i
    else:
        nxt[tail[p]] = i
    tail[p] = i


@numba.njit(cache=True, nogil=True)
def _flood(priority, labels, marker_index, offsets, nbuckets):
    """Flood in place. Arrays are raveled and padded by one pixel; ``labels`` is
    -1 outside the mask (one test per neighbour: only 0 is open), int32 links."""
    head = np.full(nbuckets, -1, dtype=np.int32)
    tail = np.full(nbuckets, -1, dtype=np.int32)
    nxt = np.empty(priority.size, dtype=np.int32)
    lowest = nbuckets
    for k in range(marker_index.size):
        i = marker_index[k]
        p = priority[i]
        _push(head, tail, nxt, p, i)
        if p < lowest:
            lowest = p
    current = lowest
    while current < nbuckets:
        index = head[current]
        if index < 0:
            current += 1
            continue
        head[current] = nxt[index]
        label = labels[index]
        for o in offsets:
            nb = index + o
            if labels[nb] != 0:
                continue
            labels[nb] = label
            p = priority[nb]
            if p < current:
                p = current
            _push(head, tail, nxt, p, nb)


def flood(level: np.ndarray, mask: np.ndarray, order: np.ndarray, order_labels: np.ndarray, *,
          top: int) -> np.ndarray:
    """Labels from flooding priority ``top - level`` inside ``mask`` from markers.

    Parameters
    ----------
    level : array
        Flooding level, at most ``top`` (an exact integer): the priority
        ``top - level`` is non-negative, and low priority floods first.
    mask : bool array
    order : int array
        Flat indices (into the unpadded array) of the marker pixels, in the
        order they are queued; ties in flooding go to the earlier marker.
    order_labels : int32 array
        The label of each marker pixel (positive).

    Returns
    -------
    int32 array: the labels, 0 outside the flooded region.
    """
    ndim = level.ndim
    padded_shape = tuple(s + 2 for s in level.shape)
    if np.prod(padded_shape, dtype=np.float64) >= 2**31:
        raise ValueError(f"a block of {padded_shape} pixels is too large to flood (2**31 at most)")
    inner = (slice(1, -1),) * ndim
    # each buffer written once; the priority of the one-pixel pad is never read
    # (its label is -1, closed)
    pp = np.empty(padded_shape, dtype=np.int32)
    np.subtract(top, level, out=pp[inner], casting="unsafe")
    pl = np.full(padded_shape, -1, dtype=np.int32)
    np.copyto(pl[inner], 0, where=mask)
    strides = np.array([int(np.prod(padded_shape[a + 1:])) for a in range(ndim)], dtype=np.int64)
    # neighbour order as scikit-image's (raveled offsets in footprint order)
    offsets = np.array(sorted([-s for s in strides]) + sorted(strides.tolist()), dtype=np.int32)
    order = np.asarray(order, dtype=np.int64)
    keep = mask.ravel()[order]
    order, order_labels = order[keep], np.asarray(order_labels, dtype=np.int32)[keep]
    coords = np.unravel_index(order, level.shape)
    padded_index = np.ravel_multi_index(tuple(c + 1 for c in coords), padded_shape).astype(np.int32)
    pl.ravel()[padded_index] = order_labels
    _flood(pp.ravel(), pl.ravel(), padded_index, offsets, int(top) + 1)
    out = pl[inner]
    return np.maximum(out, 0, out=out)
