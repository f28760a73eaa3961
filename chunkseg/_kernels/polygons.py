"""Outlines of labelled objects as polygons along the pixel edges: exact (a polygon covers
its object's pixels and nothing else), so an outline rasterised back is the object.

:func:`rings` follows the cracks between object and background pixels with the object on
the right-hand side (4-connected: at a corner where two object pixels touch diagonally it
turns right, keeping them apart), keeping only the corners where it turns.
"""

from __future__ import annotations

import numba
import numpy as np

# directions: right, down, left, up, as (row, column) steps
_DR = np.array([0, 1, 0, -1], dtype=np.int64)
_DC = np.array([1, 0, -1, 0], dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _out_edges(p, r, c):
    """Bit k set where an edge leaves corner (r, c) in direction k (object on its right)."""
    tl, tr, bl, br = p[r - 1, c - 1], p[r - 1, c], p[r, c - 1], p[r, c]
    bits = 0
    if br and not tr:
        bits |= 1
    if bl and not br:
        bits |= 2
    if tl and not bl:
        bits |= 4
    if tr and not tl:
        bits |= 8
    return bits


@numba.njit(cache=True, nogil=True)
def _trace(p, dr, dc):
    h, w = p.shape
    seen = np.zeros((h, w, 4), dtype=np.bool_)
    xs = []
    ys = []
    starts = [0]
    for r0 in range(1, h):
        for c0 in range(1, w):
            # a ring starts at each right-going edge not yet followed
            if not (_out_edges(p, r0, c0) & 1) or seen[r0, c0, 0]:
                continue
            r, c, d = r0, c0, 0
            while True:
                seen[r, c, d] = True
                r += dr[d]
                c += dc[d]
                bits = _out_edges(p, r, c)
                if bits & (1 << d) and bits != 5 and bits != 10:
                    nd = d  # straight on
                elif bits == 5 or bits == 10:  # two object pixels touch diagonally here
                    nd = (d + 1) % 4
                else:
                    nd = 0
                    while not bits & (1 << nd):
                        nd += 1
                if nd != d:  # a corner of the outline
                    xs.append(c - 1)
                    ys.append(r - 1)
                d = nd
                if r == r0 and c == c0 and d == 0:
                    break
            starts.append(len(xs))
    return np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64), \
        np.array(starts, dtype=np.int64)


def rings(mask: np.ndarray):
    """The outline rings of a 2D boolean ``mask``: a list of (n, 2) arrays of (x, y) =
    (column, row) pixel-corner coordinates, closed (the first point repeated)."""
    p = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=np.bool_)
    p[1:-1, 1:-1] = mask
    xs, ys, starts = _trace(p, _DR, _DC)
    out = []
    for a, b in zip(starts[:-1], starts[1:]):
        ring = np.stack([xs[a:b], ys[a:b]], axis=1)
        out.append(np.vstack([ring, ring[:1]]))
    return out


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def outline(mask: np.ndarray, origin=(0, 0)):
    """The pixels of a 2D boolean ``mask`` as a shapely Polygon (or MultiPolygon where they
    are apart), offset by ``origin`` (row, column); valid (``shapely.make_valid`` where a
    ring touches itself at a corner)."""
    import shapely

    found = rings(mask)
    offset = np.array([origin[1], origin[0]], dtype=np.float64)
    shells, holes = [], []
    for ring in found:
        # object on the right with y pointing down: outer rings have positive area here
        (shells if _signed_area(ring) > 0 else holes).append(ring + offset)
    if len(shells) == 1:
        geometry = shapely.Polygon(shells[0], holes)
    else:
        polygons = [shapely.Polygon(s) for s in shells]
        inner = [[] for _ in shells]
        for hole in holes:
            point = shapely.Point(hole[0] + 0.5 * np.sign(hole[1] - hole[0]))
            for k, poly in enumerate(polygons):
                if poly.covers(point):
                    inner[k].append(hole)
                    break
        geometry = shapely.MultiPolygon([shapely.Polygon(s, h) for s, h in zip(shells, inner)])
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    return geometry
