"""How a run gets its scheduler: threads, local worker processes, or an address."""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os

from ._lazy import Deferred
from ._validate import InputError, check_int

dask = Deferred("dask")  # imported on first use: the CLI imports this module for its logs

log = logging.getLogger(__name__)

__all__ = ["check_scheduler", "scheduler"]


def _check_workers(workers) -> int | None:
    return None if workers is None else check_int("workers", workers)


class _Expected(logging.Filter):
    """Drops the records whose message starts with one of ``prefixes``.

    "Compute Failed": the task's error goes back to the client, which raises
    it (the CLI prints it as one line), so the worker's copy with its
    traceback would only repeat it. While the local cluster closes, also a
    heartbeat that meets the closing scheduler (distributed's own race,
    dask/distributed#7105): a traceback after a run that succeeded. On the
    ``asyncio`` logger, an object-store request still in flight when a chunk
    write has failed (:data:`ORPHANED_REQUESTS`): that failure is reported
    once, as one line naming the chunk.
    """

    def __init__(self):
        super().__init__()
        self.prefixes: set = set()

    def filter(self, record):
        return not str(record.msg).startswith(tuple(self.prefixes))


#: What a worker of chunkseg's own local cluster need not log, from its start / its close.
_QUIET_WHILE_RUNNING = ("Compute Failed",)
_QUIET_WHILE_CLOSING = ("Failed to communicate with scheduler during heartbeat",)
#: asyncio's report of a request task whose error nobody awaited (the store went away mid-run)
ORPHANED_REQUESTS = ("Task exception was never retrieved",)


def quiet_logs(name: str, prefixes) -> None:
    """Drop the records of logger ``name`` that start with one of ``prefixes`` (one filter)."""
    logger = logging.getLogger(name)
    quiet = next((f for f in logger.filters if isinstance(f, _Expected)), None)
    if quiet is None:
        quiet = _Expected()
        logger.addFilter(quiet)
    quiet.prefixes.update(prefixes)


def _one_blas_thread() -> None:
    """One BLAS thread in a local worker process (it has one core's share already).

    A forked worker inherits OpenBLAS's thread count from this process (the
    nanny's ``OPENBLAS_NUM_THREADS=1`` is read only when a library starts), and
    its threads spin while they wait: the stain's 3x3 matrix product of a 1024^2
    chunk took 110-270 ms in a worker against 7 ms with one thread (measured)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _quiet_worker_logs(prefixes) -> None:
    quiet_logs("distributed.worker", prefixes)
    quiet_logs("asyncio", ORPHANED_REQUESTS)


def placement_on() -> bool:
    """The dask config ``chunkseg.placement`` (default on): off, dask places every task itself."""
    return bool(dask.config.get("chunkseg.placement", True))


@contextlib.contextmanager
def _placed(client):
    """Chunks placed by band (:class:`chunkseg._plugin.Placement`) while the run lasts."""
    from ._plugin import place_by_band, stop_placing

    if placement_on():
        place_by_band(client)
    try:
        yield client
    finally:
        stop_placing(client)


@contextlib.contextmanager
def _frozen_heap():
    """This process's objects set aside from the cyclic garbage collector while the
    cluster runs (``gc.freeze``), and given back after.

    Python's advice for a process that forks: the forked workers then share
    those pages instead of copying them when a collection touches them, and no
    collection, here or in a worker, walks the start-up heap again. It halves
    the collectors' time (16384^2: 0.30-0.36 -> 0.18-0.22 s in this process, where the
    scheduler runs, and 0.21 -> 0.10 s per worker). A caller who froze the heap
    already keeps it as it was.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def scheduler(spec: str = "threads", *, workers: int | None = None, threads_per_worker: int = 1,
              memory_limit: str | None = "auto", start_method: str | None = None):
    """Run the enclosed dask computations on the scheduler ``spec`` names.

    ``"threads"``: dask's threaded scheduler (``workers`` threads).
    ``"processes"``: a ``distributed.LocalCluster`` of ``workers`` processes
    with ``threads_per_worker`` threads each, its dashboard on 127.0.0.1 only;
    ``memory_limit="auto"`` gives each worker an equal share of the machine.
    Where the platform has it, the workers are forked from this process
    (``start_method="fork"``): they start in 0.1 s with chunkseg already
    imported, instead of 1 s for a fresh interpreter (``"spawn"``, dask's
    default, which ``start_method`` or ``CHUNKSEG_START_METHOD`` can choose).
    A ``memory_limit`` other than "auto" starts them fresh: a forked worker's
    resident memory counts the pages it shares with this process, which
    distributed charges to its limit; under a tight one that killed workers
    mid-run, and a worker forked again from this many-threaded process to
    replace one left the cluster waiting for ever (1024^3 at 1.75 GB a worker:
    hung after a worker restart with fork, 118 s in 2.74 GB with spawn).
    While it runs, this process's heap is frozen (``gc.freeze``) and the
    cluster checks its event loops every 100 ms instead of distributed's 20:
    less of the two cores goes to housekeeping. Its workers log neither a
    task's error (the client raises it) nor, once the block is over, a
    heartbeat that meets the closing scheduler (:class:`_Expected`).
    ``"tcp://host:port"`` (or any other address): join that scheduler.
    ``"file:PATH"``: join the scheduler described by a scheduler file.
    On a distributed scheduler, this client's chunks are placed by band
    (:class:`chunkseg._plugin.Placement`): neighbouring chunks on one worker;
    the dask config ``chunkseg.placement: false`` (or the environment
    variable ``DASK_CHUNKSEG__PLACEMENT=False``) turns that off.
    Yields the ``distributed.Client`` (or None for threads).
    """
    workers = _check_workers(workers)
    if spec == "threads":
        with dask.config.set(scheduler="threads", num_workers=workers):
            yield None
        return
    from distributed import Client, LocalCluster

    if spec == "processes":
        n = workers or os.cpu_count() or 1
        forks = memory_limit == "auto" and "fork" in multiprocessing.get_all_start_methods()
        method = start_method or os.environ.get("CHUNKSEG_START_METHOD") or (
            "fork" if forks else "spawn")
        if memory_limit == "auto":
            # the machine (or its container limit) shared by this run's workers;
            # distributed's own "auto" gives a worker only its share of the cores'
            # memory, half the machine for one single-threaded worker on two cores
            from distributed.system import MEMORY_LIMIT

            memory_limit = MEMORY_LIMIT // n
        # the event-loop health check of the scheduler, the nannies and the workers
        # (a warning after 3 s unresponsive) every 100 ms instead of 20: 0.3 CPU-s less
        # in this process for a 15 s run on 2 workers, where it shares their cores
        from dask.utils import parse_timedelta

        tick = max(parse_timedelta(dask.config.get("distributed.admin.tick.interval"),
                                   default="ms"), 0.1)
        with dask.config.set({"distributed.worker.multiprocessing-method": method,
                              "distributed.admin.tick.interval": f"{tick * 1000:g}ms"}), \
                _frozen_heap(), \
                LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=True,
                             dashboard_address="127.0.0.1:0", memory_limit=memory_limit,
                             host="127.0.0.1") as cluster, Client(cluster) as client, \
                _placed(client):
            # its port is chosen at start: without this line the dashboard cannot be found
            log.info("local cluster: %d worker processes x %d thread(s), dashboard %s",
                     n, threads_per_worker, client.dashboard_link)
            client.run(_quiet_worker_logs, _QUIET_WHILE_RUNNING)  # this run's own workers only
            client.run(_one_blas_thread)
            yield client
            # the run is over: what the workers log while the cluster closes is noise.
            # Best effort: a worker gone by now must not fail a run that succeeded
            try:
                client.run(_quiet_worker_logs, _QUIET_WHILE_CLOSING)
            except Exception as exc:
                log.debug("closing local cluster: %s: %s", type(exc).__name__, exc)
        return
    check_scheduler(spec)
    with _joined(spec) as client, _placed(client):
        log.info("joined scheduler %s", spec)
        yield client


def check_scheduler(spec) -> str:
    """``threads``, ``processes``, an address (``tcp://HOST:PORT``) or ``file:PATH``."""
    if not isinstance(spec, str) or not (spec in ("threads", "processes") or spec.startswith("file:")
                                         or "://" in spec or ":" in spec):
        raise InputError(f"unknown `scheduler` {spec!r}; use threads, processes, "
                         "tcp://HOST:PORT or file:PATH")
    if spec.startswith("file:") and not os.path.exists(spec[len("file:"):]):
        raise InputError(f"scheduler file {spec[len('file:'):]} not found; start the scheduler "
                         "with that file (`dask scheduler --scheduler-file`), or give its address")
    return spec


#: How long joining a scheduler may take before the address counts as wrong (seconds).
CONNECT_TIMEOUT = 5


@contextlib.contextmanager
def _joined(spec: str):
    """A client of the scheduler at ``spec``; one clear error where none answers in time."""
    from distributed import Client

    where = {"scheduler_file": spec[len("file:"):]} if spec.startswith("file:") \
        else {"address": spec}
    try:
        client = Client(**where, timeout=f"{CONNECT_TIMEOUT}s")
    except (OSError, TimeoutError) as exc:
        raise InputError(f"no dask scheduler answers at {spec} within {CONNECT_TIMEOUT} s "
                         f"({type(exc).__name__}); start one (`dask scheduler`) or check the "
                         "address") from None
    with client:
        yield client
