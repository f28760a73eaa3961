"""Images to test and benchmark on: the bundled real image and synthetic nuclei.

Synthetic nuclei are generated tile by tile from a fixed seed, so any region
of an arbitrarily large image can be made on its own (chunk by chunk straight
into Zarr, never whole in memory) and always has the same pixels.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np

__all__ = ["human_mitosis", "synthetic_cells", "synthetic_he", "synthetic_nuclei",
           "write_synthetic_cells", "write_synthetic_he", "write_synthetic_nuclei"]

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
    out += _noise(start, stop, seed, salt=7, mean=20.0, sigma=noise)
    return np.clip(out, 0, 255).astype(np.uint8)


def _noise(start, stop, seed: int, *, salt: int, mean: float, sigma: float) -> np.ndarray:
    """Gaussian noise over ``[start, stop)`` from per-tile generators: region-independent."""
    start, stop = np.asarray(start), np.asarray(stop)
    out = np.zeros(tuple(stop - start), dtype=np.float32)
    first = start // _TILE
    last = (stop - 1) // _TILE
    for tile in np.ndindex(*(last - first + 1)):
        tile = tuple(int(t + f) for t, f in zip(tile, first))
        rng = np.random.default_rng([seed, *tile, salt])
        t0 = np.asarray(tile) * _TILE
        block = rng.normal(mean, sigma, size=(_TILE,) * len(start)).astype(np.float32)
        lo = np.maximum(t0, start)
        hi = np.minimum(t0 + _TILE, stop)
        src = tuple(slice(a - t, b - t) for a, b, t in zip(lo, hi, t0))
        dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))
        out[dst] = block[src]
    return out


def _cell_centres(seed: int, cells, lo, hi, spacing: float):
    """Centres, global ids and nucleus semi-axes of the grid cells ``lo <= cell < hi``."""
    centres, ids, axes = [], [], []
    for cell in np.ndindex(*(hi - lo)):
        cell = tuple(int(c + l) for c, l in zip(cell, lo))
        rng = np.random.default_rng([seed, *cell, 11])
        present = rng.random() < 0.9
        jitter = rng.uniform(-0.3, 0.3, size=len(cell))
        semi = rng.uniform(0.17, 0.25, size=len(cell)) * spacing
        if present:
            centres.append((np.asarray(cell) + 0.5 + jitter) * spacing)
            ids.append(int(np.ravel_multi_index(cell, cells)) + 1)
            axes.append(semi)
    ndim = len(lo)
    return (np.reshape(centres, (-1, ndim)), np.asarray(ids, dtype=np.uint32),
            np.reshape(axes, (-1, ndim)))


def synthetic_cells(shape, *, region=None, seed: int = 0, spacing: float = 32.0,
                    noise: float = 4.0):
    """Cells with nuclei and bright membranes (Cell-Painting-like), and their true nuclei.

    Cells are the Voronoi regions (up to ``0.8 * spacing`` from their centre)
    of jittered grid points ``spacing`` apart (one grid cell in ten empty);
    each has an elliptical nucleus around its centre. Returns ``(image,
    nuclei)``: ``image`` is uint8 of shape ``(2, *region)``, channel 0 the
    DNA stain (bright nuclei), channel 1 a membrane stain (bright cell
    borders over a dim cytoplasm); ``nuclei`` uint32 labels whose id is the
    grid cell's flat index + 1. Regions render independently and join
    seamlessly, like :func:`synthetic_nuclei`.
    """
    from scipy.spatial import cKDTree

    shape = tuple(int(s) for s in shape)
    if region is None:
        region = tuple(slice(0, s) for s in shape)
    start = np.array([r.start for r in region])
    stop = np.array([r.stop for r in region])
    cells = tuple(int(np.ceil(s / spacing)) for s in shape)
    lo = np.maximum(np.floor(start / spacing).astype(int) - 2, 0)
    hi = np.minimum(np.ceil(stop / spacing).astype(int) + 2, cells)
    centres, ids, semi = _cell_centres(seed, cells, lo, hi, spacing)
    grids = np.meshgrid(*[np.arange(a, b) + 0.5 for a, b in zip(start, stop)], indexing="ij")
    points = np.stack([g.ravel() for g in grids], axis=1)
    size = tuple(stop - start)
    nuclei = np.zeros(size, dtype=np.uint32)
    dna = np.full(size, 15.0, dtype=np.float32)
    membrane = np.full(size, 10.0, dtype=np.float32)
    if len(centres) >= 2:
        dist, nearest = cKDTree(centres).query(points, k=2)
        d1, d2, own = dist[:, 0], dist[:, 1], nearest[:, 0]
        reach = 0.8 * spacing
        inside = d1 < reach
        q = (((points - centres[own]) / semi[own]) ** 2).sum(axis=1)
        nucleus = inside & (q <= 1.0)
        border = inside & ((d2 - d1 < 2.0) | (reach - d1 < 1.5))
        nuclei.ravel()[nucleus] = ids[own[nucleus]]
        dna.ravel()[nucleus] = 150.0
        membrane.ravel()[inside] = 50.0
        membrane.ravel()[border] = 160.0
    dna += _noise(start, stop, seed, salt=12, mean=0.0, sigma=noise)
    membrane += _noise(start, stop, seed, salt=13, mean=0.0, sigma=noise)
    image = np.stack([dna, membrane])
    return np.clip(image, 0, 255).astype(np.uint8), nuclei


def write_synthetic_cells(directory, shape, *, chunks, seed: int = 0, **kwargs) -> dict:
    """Write :func:`synthetic_cells` chunk by chunk into ``directory``: ``dna.zarr`` and
    ``membrane.zarr`` (uint8, the two channels) and ``nuclei.zarr`` (uint32, the true
    nuclei). Memory stays at a few chunks whatever the size. Returns the three paths."""
    import itertools

    import dask
    import zarr

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shape, chunks = tuple(shape), tuple(chunks)
    paths = {name: directory / f"{name}.zarr" for name in ("dna", "membrane", "nuclei")}
    arrays = {name: zarr.create_array(str(path), shape=shape, chunks=chunks,
                                      dtype=np.uint32 if name == "nuclei" else np.uint8,
                                      fill_value=0, overwrite=True,
                                      config={"write_empty_chunks": True})
              for name, path in paths.items()}

    def write(origin):
        region = tuple(slice(o, min(o + c, s)) for o, c, s in zip(origin, chunks, shape))
        image, nuclei = synthetic_cells(shape, region=region, seed=seed, **kwargs)
        arrays["dna"][region] = image[0]
        arrays["membrane"][region] = image[1]
        arrays["nuclei"][region] = nuclei

    grid = [range(0, s, c) for s, c in zip(shape, chunks)]
    dask.compute(*[dask.delayed(write)(o) for o in itertools.product(*grid)])
    return paths


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


def write_synthetic_series(path, shape, *, chunks, channels: int = 1, seed: int = 0,
                           names: list | None = None, scale=None, units: dict | None = None,
                           **kwargs):
    """Write a time series of :func:`synthetic_nuclei` as an OME-Zarr 0.5 image, axes
    ``tczyx`` (``tcyx`` for 2D): ``shape`` is (T, Z, Y, X) or (T, Y, X), time point ``t``
    drawn with seed ``seed + t``; channel 0 holds the nuclei, channel ``k`` other nuclei
    (seed offset ``1000 k``, so intensities differ per channel). ``chunks``: spatial.
    ``names``: the channels' labels. Chunk by chunk; returns the path."""
    import itertools

    import dask

    from .io import writers

    shape, chunks = tuple(shape), tuple(chunks)
    spatial = shape[1:]
    axes = "tc" + "zyx"[-len(spatial):]
    full = (shape[0], channels) + spatial
    group = writers.create_image(path, shape=full, chunks=(1, 1) + chunks, dtype=np.uint8,
                                 axes=axes, channels=names, scale=scale, units=units)
    z = group["0"]

    def write(t, c, origin):
        region = tuple(slice(o, min(o + n, s)) for o, n, s in zip(origin, chunks, spatial))
        z[(t, c) + region] = synthetic_nuclei(spatial, region=region, seed=seed + t + 1000 * c,
                                              **kwargs)

    grid = [range(0, s, c) for s, c in zip(spatial, chunks)]
    dask.compute(*[dask.delayed(write)(t, c, o) for t in range(shape[0])
                   for c in range(channels) for o in itertools.product(*grid)])
    return Path(path)


#: Side of the cells of the coarse grid on which :func:`synthetic_he` places tissue pieces.
_TISSUE_CELL = 2048


def synthetic_tissue(shape, *, region=None, seed: int = 0, fraction: float = 0.4,
                     cell: int = _TISSUE_CELL) -> np.ndarray:
    """Where :func:`synthetic_he` has tissue: one ellipse per ``cell``-pixel square of a
    coarse grid (covering about ``fraction`` of it), the rest glass. ``fraction=1``: all
    tissue. Larger cells leave whole chunks of glass, as a slide's margins do."""
    if region is None:
        region = tuple(slice(0, s) for s in shape)
    start = np.array([r.start for r in region])
    stop = np.array([r.stop for r in region])
    if fraction >= 1:
        return np.ones(tuple(stop - start), dtype=bool)
    out = np.zeros(tuple(stop - start), dtype=bool)
    radius = np.sqrt(fraction / np.pi)  # of the cell's side, for an ellipse of that area
    first = np.maximum(start // cell - 1, 0)
    last = (stop - 1) // cell + 1
    grids = np.ogrid[tuple(slice(a, b) for a, b in zip(start, stop))]
    for square in np.ndindex(*(last - first + 1)):
        square = np.asarray(square) + first
        rng = np.random.default_rng([seed, *square.tolist(), 11])
        centre = (square + rng.uniform(0.35, 0.65, size=2)) * cell
        axes = radius * cell * rng.uniform(0.8, 1.25, size=2)
        axes[1] = (radius * cell) ** 2 / axes[0]  # keep the area
        q = sum(((g + 0.5 - c) / a) ** 2 for g, c, a in zip(grids, centre, axes))
        out |= q <= 1
    return out


def synthetic_he(shape, *, region=None, seed: int = 0, tissue: float = 0.4,
                 cell: int = _TISSUE_CELL) -> np.ndarray:
    """A brightfield H&E-like RGB image (uint8, channels last): hematoxylin nuclei
    (:func:`synthetic_nuclei`) in eosin-stained tissue pieces on white glass, composed with
    ``skimage.color.combine_stains`` and the Ruifrok-Johnston vectors. ``tissue``: the
    fraction of tissue (see :func:`synthetic_tissue`). Any region renders on its own."""
    from skimage.color import combine_stains, rgb_from_hed

    if region is None:
        region = tuple(slice(0, s) for s in shape)
    inside = synthetic_tissue(shape, region=region, seed=seed, fraction=tissue, cell=cell)
    nuclei = synthetic_nuclei(shape, region=region, seed=seed).astype(np.float32) \
        if inside.any() else np.zeros(inside.shape, np.float32)
    start = [r.start for r in region]
    stop = [r.stop for r in region]
    grain = _noise(start, stop, seed, salt=13, mean=0.0, sigma=1.0)
    h = np.clip(nuclei - 20, 0, None) / 235 * 0.12 * inside
    e = (0.03 + 0.004 * grain) * inside
    stains = np.stack([h, e, np.zeros_like(h)], axis=-1)
    rgb = combine_stains(stains, rgb_from_hed) * 255 - 12 + 2.0 * grain[..., None]
    return np.clip(rgb, 0, 255).astype(np.uint8)


def write_synthetic_he(path, shape, *, chunks, seed: int = 0, tissue: float = 0.4,
                       levels: int = 1, cell: int = _TISSUE_CELL):
    """Write :func:`synthetic_he` (``shape`` is Y, X) chunk by chunk into a new OME-Zarr
    image with axes ``cyx`` (chunks of all three channels), and ``levels`` pyramid levels,
    each the 2x2 mean of the last. Returns the path."""
    import itertools

    import dask

    from .io import writers

    path = Path(path)
    chunks = tuple(chunks)
    group = writers.create_image(path, shape=(3, *shape), chunks=(3, *chunks), dtype=np.uint8,
                                 axes="cyx", levels=levels, channels=["R", "G", "B"])
    z = group["0"]

    def write(origin):
        region = tuple(slice(o, min(o + c, s)) for o, c, s in zip(origin, chunks, shape))
        z[(slice(None), *region)] = np.moveaxis(
            synthetic_he(shape, region=region, seed=seed, tissue=tissue, cell=cell), -1, 0)

    grid = [range(0, s, c) for s, c in zip(shape, chunks)]
    dask.compute(*[dask.delayed(write)(o) for o in itertools.product(*grid)])
    for level in range(1, levels):
        src, dst = group[str(level - 1)], group[str(level)]

        def halve(origin, src=src, dst=dst):
            region = tuple(slice(o, min(o + c, s)) for o, c, s in
                           zip(origin, dst.chunks[1:], dst.shape[1:]))
            block = src[(slice(None), *(slice(2 * r.start, 2 * r.stop) for r in region))]
            c, h, w = block.shape
            mean = block.reshape(c, h // 2, 2, w // 2, 2).astype(np.float32).mean(axis=(2, 4))
            dst[(slice(None), *region)] = mean.round().astype(np.uint8)

        grid = [range(0, s, c) for s, c in zip(dst.shape[1:], dst.chunks[1:])]
        dask.compute(*[dask.delayed(halve)(o) for o in itertools.product(*grid)])
    return path
