"""Per-block pieces of connected-component labelling across chunks."""

from __future__ import annotations

import itertools

import numpy as np
import scipy.ndimage as ndi


def structure(ndim: int, connectivity: int) -> np.ndarray:
    if not 1 <= connectivity <= ndim:
        raise ValueError(f"`connectivity` must be 1..{ndim}, got {connectivity}")
    return ndi.generate_binary_structure(ndim, connectivity)


def label_block(block: np.ndarray, *, connectivity: int) -> tuple[np.ndarray, int]:
    """``scipy.ndimage.label`` of one block: local labels 1..n in raster order."""
    labels = np.empty(block.shape, dtype=np.int32)
    n = ndi.label(block, structure=structure(block.ndim, connectivity), output=labels)
    return labels, int(n)


def first_pixels(labels: np.ndarray, n: int, *, origin, image_shape) -> np.ndarray:
    """Global flat index of the first pixel (raster order) of local labels 1..n.

    ``scipy.ndimage.label`` numbers labels in the raster order of their first
    pixel, so label k first appears where the running maximum reaches k; and
    raster order inside a block is raster order in the image.
    """
    if n == 0:
        return np.empty(0, dtype=np.int64)
    running = np.maximum.accumulate(labels.ravel())
    local = np.searchsorted(running, np.arange(1, n + 1), side="left")
    coords = np.unravel_index(local, labels.shape)
    glob = tuple(c + int(o) for c, o in zip(coords, origin))
    return np.ravel_multi_index(glob, image_shape).astype(np.int64)


def boundary_faces(labels: np.ndarray) -> dict:
    """The first and last plane of the block along each axis."""
    out = {}
    for axis in range(labels.ndim):
        lo = [slice(None)] * labels.ndim
        hi = [slice(None)] * labels.ndim
        lo[axis] = slice(0, 1)
        hi[axis] = slice(-1, None)
        out[(axis, 0)] = labels[tuple(lo)].copy()
        out[(axis, 1)] = labels[tuple(hi)].copy()
    return out


def neighbour_offsets(ndim: int, connectivity: int) -> list[tuple[int, ...]]:
    """Block offsets whose blocks can touch block 0, one of each +/- pair.

    Offsets in {-1, 0, 1}^ndim with at most ``connectivity`` nonzero steps
    and a positive first nonzero step (so each pair of blocks is met once).
    """
    out = []
    for o in itertools.product((-1, 0, 1), repeat=ndim):
        nonzero = [v for v in o if v]
        if nonzero and nonzero[0] > 0 and len(nonzero) <= connectivity:
            out.append(o)
    return out


def face_pairs(faces_a: dict, faces_b: dict, offset, *, connectivity: int,
               base_a: int, base_b: int, first_a: np.ndarray, first_b: np.ndarray):
    """Pairs of global ids that touch across the cut between block a and block a + offset.

    Returns ``(ids_a, ids_b, first_a, first_b)``: global ids (local + base)
    and the first pixel of each.
    """
    axes = [a for a, o in enumerate(offset) if o]
    # block a's plane on the side facing b, and b's plane facing a
    a = faces_a[(axes[0], 1)]
    b = faces_b[(axes[0], 0)]
    for ax in axes[1:]:
        sa = [slice(None)] * a.ndim
        sb = [slice(None)] * b.ndim
        high, low = slice(-1, None), slice(0, 1)
        sa[ax], sb[ax] = (high, low) if offset[ax] > 0 else (low, high)
        a, b = a[tuple(sa)], b[tuple(sb)]
    free = [ax for ax in range(a.ndim) if ax not in axes]
    budget = connectivity - len(axes)
    pa, pb = [], []
    for delta in itertools.product((-1, 0, 1), repeat=len(free)):
        if sum(abs(d) for d in delta) > budget:
            continue
        sa = [slice(None)] * a.ndim
        sb = [slice(None)] * b.ndim
        for ax, d in zip(free, delta):
            n = a.shape[ax]
            if d >= 0:
                sa[ax], sb[ax] = slice(0, n - d), slice(d, n)
            else:
                sa[ax], sb[ax] = slice(-d, n), slice(0, n + d)
        x, y = a[tuple(sa)].ravel(), b[tuple(sb)].ravel()
        both = (x > 0) & (y > 0)
        if both.any():
            pa.append(x[both])
            pb.append(y[both])
    if not pa:
        e = np.empty(0, dtype=np.int64)
        return e, e, e, e
    pairs = np.unique(np.stack([np.concatenate(pa), np.concatenate(pb)]), axis=1)
    la, lb = pairs[0].astype(np.int64), pairs[1].astype(np.int64)
    return la + base_a, lb + base_b, first_a[la - 1], first_b[lb - 1]


def merge_components(ids_a, ids_b, first_a, first_b):
    """Union-find over face ids: ``(ids, key)`` with key = first pixel of the component."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids = np.concatenate([ids_a, ids_b])
    firsts = np.concatenate([first_a, first_b])
    if len(ids) == 0:
        e = np.empty(0, dtype=np.int64)
        return e, e
    uniq, inverse = np.unique(ids, return_inverse=True)
    first = np.empty(len(uniq), dtype=np.int64)
    first[inverse] = firsts
    n = len(uniq)
    half = len(ids_a)
    graph = coo_matrix((np.ones(half, dtype=np.int8), (inverse[:half], inverse[half:])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    key = np.full(comp.max() + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(key, comp, first)
    return uniq, key[comp]


def as_pairs(ids: np.ndarray, keys: np.ndarray):
    """A union (``merge_components``' ``(ids, key)``) as face pairs again: each id paired with
    the smallest id of its component, so that unions merge in a tree."""
    if len(ids) == 0:
        e = np.empty(0, dtype=np.int64)
        return e, e, e, e
    order = np.lexsort((ids, keys))
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    rep = np.repeat(ids[order][starts], np.diff(np.r_[starts, len(order)]))
    return ids[order], rep, sorted_keys, sorted_keys


def remap_block(labels: np.ndarray, table: np.ndarray, dtype) -> np.ndarray:
    """Apply a lookup table indexed by local label (0 stays 0)."""
    return table.astype(dtype, copy=False)[labels]


def chunk_values(block: np.ndarray, *, origin, image_shape):
    """Nonzero values of a label block, their pixel counts and first pixels (global flat)."""
    flat = block.ravel()
    values, first, counts = np.unique(flat, return_index=True, return_counts=True)
    if len(values) and values[0] == 0:
        values, first, counts = values[1:], first[1:], counts[1:]
    coords = np.unravel_index(first, block.shape)
    glob = tuple(c + int(o) for c, o in zip(coords, origin))
    firsts = np.ravel_multi_index(glob, image_shape).astype(np.int64) if len(first) else first.astype(np.int64)
    return values.astype(np.uint64), counts.astype(np.int64), firsts


def border_values(block: np.ndarray, *, touches) -> np.ndarray:
    """Nonzero values on the sides of the block that are image edges.

    ``touches`` is per axis ``(low, high)``: True where that side is the image edge.
    """
    found = [np.empty(0, dtype=np.uint64)]
    for axis, (low, high) in enumerate(touches):
        for side, flag in ((0, low), (-1, high)):
            if flag:
                plane = np.take(block, side, axis=axis)
                found.append(np.unique(plane[plane != 0]).astype(np.uint64))
    return np.unique(np.concatenate(found))


def sorted_concat(*arrays: np.ndarray) -> np.ndarray:
    """The arrays concatenated and sorted (int64 and empty when there are none)."""
    return np.sort(np.concatenate(arrays)) if arrays else np.empty(0, dtype=np.int64)


def chunk_row(flat: np.ndarray, shape, row_stops) -> np.ndarray:
    """Which row of chunks (along the first axis, cut at ``row_stops``) holds each flat index."""
    first_axis = np.unravel_index(flat, shape)[0]
    return np.searchsorted(row_stops, first_axis, side="right")
