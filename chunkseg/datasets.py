"""Images to test and benchmark on: the bundled real image and synthetic nuclei.

Synthetic nuclei are generated tile by tile from a fixed seed, so any region
of an arbitrarily large image can be made on its own (chunk by chunk straight
into Zarr, never whole in memory) and always has the same pixels.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np

__all__ = ["human_mitosis", "synthetic_nuclei", "write_synthetic_nuclei"]

_TILE = 128


def human_mitosis() -> np.ndarray:
    """The bundled 512x512 uint8 HeLa DNA image (CC0, Moffat et al., Cell 2006)."""
    import tifffile

    ref = importlib.resources.files("chunkseg") / "data" / "human_mitosis.tif"
    with importlib.resources.as_file(ref) as path:
        return tifffile.imread(path)


def _tile_nuclei(seed: int, tile: tuple, ndim: int, radius: tuple[float, float], density: float):
    rng = np.random.default_rng([seed, *tile])
    volume = _TILE**ndim
    mean_r = (radius[0] + radius[1]) / 2
    expected = density * volume / (mean_r**ndim * (np.pi if ndim == 2 else 4.19))
    n = rng.poisson(expected)
    origin = np.asarray(tile) * _TILE
    centres = origin + rng.uniform(0, _TILE, size=(n, ndim))
    radii = rng.uniform(radius[0], radius[1], size=(n, ndim))
    brightness = rng.uniform(110, 200, size=n)
    return centres, radii, brightness


def synthetic_nuclei(shape, *, region=None, seed: int = 0, radius=(6.0, 12.0),
                     density: float = 0.35, noise: float = 6.0) -> np.ndarray:
    """Fluorescence-like nuclei (uint8): bright ellipsoids, often touching.

    Parameters
    ----------
    shape : tuple
        Shape of the whole (virtual) image, 2D or 3D.
    region : tuple of slice, optional
        The part to render (default: all of it). Renders of adjacent regions
        join seamlessly.
    seed : int
        Everything follows from it.
    radius : (min, max)
        Semi-axes of the nuclei in pixels.
    density : float
        Expected fraction of the area covered.
    """
    ndim = len(shape)
    if region is None:
        region = tuple(slice(0, s) for s in shape)
    start = np.array([r.start for r in region])
    stop = np.array([r.stop for r in region])
    out = np.zeros(tuple(stop - start), dtype=np.float32)
    reach = int(np.ceil(radius[1])) + 1
    lo_tile = np.maximum((start - reach) // _TILE, 0)
    hi_tile = (stop + reach - 1) // _TILE + 1
    for tile in np.ndindex(*(hi_tile - lo_tile)):
        tile = tuple(int(t + l) for t, l in zip(tile, lo_tile))
        centres, radii, brightness = _tile_nuclei(seed, tile, ndim, radius, density)
        for c, r, b in zip(centres, radii, brightness):
            lo = np.maximum(np.floor(c - r).astype(int) - 1, start)
            hi = np.minimum(np.ceil(c + r).astype(int) + 2, stop)
            hi = np.minimum(hi, np.asarray(shape))
            if np.any(hi <= lo):
                continue
            grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
            q = sum(((g + 0.5 - ci) / ri) ** 2 for g, ci, ri in zip(grids, c, r))
            blob = b * np.clip(1.3 - q, 0, 1) ** 0.5
            sl = tuple(slice(a - s, b_ - s) for a, b_, s in zip(lo, hi, start))
            np.maximum(out[sl], blob, out=out[sl])
    # noise from per-tile generators, so that it too is region-independent
    first = start // _TILE
    last = (stop - 1) // _TILE
    for tile in np.ndindex(*(last - first + 1)):
        tile = tuple(int(t + f) for t, f in zip(tile, first))
        rng = np.random.default_rng([seed, *tile, 7])
        t0 = np.asarray(tile) * _TILE
        block = rng.normal(20.0, noise, size=(_TILE,) * ndim).astype(np.float32)
        lo = np.maximum(t0, start)
        hi = np.minimum(t0 + _TILE, stop)
        src = tuple(slice(a - t, b - t) for a, b, t in zip(lo, hi, t0))
        dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))
        out[dst] += block[src]
    return np.clip(out, 0, 255).astype(np.uint8)


def write_synthetic_nuclei(path, shape, *, chunks, seed: int = 0, **kwargs):
    """Write :func:`synthetic_nuclei` chunk by chunk into a new Zarr array.

    Memory stays at a few chunks whatever the image size. Returns the path.
    """
    import dask
    import zarr

    path = Path(path)
    z = zarr.create_array(str(path), shape=shape, chunks=chunks, dtype=np.uint8, fill_value=0,
                          config={"write_empty_chunks": True},
                          overwrite=True)
    grid = [range(0, s, c) for s, c in zip(shape, chunks)]

    def write(origin):
        region = tuple(slice(o, min(o + c, s)) for o, c, s in zip(origin, chunks, shape))
        z[region] = synthetic_nuclei(shape, region=region, seed=seed, **kwargs)

    tasks = [dask.delayed(write)(origin) for origin in __import__("itertools").product(*grid)]
    dask.compute(*tasks)
    return path
