"""Priority flooding from markers with a total order: the watershed kernel.

The same flooding as ``skimage.segmentation.watershed(image, markers,
mask=mask)`` in scikit-image 0.25/0.26 (any connectivity, no compactness, no
watershed lines): markers are queued with their own value, each pixel is
labelled when first reached, and the queue pops the lowest
``max(value, value of the pixel it came from)``, oldest first. scikit-image
queues all markers with the same age, so which of two equal markers floods
first depends on the heap layout of every marker in the image; here markers
are queued in a given order (global id), so the flooding of a pixel depends
only on its neighbourhood and every chunk that sees it agrees.

Priorities are small non-negative integers (ranks of the flooding levels),
and the clamp makes the popped priority never decrease, so the queue is a
bucket queue (a FIFO per priority, see :func:`_flood`): (priority, age) order exactly,
in linear time (about 4x faster than a binary heap here).
"""

from __future__ import annotations

import itertools

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _flood(priority, labels, marker_index, offsets, nbuckets):
    """Flood in place. Arrays are raveled and padded by one pixel; ``labels`` is
    -1 outside the mask (one test per neighbour: only 0 is open).

    A pixel queued above the current priority is queued at its own
    priority, so bucket ``p`` receives, before it is reached, at most the
    pixels whose priority is ``p``: each bucket's future entries get a fixed
    segment of one array (a counting sort), and the entries the current
    bucket receives while it is flooded go to a FIFO array of their own.
    Popped in order: the segment, then that FIFO. No linked list, so no
    pointer chasing (3-4x faster than per-bucket lists on 1024^2 blocks), in
    exactly their order.
    """
    n = priority.size
    start = np.zeros(nbuckets + 1, dtype=np.int64)
    for i in range(n):
        if labels[i] >= 0:
            start[priority[i] + 1] += 1
    for p in range(nbuckets):
        start[p + 1] += start[p]
    fill = start[:nbuckets].copy()
    future = np.empty(max(start[nbuckets], 1), dtype=np.int32)
    current = np.empty(max(start[nbuckets], 1), dtype=np.int32)
    lowest = nbuckets
    for k in range(marker_index.size):
        i = marker_index[k]
        p = priority[i]
        future[fill[p]] = i
        fill[p] += 1
        if p < lowest:
            lowest = p
    for p in range(lowest, nbuckets):
        k = start[p]
        head = 0
        tail = 0
        while True:
            if k < fill[p]:
                index = future[k]
                k += 1
            elif head < tail:
                index = current[head]
                head += 1
            else:
                break
            label = labels[index]
            for o in offsets:
                nb = index + o
                if labels[nb] != 0:
                    continue
                labels[nb] = label
                q = priority[nb]
                if q <= p:
                    current[tail] = nb
                    tail += 1
                else:
                    future[fill[q]] = nb
                    fill[q] += 1


def neighbour_offsets(padded_shape, connectivity: int = 1) -> np.ndarray:
    """Raveled offsets of a pixel's neighbours in scikit-image's order: every offset of
    ``ndi.generate_binary_structure(ndim, connectivity)`` but the centre, sorted by their
    distance from it, then by value (``skimage.morphology._util`` does the same)."""
    ndim = len(padded_shape)
    strides = np.array([int(np.prod(padded_shape[a + 1:])) for a in range(ndim)], dtype=np.int64)
    steps = [v for v in itertools.product((-1, 0, 1), repeat=ndim)
             if 0 < sum(map(abs, v)) <= connectivity]
    keyed = sorted((sum(map(abs, v)), int(np.dot(v, strides))) for v in steps)
    return np.array([raveled for _, raveled in keyed], dtype=np.int32)


def flood(level: np.ndarray, mask: np.ndarray, order: np.ndarray, order_labels: np.ndarray, *,
          top: int, connectivity: int = 1) -> np.ndarray:
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
    connectivity : int
        Neighbours as ``skimage.segmentation.watershed``'s: 1 (faces) up to
        ``ndim`` (every pixel of the 3**ndim cube).

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
    # the smallest type that holds the priorities: less memory to stream per pixel
    ptype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.int32
    pp = np.empty(padded_shape, dtype=ptype)
    np.subtract(top, level, out=pp[inner], casting="unsafe")
    pl = np.full(padded_shape, -1, dtype=np.int32)
    np.copyto(pl[inner], 0, where=mask)
    offsets = neighbour_offsets(padded_shape, connectivity)
    order = np.asarray(order, dtype=np.int64)
    keep = mask.ravel()[order]
    order, order_labels = order[keep], np.asarray(order_labels, dtype=np.int32)[keep]
    coords = np.unravel_index(order, level.shape)
    padded_index = np.ravel_multi_index(tuple(c + 1 for c in coords), padded_shape).astype(np.int32)
    pl.ravel()[padded_index] = order_labels
    _flood(pp.ravel(), pl.ravel(), padded_index, offsets, int(top) + 1)
    out = pl[inner]
    return np.maximum(out, 0, out=out)
