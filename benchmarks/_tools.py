"""The measured programs, one per tool; each runs in its own process.

    python benchmarks/_tools.py NAME ARGS...

Each prints one JSON line with what the parent needs (value, counts, paths).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def skimage_otsu(path):
    import zarr
    from skimage.filters import threshold_otsu

    t0 = time.perf_counter()
    image = zarr.open_array(path, mode="r")[:]
    return {"threshold": float(threshold_otsu(image)), "compute_s": time.perf_counter() - t0}


def chunkseg_otsu(path, workers):
    import chunkseg
    from chunkseg.cluster import scheduler

    with scheduler("processes", workers=int(workers)):
        t0 = time.perf_counter()
        t = chunkseg.threshold_otsu(chunkseg.open_image(path))
        elapsed = time.perf_counter() - t0
    return {"threshold": float(t), "compute_s": elapsed}


def skimage_pipeline(path, out, min_distance):
    """The classic tutorial pipeline on the whole image (peak_local_max without labels=)."""
    import zarr

    t0 = time.perf_counter()
    image = zarr.open_array(path, mode="r")[:]
    return _whole_image_pipeline(image, out, min_distance, t0)


def _whole_image_pipeline(image, out, min_distance, t0):
    """Otsu, distance, peak_local_max (no labels=), watershed; the labels saved to ``out``."""
    import scipy.ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    mask = image > threshold_otsu(image)
    distance = ndi.distance_transform_edt(mask)
    coords = peak_local_max(distance, min_distance=int(min_distance),
                            footprint=np.ones((3,) * image.ndim), exclude_border=False)
    markers = np.zeros(image.shape, dtype=np.int32)
    flat = np.sort(np.ravel_multi_index(tuple(coords.T), image.shape))
    markers.flat[flat] = np.arange(1, len(flat) + 1)
    labels = watershed(-distance, markers, mask=mask)
    elapsed = time.perf_counter() - t0
    np.save(out, labels.astype(np.uint32))
    return {"objects": int(len(flat)), "compute_s": elapsed}


def chunkseg_segment(path, out, min_distance, scheduler_spec, workers, memory_limit="auto"):
    """What ``chunkseg segment`` runs (start-up and cluster start included in wall time);
    ``memory_limit``: each worker's (``--memory-limit``)."""
    from chunkseg.run import run_segment

    t0 = time.perf_counter()
    report = run_segment(path, out, min_distance=int(min_distance), overwrite=True,
                         scheduler=scheduler_spec, workers=int(workers),
                         memory_limit=memory_limit)
    return {"compute_s": time.perf_counter() - t0, "objects": report.objects}


def edt_pass(path):
    """One single-threaded ``edt`` distance transform of the whole foreground mask (Otsu),
    the yardstick of the 3D target: compute_s is the transform alone."""
    import edt
    import zarr
    from skimage.filters import threshold_otsu

    image = zarr.open_array(path, mode="r")[:]
    mask = image > threshold_otsu(image)
    mask = mask.view(np.uint8)  # edt's fastest input: one label of uint8 (bool: 2x slower)
    t0 = time.perf_counter()
    edt.edt(mask, parallel=1)
    return {"compute_s": time.perf_counter() - t0, "voxels": int(mask.size)}


def naive_map_overlap(path, out, min_distance, depth):
    """What people write first: map_overlap a whole pipeline per chunk, no stitching."""
    import dask.array as da
    import scipy.ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    import chunkseg

    t0 = time.perf_counter()
    image = chunkseg.open_image(path)
    t = chunkseg.threshold_otsu(image)

    nblocks = image.numblocks

    def block(x, block_info=None):
        mask = x > t
        d = ndi.distance_transform_edt(mask)
        c = peak_local_max(d, min_distance=int(min_distance), footprint=np.ones((3,) * x.ndim),
                           exclude_border=False)
        m = np.zeros(x.shape, np.int64)
        m[tuple(c.T)] = np.arange(1, len(c) + 1)
        labels = watershed(-d, m, mask=mask).astype(np.uint64)
        # ids made unique per chunk (the usual fix), so only cut objects count against it
        k = np.ravel_multi_index(block_info[0]["chunk-location"], nblocks)
        labels[labels > 0] += np.uint64(k) << np.uint64(32)
        return labels

    labels = image.map_overlap(block, depth=int(depth), boundary="none", dtype=np.uint64)
    da.to_zarr(labels, out, overwrite=True)
    return {"compute_s": time.perf_counter() - t0}


def _store_labels(labels, out):
    import dask.array as da
    import zarr

    z = zarr.create_array(out, shape=labels.shape, chunks=tuple(c[0] for c in labels.chunks),
                          dtype=labels.dtype, overwrite=True)
    da.store(labels, z, lock=False)


def chunkseg_label(path, out, threshold, scheduler_spec, workers):
    import chunkseg
    from chunkseg.cluster import scheduler

    with scheduler(scheduler_spec, workers=int(workers)):
        t0 = time.perf_counter()
        _store_labels(chunkseg.label(chunkseg.open_image(path) > int(threshold)), out)
        elapsed = time.perf_counter() - t0
    return {"compute_s": elapsed}


def daskimage_label(path, out, threshold, scheduler_spec, workers):
    import dask_image.ndmeasure

    import chunkseg
    from chunkseg.cluster import scheduler

    with scheduler(scheduler_spec, workers=int(workers)):
        t0 = time.perf_counter()
        labels, n = dask_image.ndmeasure.label(chunkseg.open_image(path) > int(threshold))
        _store_labels(labels, out)
        elapsed = time.perf_counter() - t0
    return {"compute_s": elapsed}


def scipy_label(path, out, threshold):
    import scipy.ndimage as ndi
    import zarr

    t0 = time.perf_counter()
    image = zarr.open_array(path, mode="r")[:]
    labels, n = ndi.label(image > int(threshold))
    elapsed = time.perf_counter() - t0
    np.save(out, labels)
    return {"objects": int(n), "compute_s": elapsed}


def skimage_cells(directory, out, method, threshold):
    """Cells on the whole image: skimage's watershed of the membrane stain from the nuclei
    inside the mask, or expand_labels of the nuclei (10 px) inside it."""
    import zarr
    from skimage.segmentation import expand_labels, watershed

    t0 = time.perf_counter()
    membrane = zarr.open_array(f"{directory}/membrane.zarr", mode="r")[:]
    nuclei = zarr.open_array(f"{directory}/nuclei.zarr", mode="r")[:]
    mask = (membrane > float(threshold)) | (nuclei > 0)
    if method == "watershed":
        cells = watershed(membrane, nuclei, mask=mask)
    else:
        cells = np.where(mask, expand_labels(nuclei, 10), 0)
    elapsed = time.perf_counter() - t0
    np.save(out, cells)
    return {"compute_s": elapsed}


def chunkseg_cells(directory, out, method, threshold, workers):
    """What ``chunkseg cells NUCLEI IMAGE OUT --elevation image --threshold T`` runs."""
    from chunkseg.run_cells import run_cells

    t0 = time.perf_counter()
    report = run_cells(f"{directory}/nuclei.zarr", f"{directory}/membrane.zarr", out,
                       method=method, elevation="image", distance=10, threshold=float(threshold),
                       overwrite=True, scheduler="processes", workers=int(workers))
    return {"compute_s": time.perf_counter() - t0, "cells": report.cells}


def skimage_he(path, out, min_distance):
    """The whole-image brightfield pipeline: rgb2hed's hematoxylin, then Otsu, distance,
    peak_local_max and watershed, as a pathology notebook runs it."""
    import zarr
    from skimage.color import rgb2hed

    t0 = time.perf_counter()
    rgb = np.moveaxis(zarr.open_array(f"{path}/0", mode="r")[:], 0, -1)
    image = rgb2hed(rgb)[..., 0]
    del rgb
    return _whole_image_pipeline(image, out, min_distance, t0)


def chunkseg_he(path, out, min_distance, workers, tissue):
    """What ``chunkseg segment SLIDE OUT --stain hematoxylin --tissue T`` runs."""
    from chunkseg.run import run_segment

    t0 = time.perf_counter()
    report = run_segment(path, out, stain="hematoxylin", tissue=tissue,
                         min_distance=int(min_distance), overwrite=True, scheduler="processes",
                         workers=int(workers))
    found = report.to_dict()["tissue"] or {}
    return {"compute_s": time.perf_counter() - t0, "objects": report.objects,
            "threshold": float(report.threshold), "skipped": found.get("chunks_skipped"),
            "chunks": found.get("chunks")}


def chunkseg_series(path, out, workers, time_spec):
    """What ``chunkseg segment SERIES OUT --time all`` runs: every time point in one run."""
    from chunkseg.run import run_segment

    t0 = time.perf_counter()
    report = run_segment(path, out, time=time_spec, overwrite=True, scheduler="processes",
                         workers=int(workers), min_distance=5)
    return {"compute_s": time.perf_counter() - t0, "objects": report.objects}


def chunkseg_separate(path, out, workers, count):
    """``count`` separate ``chunkseg segment SERIES OUT_t --time t`` commands, one after the
    other (a shell loop over the time points), each its own process and cluster."""
    import subprocess

    t0 = time.perf_counter()
    for t in range(int(count)):
        subprocess.run([sys.executable, "-m", "chunkseg", "-q", "segment", str(path),
                        f"{out}/t{t}.zarr", "--time", str(t), "--overwrite", "--no-report",
                        "--scheduler", "processes", "--workers", str(workers),
                        "--min-distance", "5"], check=True)
    return {"compute_s": time.perf_counter() - t0}


def chunkseg_measure(path, labels, channels, workers):
    """The object table of stored labels with the intensities of one channel or of every
    channel (``chunkseg.measure`` on 2 worker processes): the measuring pass alone."""
    import chunkseg
    from chunkseg.cluster import scheduler
    from chunkseg.io import readers

    with scheduler("processes", workers=int(workers)):
        t0 = time.perf_counter()
        names = None
        if channels == "all":
            image, names = readers.channels_last(path, channels="all")
        else:
            image = chunkseg.open_image(path, channel=int(channels))
        table = chunkseg.measure(chunkseg.open_labels(labels), image, channel_names=names)
        elapsed = time.perf_counter() - t0
    return {"compute_s": elapsed, "rows": len(table), "columns": len(table.columns)}


def chunkseg_segment_table(path, out, table, channels, workers):
    """``chunkseg segment IMAGE OUT --channel 0 --table T [--measure-channels all]``."""
    from chunkseg.run import run_segment

    t0 = time.perf_counter()
    report = run_segment(path, out, channel=0, table=table, overwrite=True,
                         measure_channels=None if channels == "one" else "all",
                         scheduler="processes", workers=int(workers), min_distance=5)
    return {"compute_s": time.perf_counter() - t0, "objects": report.objects}


def graph_size(nchunks):
    """Tasks and build time of chunkseg's graphs for a lazy input of about ``nchunks`` chunks."""
    import dask.array as da

    import chunkseg
    from chunkseg.segment import Seeds

    side = int(round(int(nchunks) ** 0.5))
    c = 64
    shape = (side * c, side * c)
    mask = da.zeros(shape, chunks=c, dtype=bool)
    out = {"chunks": side * side}
    t0 = time.perf_counter()
    labels = chunkseg.label(mask)
    out["label"] = {"build_s": time.perf_counter() - t0, "tasks": len(labels.__dask_graph__())}
    seeds = Seeds(flat=np.arange(0, shape[0] * shape[1], 4099, dtype=np.int64), shape=shape,
                  chunks=mask.chunks, max_distance=5.0, halo=(8, 8), undecided=0)
    t0 = time.perf_counter()
    ws = chunkseg.watershed(mask, seeds, min_distance=5)
    out["watershed"] = {"build_s": time.perf_counter() - t0, "tasks": len(ws.__dask_graph__())}
    from chunkseg.table import measure_graph

    t0 = time.perf_counter()
    g, roots = measure_graph(ws)
    out["measure"] = {"build_s": time.perf_counter() - t0,
                      "tasks": len(g.dsk)}
    return out


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    print(json.dumps(globals()[name](*args)))
