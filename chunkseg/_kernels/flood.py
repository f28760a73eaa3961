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
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _less(hv, ha, i, j):
    return hv[i] < hv[j] or (hv[i] == hv[j] and ha[i] < ha[j])


@numba.njit(cache=True, inline="always")
def _swap(hv, ha, hi, i, j):
    hv[i], hv[j] = hv[j], hv[i]
    ha[i], ha[j] = ha[j], ha[i]
    hi[i], hi[j] = hi[j], hi[i]


@numba.njit(cache=True)
def _flood(key, labels, mask, marker_index, offsets, clamp):
    """Flood in place. All arrays are raveled and padded by one pixel of mask 0."""
    n = mask.size
    cap = marker_index.size + n + 1
    hv = np.empty(cap, dtype=np.float64)
    ha = np.empty(cap, dtype=np.int64)
    hi = np.empty(cap, dtype=np.int64)
    size = 0
    for k in range(marker_index.size):
        # push (-inf, k): markers pop in the given order
        hv[size] = key[marker_index[k]]
        ha[size] = k
        hi[size] = marker_index[k]
        size += 1
    # heapify: markers are queued by (value, order)
    for start in range(size // 2 - 1, -1, -1):
        pos = start
        while True:
            left = 2 * pos + 1
            if left >= size:
                break
            best = left
            right = left + 1
            if right < size and _less(hv, ha, right, left):
                best = right
            if _less(hv, ha, best, pos):
                _swap(hv, ha, hi, best, pos)
                pos = best
            else:
                break
    age = marker_index.size
    while size > 0:
        value = hv[0]
        index = hi[0]
        size -= 1
        if size > 0:
            hv[0] = hv[size]
            ha[0] = ha[size]
            hi[0] = hi[size]
            pos = 0
            while True:
                left = 2 * pos + 1
                if left >= size:
                    break
                best = left
                right = left + 1
                if right < size and _less(hv, ha, right, left):
                    best = right
                if _less(hv, ha, best, pos):
                    _swap(hv, ha, hi, best, pos)
                    pos = best
                else:
                    break
        label = labels[index]
        for o in offsets:
            nb = index + o
            if mask[nb] == 0 or labels[nb] != 0:
                continue
            labels[nb] = label
            v = key[nb]
            if clamp and v < value:
                v = value
            pos = size
            hv[pos] = v
            ha[pos] = age
            hi[pos] = nb
            age += 1
            size += 1
            while pos > 0:
                parent = (pos - 1) // 2
                if _less(hv, ha, pos, parent):
                    _swap(hv, ha, hi, pos, parent)
                    pos = parent
                else:
                    break


def flood(key: np.ndarray, markers: np.ndarray, mask: np.ndarray, order: np.ndarray, *,
          clamp: bool = True) -> np.ndarray:
    """Labels from flooding ``key`` inside ``mask`` from ``markers``.

    Parameters
    ----------
    key : float array
        Flooding priority (low floods first).
    markers : int32 array
        Marker labels (0 elsewhere).
    mask : bool array
    order : int array
        Flat indices (into the unpadded array) of the marker pixels, in the
        order they are queued; ties in flooding go to the earlier marker.
    clamp : bool
        Raise a pixel's priority to that of the pixel it was reached from, as
        scikit-image does (True).
    """
    ndim = key.ndim
    padded_shape = tuple(s + 2 for s in key.shape)
    pk = np.zeros(padded_shape, dtype=np.float64)
    pk[(slice(1, -1),) * ndim] = key
    pl = np.zeros(padded_shape, dtype=np.int32)
    pl[(slice(1, -1),) * ndim] = np.where(mask, markers, 0)
    pm = np.zeros(padded_shape, dtype=np.uint8)
    pm[(slice(1, -1),) * ndim] = mask
    strides = np.array([int(np.prod(padded_shape[a + 1:])) for a in range(ndim)], dtype=np.int64)
    # neighbour order as scikit-image's (raveled offsets in footprint order)
    offsets = np.array(sorted([-s for s in strides]) + sorted(strides.tolist()), dtype=np.int64)
    coords = np.unravel_index(np.asarray(order, dtype=np.int64), key.shape)
    padded_index = np.ravel_multi_index(tuple(c + 1 for c in coords), padded_shape).astype(np.int64)
    keep = pm.ravel()[padded_index] != 0
    _flood(pk.ravel(), pl.ravel(), pm.ravel(), padded_index[keep], offsets, clamp)
    return pl[(slice(1, -1),) * ndim]
