"""Run a command in its own process and measure wall time and peak memory.

Peak memory is the largest sum of resident set sizes of the process and all
its children (worker processes included), sampled every 20 ms (children listed
every 0.5 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import psutil

from chunkseg._monitor import tree_rss as _tree_rss


def run(args: list[str], *, env=None, timeout: float | None = None) -> dict:
    """Run ``args``; return wall seconds, peak RSS (bytes) and the JSON it printed last."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ps = psutil.Process(proc.pid)
    peak = 0
    done = threading.Event()

    def sample():
        # the list of children is renewed every 0.5 s: listing scans every process of
        # the machine (0.05 of a core at 50 a second), CPU that a run using both cores
        # would lose to its own measurement
        nonlocal peak
        procs, listed = None, 0.0
        while not done.is_set():
            if time.perf_counter() - listed >= 0.5:
                try:
                    procs, listed = [ps] + ps.children(recursive=True), time.perf_counter()
                except psutil.NoSuchProcess:
                    procs = [ps]
            peak = max(peak, _tree_rss(ps, procs))
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        done.set()
        thread.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{err[-3000:]}")
    result = {}
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            break
    return {"wall_s": wall, "peak_bytes": peak, "result": result, "stdout": out}


def python(script: str, *args: str, **kwargs) -> dict:
    return run([sys.executable, script, *map(str, args)], **kwargs)
