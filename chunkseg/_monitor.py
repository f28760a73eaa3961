"""Watching a run: a progress bar (threads or a distributed cluster) and peak memory."""

from __future__ import annotations

import contextlib
import sys
import threading
import time

import psutil


def tree_rss(proc: psutil.Process, procs: list | None = None) -> int:
    """Resident memory of a process and all its children (worker processes), in bytes.

    ``procs``: the processes to add up, if already listed (listing children
    scans every process of the machine).
    """
    total = 0
    if procs is None:
        try:
            procs = [proc] + proc.children(recursive=True)
        except psutil.NoSuchProcess:
            return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


class PeakMemory:
    """Samples the resident memory of this process and its children in a thread.

    Ten samples a second; the list of child processes is renewed every
    ``relist`` seconds (finding them reads every process's status: the
    costly part).
    """

    def __init__(self, interval: float = 0.1, pid: int | None = None, relist: float = 0.3):
        self.interval = interval
        self.relist = relist
        self.peak = 0
        self._proc = psutil.Process(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _list(self) -> list:
        try:
            return [self._proc] + self._proc.children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def _sample(self):
        procs, listed = self._list(), time.perf_counter()
        while not self._done.is_set():
            if time.perf_counter() - listed >= self.relist:
                procs, listed = self._list(), time.perf_counter()
            self.peak = max(self.peak, tree_rss(self._proc, procs))
            self._done.wait(self.interval)

    def __enter__(self):
        self.peak = tree_rss(self._proc)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self._proc))


# --------------------------------------------------------------------------- progress


class TaskCounts:
    """Tasks finished and scheduled during a :func:`progress` block (filled in at its end)."""

    done: int = 0
    total: int = 0


class _Bar:
    """One line, redrawn in place: ``[#####.....]  52%  1234/2370 tasks  12 s``."""

    def __init__(self, stream, width: int = 30, min_interval: float = 0.2, enabled: bool = True):
        self.stream = stream
        self.enabled = enabled
        self.width = width
        self.min_interval = min_interval
        self.start = time.perf_counter()
        self._last = 0.0
        self._drawn = False

    def draw(self, done: int, total: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._last < self.min_interval):
            return
        self._last = now
        frac = done / total if total else 0.0
        filled = int(round(self.width * frac))
        line = (f"\rchunkseg: [{'#' * filled}{'.' * (self.width - filled)}] {100 * frac:3.0f}%  "
                f"{done}/{total} tasks  {now - self.start:.0f} s")
        self.stream.write(line)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def _local_callback(bar: _Bar):
    from dask.callbacks import Callback

    class _Count(Callback):
        """Counts finished tasks of every local (threads/sync) computation."""

        def __init__(self):
            super().__init__()
            self.done = 0
            self.total = 0
            self._lock = threading.Lock()

        def _start_state(self, dsk, state):
            with self._lock:
                self.total += len(state["ready"]) + len(state["waiting"]) + len(state["finished"])
            bar.draw(self.done, self.total, force=True)

        def _posttask(self, key, result, dsk, state, worker_id):
            with self._lock:
                self.done += 1
            bar.draw(self.done, self.total)

    return _Count()


@contextlib.contextmanager
def progress(client=None, *, enabled: bool | None = None, stream=None):
    """Count the dask tasks run inside the block, and show a progress bar.

    Yields a :class:`TaskCounts`, filled in when the block ends.
    ``enabled=None`` shows it only when ``stream`` (default stderr) is a
    terminal. With a ``distributed.Client`` the tasks are counted by a
    scheduler plugin (the scheduler must be able to import chunkseg; if it
    cannot, no bar is shown); otherwise by a dask callback.
    """
    stream = stream or sys.stderr
    if enabled is None:
        enabled = bool(getattr(stream, "isatty", lambda: False)())
    counts = TaskCounts()
    bar = _Bar(stream, enabled=enabled)
    if client is None:
        counter = _local_callback(bar)
        with counter:
            yield counts
        counts.done, counts.total = counter.done, counter.total
        bar.draw(counter.done, counter.total, force=True)
        bar.close()
        return
    from ._plugin import TaskCounter, forget_counter, task_counts  # imports distributed

    try:
        client.register_plugin(TaskCounter(), name=TaskCounter.name)
    except Exception:  # a remote scheduler without chunkseg: no bar, no count
        yield counts
        return
    stop = threading.Event()
    last = [0, 0]

    def poll():
        while not stop.is_set():
            with contextlib.suppress(Exception):
                last[:] = client.run_on_scheduler(task_counts)
                bar.draw(*last)
            stop.wait(0.25)

    # polled only while a bar is drawn: a hidden bar needs the counts once, at the end
    # (each poll is a round trip that the scheduler serves beside the run's tasks)
    thread = threading.Thread(target=poll, daemon=True)
    if enabled:
        thread.start()
    try:
        yield counts
    finally:
        stop.set()
        if enabled:
            thread.join()
        with contextlib.suppress(Exception):
            last[:] = client.run_on_scheduler(task_counts)
            client.run_on_scheduler(forget_counter)
        counts.done, counts.total = last
        bar.draw(*last, force=True)
        bar.close()
