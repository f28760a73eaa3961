"""A real `dask scheduler` and `dask worker` processes on 127.0.0.1, started by a test."""

import contextlib
import subprocess
import sys
import time

from distributed import Client


@contextlib.contextmanager
def remote_cluster(folder, nworkers: int = 2):
    """Yields ``(address, scheduler_file)``; stops every process afterwards."""
    path = folder / "scheduler.json"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", "0", "--no-dashboard", "--scheduler-file", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(nworkers):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(path),
                 "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(scheduler_file=str(path), timeout="60s") as c:
            c.wait_for_workers(nworkers, timeout=60)
            address = c.scheduler.address
        yield address, path
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
