"""chunkseg beside scikit-image and its peers, side by side in one run.

    python benchmarks/run.py [--quick] [--json OUT] [--case NAME ...]

Every measured program runs in its own process (benchmarks/_tools.py); wall
time includes interpreter start-up, imports and cluster start; compute time
is what the tool spends after that (reading the input included). Peak memory
is the largest sum of the RSS of that process and its children (worker
processes included). The reference is scikit-image (or scipy for label) on
the whole image in memory. Each tool runs
``--repeat`` times and the median is reported. Fidelity sits next to speed:
label agreement on foreground pixels and object F1 (IoU > 0.5) against the
whole-image scikit-image result, so a fast but wrong method cannot look good.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _measure  # noqa: E402

TOOLS = str(HERE / "_tools.py")
OUT = HERE / "out"


def _input(shape, chunks, seed=0):
    from chunkseg.datasets import write_synthetic_nuclei

    name = f"nuclei_{'x'.join(map(str, shape))}_c{chunks[0]}_s{seed}.zarr"
    path = OUT / name
    if not (path / "zarr.json").exists():
        print(f"  generating {name} chunk by chunk ...", flush=True)
        radius = (6.0, 12.0) if len(shape) == 2 else (5.0, 9.0)
        write_synthetic_nuclei(path, shape, chunks=chunks, seed=seed, radius=radius)
    return path


def _median_run(args, repeat):
    return _medians([_measure.python(TOOLS, *args) for _ in range(repeat)])


def _alternating_runs(first, second, repeat):
    """``repeat`` runs of each, alternating (first, second, first, ...): a shared machine's
    slow spell then falls on both, not on one side of a ratio."""
    runs = [(_measure.python(TOOLS, *first), _measure.python(TOOLS, *second))
            for _ in range(repeat)]
    return _medians([a for a, _ in runs]), _medians([b for _, b in runs])


def _medians(runs):
    wall = statistics.median(r["wall_s"] for r in runs)
    compute = statistics.median(r["result"].get("compute_s", r["wall_s"]) for r in runs)
    peak = max(r["peak_bytes"] for r in runs)
    return {"wall_s": wall, "compute_s": compute, "peak_bytes": peak, "result": runs[-1]["result"],
            "runs": [r["wall_s"] for r in runs]}


def _split_tool(tool: str):
    """'chunkseg (2 threads)' -> ('chunkseg', '2 threads'); tool names as the field spells them."""
    name, _, setup = tool.partition(" (")
    base = name.split()[0]
    return base, (name[len(base):].strip() + (" " if name != base else "") + setup.rstrip(")")).strip()


def _row(case, tool, r, ref, px, fidelity):
    name, setup = _split_tool(tool)
    return {"case": case, "tool": name, "setup": setup, "time_s": r["wall_s"],
            "compute_s": r["compute_s"],
            "mpx_s": px / r["wall_s"] / 1e6, "peak_gb": r["peak_bytes"] / 1e9,
            "ratio_vs_skimage": ref["wall_s"] / r["wall_s"],
            "compute_ratio": ref["compute_s"] / r["compute_s"], "fidelity": fidelity}


def _fidelity(labels, reference):
    """Pixel agreement after one-to-one matching (IoU > 0.5), and object F1.

    Matching first keeps the comparison fair to tools that number objects
    differently; chunkseg's ids equal scikit-image's, so for it this is plain
    pixel equality.
    """
    sys.path.insert(0, str(HERE.parent / "tests"))
    from _reference import f1_at_iou, matched_agreement

    return {"agreement": matched_agreement(labels, reference), "f1": float(f1_at_iou(labels, reference))}


def case_threshold(quick, repeat):
    shape = (8192, 8192) if quick else (32768, 32768)
    path = _input(shape, (1024, 1024) if quick else (2048, 2048))
    px = float(np.prod(shape))
    rows = []
    cs = _median_run(["chunkseg_otsu", path, 2], repeat)
    sk = _median_run(["skimage_otsu", path], repeat)
    for tool, r in [("chunkseg (2 worker processes)", cs), ("scikit-image (loads it whole)", sk)]:
        same = r["result"]["threshold"] == sk["result"]["threshold"]
        rows.append(_row(f"otsu {'x'.join(map(str, shape))} uint8", tool, r, sk, px,
                         f"{'identical' if same else 'DIFFERS'}: {r['result']['threshold']:g}"))
    return rows


def _segment_case(shape, chunks, min_distance, repeat, label, naive_depth):
    return _segment_case_at(_input(shape, chunks), shape, min_distance, repeat, label, naive_depth)


def _segment_case_at(path, shape, min_distance, repeat, label, naive_depth):
    import zarr

    px = float(np.prod(shape))
    ref_path = OUT / f"{path.stem}_skimage.npy"
    sk = _median_run(["skimage_pipeline", path, ref_path, min_distance], repeat)
    reference = np.load(ref_path)
    rows = []
    runs = [("chunkseg (2 worker processes)", ["chunkseg_segment", path, OUT / "cs2.zarr", min_distance, "processes", 2], OUT / "cs2.zarr/0"),
            ("chunkseg (1 worker process)", ["chunkseg_segment", path, OUT / "cs1.zarr", min_distance, "processes", 1], OUT / "cs1.zarr/0"),
            ("chunkseg (2 threads)", ["chunkseg_segment", path, OUT / "cst.zarr", min_distance, "threads", 2], OUT / "cst.zarr/0"),
            ("dask map_overlap (naive, no stitching)", ["naive_map_overlap", path, OUT / "naive.zarr", min_distance, naive_depth], OUT / "naive.zarr")]
    results = {}
    for tool, args, out in runs:
        r = _median_run(args, repeat)
        labels = zarr.open_array(str(out), mode="r")[:]
        results[tool] = (r, _fidelity(labels, reference))
    results["scikit-image (whole image)"] = (sk, {"agreement": 1.0, "f1": 1.0})
    for tool, (r, fid) in results.items():
        rows.append(_row(label, tool, r, sk, px, f"{100 * fid['agreement']:.3f}% px, F1 {fid['f1']:.4f}"))
    return rows


def case_segment2d(quick, repeat):
    sizes = [1024, 2048] if quick else [1024, 4096, 8192]
    rows = []
    for n in sizes:
        shape = (n, n)
        chunks = (1024, 1024) if n > 1024 else (256, 256)
        rows += _segment_case(shape, chunks, 7, repeat, f"watershed {n}x{n} uint8", 32)
    return rows


def _real_tiles():
    """Real nuclei images: the bundled human mitosis (CC0) and, when ../shared/data is
    there, the DSB 2018 / StarDist 2D example."""
    from chunkseg.datasets import human_mitosis

    tiles = [("human-mitosis", human_mitosis())]
    dsb = HERE.parent.parent / "shared" / "data" / "dsb2018-stardist" / "img2d.tif"
    if dsb.exists():
        import tifffile

        tiles.append(("dsb2018", tifffile.imread(dsb)))
    return tiles


def case_mosaic(quick, repeat):
    """Real images tiled into mosaics, mirrored so that tiles meet smoothly."""
    from chunkseg.io.writers import write_mosaic

    reps = 4 if quick else 8
    rows = []
    for name, tile in _real_tiles():
        row = np.concatenate([tile if k % 2 == 0 else tile[:, ::-1] for k in range(reps)], axis=1)
        mosaic = np.concatenate([row if k % 2 == 0 else row[::-1] for k in range(reps)], axis=0)
        path = OUT / f"{name}_mosaic_{reps}x{reps}.zarr"
        if not (path / "zarr.json").exists():
            write_mosaic(path, mosaic, (512, 512))
        n = mosaic.shape[0]
        rows += _segment_case_at(path, mosaic.shape, 5, repeat,
                                 f"watershed {name} mosaic {n}x{n} {mosaic.dtype}", 24)
    return rows

def case_segment3d(quick, repeat):
    shape = (128, 128, 128) if quick else (256, 256, 256)
    return _segment_case(shape, (128, 128, 128), 5, repeat, f"watershed {'x'.join(map(str, shape))} uint8", 24)


def case_dense3d(quick, repeat):
    """The dense, noisy stack the 3D target was set on: touching ellipsoids of radii
    5-10 px over about a quarter of the volume, noise of about 3 % of the range (uint8),
    ``--min-distance 5``; chunkseg with 2 worker processes against the whole-image
    pipeline (``peak_local_max`` without ``labels=``), alternating, end to end."""
    import zarr

    from chunkseg.datasets import write_synthetic_nuclei

    n = 128 if quick else 256
    path = OUT / f"dense_{n}.zarr"
    if not (path / "zarr.json").exists():
        print(f"  generating the dense stack {n}^3 chunk by chunk ...", flush=True)
        write_synthetic_nuclei(path, (n, n, n), chunks=(128, 128, 128), seed=0,
                               radius=(5.0, 10.0), density=0.25, noise=8.0)
    ref_path = OUT / f"dense_{n}_skimage.npy"
    out = OUT / f"dense_{n}_cs.zarr"
    cs, sk = _alternating_runs(["chunkseg_segment", path, out, 5, "processes", 2],
                               ["skimage_pipeline", path, ref_path, 5], repeat)
    fid = _fidelity(zarr.open_array(str(out / "0"), mode="r")[:], np.load(ref_path))
    label = f"watershed {n}^3 dense uint8"
    px = float(n ** 3)
    return [_row(label, "chunkseg (2 worker processes)", cs, sk, px,
                 f"{100 * fid['agreement']:.3f}% px, F1 {fid['f1']:.4f}"),
            _row(label, "scikit-image (whole image)", sk, sk, px, "reference")]


def _dense_stack(n):
    """The dense stack of :func:`case_dense3d` at n^3 in 128^3 chunks, written once."""
    from chunkseg.datasets import write_synthetic_nuclei

    path = OUT / f"dense_{n}.zarr"
    if not (path / "zarr.json").exists():
        print(f"  generating the dense stack {n}^3 chunk by chunk ...", flush=True)
        write_synthetic_nuclei(path, (n, n, n), chunks=(128, 128, 128), seed=0,
                               radius=(5.0, 10.0), density=0.25, noise=8.0)
    return path


def case_dense1024(quick, repeat):
    """The dense stack at 1024^3 (1.07 Gvox; quick: 512^3) out of core, one run with each
    worker's memory limited (--memory-limit 1.5GB: all processes under 4 GB), beside 512^3
    (quick: 256^3) with the default memory in the same run: the throughput of the large
    stack against the small one's (target: at least 90 %) and the peak memory of all
    processes (target: under 4 GB). Not in --quick's default set of sizes: the stack takes
    minutes to write."""
    big, small = (512, 256) if quick else (1024, 512)
    rows = []
    runs = {}
    for n in (small, big):
        path = _dense_stack(n)
        limit = DENSE_OUT_OF_CORE_LIMIT if n == big else "auto"
        runs[n] = _median_run(["chunkseg_segment", path, OUT / f"dense_{n}_cs.zarr", 5,
                               "processes", 2, limit], 1 if n == big else repeat)
    for n in (small, big):
        r, px = runs[n], float(n ** 3)
        share = (px / r["wall_s"]) / (float(small ** 3) / runs[small]["wall_s"])
        setup = f"--memory-limit {DENSE_OUT_OF_CORE_LIMIT}" if n == big else "default memory"
        rows.append(_row(f"watershed {n}^3 dense uint8", f"chunkseg (2 worker processes, {setup})",
                         r, runs[small], px, f"{100 * share:.0f}% of the {small}^3 throughput, "
                         f"{r['result']['objects']} objects"))
    return rows


#: each worker's memory limit in :func:`case_dense1024`'s out-of-core run
DENSE_OUT_OF_CORE_LIMIT = "1.5GB"


def case_dense512(quick, repeat):
    """The dense stack at 512^3 (quick: 256^3), chunkseg with 2 worker processes end to end,
    against one single-threaded ``edt`` pass over the whole mask timed in the same run
    (target: at most 3 such passes). scikit-image's pipeline is not run at this size
    (about 20 minutes and 7 GB: its peak_local_max spacing step is superlinear). The
    first run compiles numba's kernels into an empty cache (NUMBA_CACHE_DIR), as the first
    run after an install does; it is reported beside the median of the warm runs."""
    import tempfile

    n = 256 if quick else 512
    path = _dense_stack(n)
    out = OUT / f"dense_{n}_cs.zarr"
    args = ["chunkseg_segment", path, out, 5, "processes", 2]
    with tempfile.TemporaryDirectory() as cache:
        first = _measure.run([sys.executable, TOOLS, *map(str, args)],
                             env=dict(os.environ, NUMBA_CACHE_DIR=cache))
    cs, one = _alternating_runs(args, ["edt_pass", path], repeat)
    edt_s = one["compute_s"]
    px = float(n ** 3)
    label = f"watershed {n}^3 dense uint8"
    cold = _medians([first])
    return [
        dict(_row(label, "chunkseg (2 worker processes)", cs, one, px,
                  f"{cs['wall_s'] / edt_s:.2f} edt passes"), ratio_vs_skimage=edt_s / cs["wall_s"],
             compute_ratio=edt_s / cs["compute_s"]),
        dict(_row(label, "chunkseg first run, empty numba cache (2 worker processes)", cold, one,
                  px, f"{cold['wall_s'] / cs['wall_s'] - 1:+.1%} against the warm runs"),
             ratio_vs_skimage=edt_s / cold["wall_s"], compute_ratio=edt_s / cold["compute_s"]),
        dict(_row(label, "edt (one pass over the whole mask, 1 thread)", one, one, px,
                  "reference: the transform alone"), time_s=edt_s, mpx_s=px / edt_s / 1e6,
             ratio_vs_skimage=1.0, compute_ratio=1.0),
    ]


def _label_case(shape, chunks, repeat, label):
    import zarr

    path = _input(shape, chunks)
    px = float(np.prod(shape))
    ref_path = OUT / f"{path.stem}_scipy_label.npy"
    sp = _median_run(["scipy_label", path, ref_path, 60], repeat)
    reference = np.load(ref_path)
    rows = []
    results = {}
    for tool, args, out in [
        ("chunkseg label (2 threads)", ["chunkseg_label", path, OUT / "cs_label.zarr", 60, "threads", 2], OUT / "cs_label.zarr"),
        ("dask-image ndmeasure.label (2 threads)", ["daskimage_label", path, OUT / "di_label.zarr", 60, "threads", 2], OUT / "di_label.zarr"),
        ("chunkseg label (2 processes)", ["chunkseg_label", path, OUT / "cs_label.zarr", 60, "processes", 2], OUT / "cs_label.zarr"),
        ("dask-image ndmeasure.label (2 processes)", ["daskimage_label", path, OUT / "di_label.zarr", 60, "processes", 2], OUT / "di_label.zarr"),
    ]:
        r = _median_run(args, repeat)
        labels = zarr.open_array(str(out), mode="r")[:]
        fid = _fidelity(labels, reference)
        fid["identical"] = bool(np.array_equal(labels, reference))
        results[tool] = (r, fid)
    results["scipy ndimage.label (in memory)"] = (sp, {"agreement": 1.0, "f1": 1.0, "identical": True})
    for tool, (r, fid) in results.items():
        rows.append(_row(label, tool, r, sp, px, "identical ids" if fid["identical"] else
                         f"{100 * fid['agreement']:.3f}% px, F1 {fid['f1']:.4f}, ids differ"))
    return rows


def case_label2d(quick, repeat):
    shape = (2048, 2048) if quick else (8192, 8192)
    return _label_case(shape, (1024, 1024), repeat, f"label {'x'.join(map(str, shape))} mask")


def case_label3d(quick, repeat):
    """Memory stays flat as the volume grows: chunkseg label on 128^3 chunks."""
    sizes = [128, 256] if quick else [256, 512, 1024]
    rows = []
    for n in sizes:
        shape = (n, n, n)
        path = _input(shape, (128, 128, 128))
        px = float(np.prod(shape))
        cs = _median_run(["chunkseg_label", path, OUT / "cs_label3d.zarr", 60, "processes", 2], repeat)
        rows.append(_row(f"label {n}^3 mask", "chunkseg label (2 processes)", cs, cs, px,
                         "(see 2D cases for identity)"))
    return rows


def _warm_up() -> None:
    """Run chunkseg's watershed and label once on a small input, untimed.

    numba compiles the kernels into its cache on their first use in a fresh
    checkout (about 3 s); whichever timed run came first would pay it, e.g.
    the 1-worker side of a scaling pair, which then looked slower.
    """
    path = _input((1024, 1024), (256, 256))
    _measure.python(TOOLS, "chunkseg_segment", path, OUT / "warmup.zarr", 7, "threads", 2)
    _measure.python(TOOLS, "chunkseg_label", path, OUT / "warmup_label.zarr", 100, "threads", 2)


def _scaling_rows(n: int, times: int, label: str) -> list:
    """One and two worker processes on an n x n input, ``times`` alternating pairs."""
    path = _input((n, n), (1024, 1024))
    one, two = _alternating_runs(
        ["chunkseg_segment", path, OUT / "sc1.zarr", 7, "processes", 1],
        ["chunkseg_segment", path, OUT / "sc2.zarr", 7, "processes", 2], times)
    px = float(n * n)
    return [_row(label, "chunkseg (1 worker process)", one, one, px, "reference: 1 process"),
            _row(label, "chunkseg (2 worker processes)", two, one, px,
                 f"{one['wall_s'] / two['wall_s']:.2f}x the 1-process speed")]


def case_scaling(quick, repeat):
    """End-to-end chunkseg segment with one and with two worker processes (issue: >= 1.8x).

    Three sizes: start-up (interpreter, imports, about 0.9 s here) and the
    global steps do not parallelise, so the ratio grows with the work. The
    largest (32768^2, about 90 s with one worker) runs once.
    """
    rows = []
    for n in ([4096] if quick else [8192, 16384, 32768]):
        rows += _scaling_rows(n, 1 if n > 16384 else repeat, f"scaling watershed {n}x{n}")
    return rows


def case_scaling3d(quick, repeat):
    """One versus two worker processes on the dense stack at 512^3 (quick: 256^3), in 256^3
    blocks, alternating pairs (issue 22: >= 1.8x at 512^3)."""
    n = 256 if quick else 512
    path = _dense_stack(n)
    one, two = _alternating_runs(
        ["chunkseg_segment", path, OUT / "sc3d1.zarr", 5, "processes", 1],
        ["chunkseg_segment", path, OUT / "sc3d2.zarr", 5, "processes", 2], repeat)
    label, px = f"scaling watershed {n}^3 dense", float(n ** 3)
    return [_row(label, "chunkseg (1 worker process)", one, one, px, "reference: 1 process"),
            _row(label, "chunkseg (2 worker processes)", two, one, px,
                 f"{one['wall_s'] / two['wall_s']:.2f}x the 1-process speed (runs "
                 f"{', '.join(f'{a:.1f}/{b:.1f}' for a, b in zip(one['runs'], two['runs']))} s)")]


def case_scaling_ooc(quick, repeat):
    """One versus two worker processes at 65536^2 (out of core): one alternating pair,
    about 16 minutes; not in --quick."""
    if quick:
        print("  (skipped in --quick: it takes about 16 minutes)", flush=True)
        return []
    return _scaling_rows(65536, 1, "scaling watershed 65536x65536 (out of core)")


def case_graph(quick, repeat):
    """Graph size and build time for a lazy input of 10^5 chunks (nothing is computed)."""
    r = _measure.python(TOOLS, "graph_size", 100_000 if not quick else 10_000)["result"]
    rows = []
    for name in ("label", "watershed", "measure"):
        g = r[name]
        rows.append({"case": f"graph {r['chunks']} chunks", "tool": "chunkseg", "setup": name,
                     "time_s": g["build_s"], "compute_s": g["build_s"], "mpx_s": float("nan"),
                     "peak_gb": float("nan"), "ratio_vs_skimage": float("nan"),
                     "compute_ratio": float("nan"),
                     "fidelity": f"{g['tasks']} tasks = {g['tasks'] / r['chunks']:.1f} per chunk"})
    return rows


def case_outofcore(quick, repeat):
    """65536^2 (4.3 gigapixels) end to end with two worker processes; not in --quick."""
    if quick:
        print("  (skipped in --quick: it takes about 8 minutes)", flush=True)
        return []
    n = 65536
    path = _input((n, n), (1024, 1024))
    ref_path = _input((8192, 8192), (1024, 1024))
    big = _median_run(["chunkseg_segment", path, OUT / "ooc.zarr", 7, "processes", 2], 1)
    small = _median_run(["chunkseg_segment", ref_path, OUT / "ooc_ref.zarr", 7, "processes", 2],
                        repeat)
    rows = []
    for label, r, px in [(f"watershed {n}x{n} uint8 (out of core)", big, float(n * n)),
                         ("watershed 8192x8192 uint8 (same run)", small, float(8192 ** 2))]:
        rows.append(_row(label, "chunkseg (2 worker processes)", r, r, px,
                         f"{r['result'].get('objects')} objects"))
    ratio = (rows[0]["mpx_s"] / rows[1]["mpx_s"])
    rows[0]["fidelity"] += f"; throughput {100 * ratio:.0f}% of 8192^2"
    rows.append({"case": f"watershed {n}x{n} uint8 (out of core)", "tool": "scikit-image",
                 "setup": "whole image", "time_s": float("nan"), "compute_s": float("nan"),
                 "mpx_s": float("nan"), "peak_gb": 54 * n * n / 1e9,
                 "ratio_vs_skimage": float("nan"), "compute_ratio": float("nan"),
                 "fidelity": "cannot run here: needs about 54 bytes/px = 232 GB (machine: 24 GB)"})
    return rows


def case_object_storage(quick, repeat):
    """Input and output on a local S3 API server (moto, 127.0.0.1) against local disk, two
    worker processes, alternating runs, through zarr's FsspecStore (s3fs, the default) and its
    ObjectStore (obstore, ``DASK_CHUNKSEG__STORE=obstore``); and the requests per chunk."""
    import logging
    import os
    import re

    sys.path.insert(0, str(HERE.parent / "tests"))
    from _servers import s3_server

    n = 4096 if quick else 8192
    path = _input((n, n), (1024, 1024))
    counts = {b: {"GET": 0, "PUT": 0, "HEAD": 0, "other": 0} for b in ("fsspec", "obstore")}
    backend = ["fsspec"]

    class Count(logging.Handler):
        def emit(self, record):
            m = re.search(r'"(GET|PUT|HEAD|POST|DELETE) ', record.getMessage())
            c = counts[backend[0]]
            c[m.group(1) if m and m.group(1) in c else "other"] += 1

    with s3_server():
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("bench")
        fs.put(str(path), "bench/in.zarr", recursive=True)
        werkzeug = logging.getLogger("werkzeug")
        werkzeug.setLevel(logging.INFO)
        werkzeug.propagate = False  # counted, not printed: werkzeug's own printer (added at
        for h in list(werkzeug.handlers):  # the upload's first request) costs the server time
            werkzeug.removeHandler(h)
        handler = Count()
        werkzeug.addHandler(handler)
        # the child processes inherit the AWS_* variables that point at the server
        s3_args = ["chunkseg_segment", "s3://bench/in.zarr", "s3://bench/out.zarr", 7,
                   "processes", 2]
        obstore_env = dict(os.environ, DASK_CHUNKSEG__STORE="obstore")
        runs = []
        for _ in range(repeat):
            disk = _measure.python(TOOLS, "chunkseg_segment", path, OUT / "os_disk.zarr", 7,
                                   "processes", 2)
            backend[0] = "fsspec"
            fsspec_run = _measure.python(TOOLS, *s3_args)
            backend[0] = "obstore"
            obstore_run = _measure.python(TOOLS, *s3_args, env=obstore_env)
            runs.append((disk, fsspec_run, obstore_run))
        werkzeug.removeHandler(handler)
    disk, fsspec_run, obstore_run = (_medians([r[i] for r in runs]) for i in range(3))
    chunks = (n // 1024) ** 2
    px = float(n * n)
    label = f"object storage watershed {n}x{n} uint8"
    rows = [_row(label, "chunkseg (local disk, 2 worker processes)", disk, disk, px,
                 "reference: local disk")]
    for name, r in (("fsspec", fsspec_run), ("obstore", obstore_run)):
        per_chunk = {k: v / repeat / chunks for k, v in counts[name].items()}
        rows.append(_row(label, f"chunkseg (S3 on 127.0.0.1 via {name}, 2 worker processes)",
                         r, disk, px,
                         f"{disk['wall_s'] / r['wall_s']:.0%} of the local-disk speed; requests "
                         "per chunk: " + ", ".join(f"{k} {v:.1f}" for k, v in per_chunk.items()
                                                   if v)))
    return rows


def case_cells(quick, repeat):
    """Cells from given nuclei: chunkseg cells (watershed, expand) with 2 worker processes
    against scikit-image's watershed / expand_labels of the whole image, alternating."""
    import zarr

    from chunkseg.datasets import write_synthetic_cells

    n = 2048 if quick else 8192
    directory = OUT / f"cells_{n}"
    if not (directory / "nuclei.zarr" / "zarr.json").exists():
        print(f"  generating synthetic cells {n}x{n} chunk by chunk ...", flush=True)
        write_synthetic_cells(directory, (n, n), chunks=(1024, 1024), seed=0)
    px = float(n * n)
    rows = []
    for method in ("watershed", "expand"):
        ref_path = OUT / f"cells_{n}_{method}_skimage.npy"
        out = OUT / f"cells_{n}_{method}.zarr"
        cs, sk = _alternating_runs(["chunkseg_cells", directory, out, method, 30, 2],
                                   ["skimage_cells", directory, ref_path, method, 30], repeat)
        want = np.load(ref_path)
        got = zarr.open_array(str(out / "cells" / "0"), mode="r")[:]
        mask = want > 0
        agree = float((got == want)[mask].mean()) if mask.any() else 1.0
        label = f"cells {method} {n}x{n} (nuclei given)"
        rows.append(_row(label, "chunkseg cells (2 worker processes)", cs, sk, px,
                         f"{100 * agree:.3f}% of cell pixels as scikit-image, "
                         f"{cs['result'].get('cells')} cells"))
        reference = "watershed" if method == "watershed" else "expand_labels"
        rows.append(_row(label, f"scikit-image {reference} (whole image)", sk, sk, px,
                         "reference"))
    return rows


def _slide(n, tissue, levels, cell=2048):
    from chunkseg.datasets import write_synthetic_he

    path = OUT / f"he_{n}_t{int(100 * tissue)}_c{cell}.zarr"
    if not (path / str(levels - 1) / "zarr.json").exists():
        print(f"  generating synthetic H&E {n}x{n} ({100 * tissue:.0f}% tissue) chunk by "
              "chunk ...", flush=True)
        write_synthetic_he(path, (n, n), chunks=(1024, 1024), seed=0, tissue=tissue,
                           levels=levels, cell=cell)
    return path


def case_brightfield(quick, repeat):
    """Synthetic H&E (all tissue): chunkseg --stain hematoxylin with 2 worker processes
    against the whole-image rgb2hed + Otsu + distance + peak_local_max + watershed."""
    import zarr

    n = 2048 if quick else 8192
    path = _slide(n, 1.0, 1)
    ref_path = OUT / f"he_{n}_skimage.npy"
    out = OUT / f"he_{n}.zarr"
    cs, sk = _alternating_runs(["chunkseg_he", path, out, 5, 2, "none"],
                               ["skimage_he", path, ref_path, 5], repeat)
    fid = _fidelity(zarr.open_array(str(out / "0"), mode="r")[:], np.load(ref_path))
    label = f"brightfield H&E {n}x{n} (--stain hematoxylin)"
    return [_row(label, "chunkseg (2 worker processes)", cs, sk, float(n * n),
                 f"{100 * fid['agreement']:.3f}% px, F1 {fid['f1']:.4f}"),
            _row(label, "scikit-image rgb2hed + pipeline (whole image)", sk, sk, float(n * n),
                 "reference")]


def case_tissue(quick, repeat):
    """A slide of about 60% glass: --tissue auto against --tissue none, alternating, same
    objects inside the tissue (both 2 worker processes)."""
    import zarr

    n = 8192 if quick else 32768
    levels = 4 if quick else 6
    # four pieces of tissue about 5 mm across (at 0.5 um/px) in 16 mm x 16 mm of glass
    path = _slide(n, 0.4, levels, cell=n // 2)
    auto, none = _alternating_runs(["chunkseg_he", path, OUT / "tissue_auto.zarr", 5, 2, "auto"],
                                   ["chunkseg_he", path, OUT / "tissue_none.zarr", 5, 2, "none"],
                                   repeat)
    a = zarr.open_array(str(OUT / "tissue_auto.zarr" / "0"), mode="r")
    b = zarr.open_array(str(OUT / "tissue_none.zarr" / "0"), mode="r")
    both = either = 0
    for y in range(0, n, 4096):  # band by band: never the whole slide in memory
        fa, fb = a[y:y + 4096] > 0, b[y:y + 4096] > 0
        both += int(np.count_nonzero(fa & fb))
        either += int(np.count_nonzero(fa | fb))
    r = auto["result"]
    label = f"tissue {n}x{n} RGB ({n * n / 1e9:.2f} Gpx, 60% glass)"
    note = (f"{r['skipped']} of {r['chunks']} chunks skipped; objects {r['objects']} vs "
            f"{none['result']['objects']} (thresholds {r['threshold']:.5g} / "
            f"{none['result']['threshold']:.5g}); object pixels IoU "
            f"{100 * both / max(either, 1):.3f}%")
    return [_row(label, "chunkseg --tissue auto (2 worker processes)", auto, none, float(n * n),
                 note),
            _row(label, "chunkseg --tissue none (2 worker processes)", none, none, float(n * n),
                 "reference")]


def case_series(quick, repeat):
    """16 time points of 256^3 (2 worker processes): one ``--time all`` run against 16
    separate runs of one time point each, alternating; the labels compared."""
    import zarr

    from chunkseg.datasets import write_synthetic_series

    n, side = (4, 128) if quick else (16, 256)
    path = OUT / f"series_{n}x{side}.ome.zarr"
    if not (path / "0" / "zarr.json").exists():
        print(f"  generating a series of {n} x {side}^3 chunk by chunk ...", flush=True)
        write_synthetic_series(path, (n, side, side, side), chunks=(128, 128, 128), seed=0,
                               radius=(5.0, 9.0))
    one, many = OUT / f"series_{n}x{side}_all.zarr", OUT / f"series_{n}x{side}_each"
    many.mkdir(exist_ok=True)
    all_run, each = _alternating_runs(["chunkseg_series", path, one, 2, "all"],
                                      ["chunkseg_separate", path, many, 2, n], repeat)
    got = zarr.open_array(str(one / "0"), mode="r")
    same = all(np.array_equal(got[t], zarr.open_array(str(many / f"t{t}.zarr" / "0"),
                                                      mode="r")[:]) for t in range(n))
    px = float(n * side ** 3)
    label = f"time series {n} x {side}^3 (--time all)"
    return [_row(label, "chunkseg one run (2 worker processes)", all_run, each, px,
                 f"labels {'equal' if same else 'DIFFER from'} the separate runs, "
                 f"{all_run['result']['objects']} objects"),
            _row(label, f"chunkseg {n} separate runs (2 worker processes each)", each, each, px,
                 "reference")]


def case_channels(quick, repeat):
    """A 4096^2 image with 16 channels: the table of every channel against the table of
    one (the measuring pass alone, on stored labels; and whole segment runs)."""
    from chunkseg.datasets import write_synthetic_series
    from chunkseg.run import run_segment

    n, channels = (1024, 4) if quick else (4096, 16)
    path = OUT / f"channels_{n}_c{channels}.ome.zarr"
    if not (path / "0" / "zarr.json").exists():
        print(f"  generating {n}^2 with {channels} channels chunk by chunk ...", flush=True)
        write_synthetic_series(path, (1, n, n), chunks=(1024, 1024), channels=channels, seed=0)
    labels = OUT / f"channels_{n}_labels.zarr"
    if not (labels / "zarr.json").exists():
        run_segment(path, labels, channel=0, min_distance=5, overwrite=True)
    every, single = _alternating_runs(["chunkseg_measure", path, labels, "all", 2],
                                      ["chunkseg_measure", path, labels, 0, 2], repeat)
    out, table = OUT / f"channels_{n}_run.zarr", OUT / f"channels_{n}.parquet"
    run_all, run_one = _alternating_runs(
        ["chunkseg_segment_table", path, out, table, "all", 2],
        ["chunkseg_segment_table", path, out, table, "one", 2], repeat)
    px = float(n * n)
    label = f"table of {channels} channels, {n}x{n}"
    rows = [_row(label + ": measuring pass", f"chunkseg measure, {channels} channels", every,
                 single, px, f"{every['result']['rows']} rows x {every['result']['columns']} "
                 "columns"),
            _row(label + ": measuring pass", "chunkseg measure, 1 channel", single, single, px,
                 "reference"),
            _row(label + ": segment + table", "chunkseg segment --measure-channels all",
                 run_all, run_one, px, f"{run_all['result']['objects']} objects"),
            _row(label + ": segment + table", "chunkseg segment --table (1 channel)", run_one,
                 run_one, px, "reference")]
    return rows


CASES = {"threshold": case_threshold, "segment2d": case_segment2d, "segment3d": case_segment3d,
         "dense3d": case_dense3d, "dense512": case_dense512,
         "dense1024": case_dense1024,
         "mosaic": case_mosaic, "label2d": case_label2d, "label3d": case_label3d,
         "scaling": case_scaling, "scaling3d": case_scaling3d, "scaling_ooc": case_scaling_ooc,
         "graph": case_graph,
         "outofcore": case_outofcore, "object_storage": case_object_storage,
         "cells": case_cells, "brightfield": case_brightfield, "tissue": case_tissue,
         "series": case_series, "channels": case_channels}


def _table(rows):
    cols = ["case", "tool", "setup", "time_s", "compute_s", "mpx_s", "ratio_vs_skimage", "compute_ratio",
            "peak_gb", "fidelity"]
    head = ["case", "tool", "setup", "wall (s)", "compute (s)", "Mpx/s (wall)", "speed-up vs reference (wall)",
            "(compute)", "peak mem (GB)", "fidelity vs reference"]
    fmt = {"time_s": "{:.2f}", "compute_s": "{:.2f}", "mpx_s": "{:.1f}", "ratio_vs_skimage": "{:.2f}x",
           "compute_ratio": "{:.2f}x", "peak_gb": "{:.2f}"}
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(fmt.get(c, "{}").format(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about two minutes")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--case", action="append", choices=list(CASES), help="run only these")
    parser.add_argument("--repeat", type=int, default=None, help="runs per tool (default 3, quick 1)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    OUT.mkdir(parents=True, exist_ok=True)
    _warm_up()
    rows = []
    for name in args.case or list(CASES):
        print(f"case {name} ...", flush=True)
        rows += CASES[name](args.quick, repeat)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {round(__import__('psutil').virtual_memory().total / 2**30)} GiB, Python {platform.python_version()}"
    print(f"\nmachine: {machine}; median of {repeat} run(s); times include process start-up\n")
    print(_table(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "repeat": repeat, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
