"""Run a command in its own process and measure wall time and peak memory.

Peak memory is the largest sum of resident set sizes of the process and all
its children (worker processes included), sampled every 20 ms (children listed
every 0.5 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from chunkseg._monitor import PeakMemory


def run(args: list[str], *, env=None, timeout: float | None = None) -> dict:
    """Run ``args``; return wall seconds, peak RSS (bytes) and the JSON it printed last."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # children listed every 0.5 s: listing scans every process of the machine (0.05
    # of a core at 50 a second), CPU that a run using both cores would lose to its
    # own measurement
    with PeakMemory(interval=0.02, pid=proc.pid, relist=0.5) as memory:
        out, err = proc.communicate(timeout=timeout)
    peak = memory.peak
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
