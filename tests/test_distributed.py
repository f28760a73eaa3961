"""The same answers on a real distributed cluster of worker processes."""

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

import chunkseg
from chunkseg.datasets import synthetic_nuclei
from chunkseg.run import run_segment

from ._cluster import remote_cluster
from .conftest import real_image


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1") as cluster, Client(cluster) as c:
        yield c


def test_watershed_bit_identical_on_worker_processes(client):
    image = synthetic_nuclei((400, 500), seed=21)
    x = da.from_array(image, chunks=(100, 130))
    with dask.config.set(scheduler="sync"):
        want = chunkseg.segment(x, min_distance=7).compute()
    got = chunkseg.segment(x, min_distance=7).compute()  # the current client
    np.testing.assert_array_equal(got, want)


def test_thresholds_on_worker_processes(client):
    image = real_image("bbbc034")
    x = da.from_array(image, chunks=200)
    import skimage.filters

    assert chunkseg.threshold_otsu(x) == skimage.filters.threshold_otsu(image)
    assert chunkseg.threshold_li(x) == skimage.filters.threshold_li(image)


def test_seed_pass_is_queued_before_the_threshold_is_known(client):
    """On a cluster the Otsu threshold of an 8-bit image is computed there: the
    mask (and the seed pass on it) is built while the histogram is still held
    back, and the labels are those of the single-process run."""
    from concurrent.futures import ThreadPoolExecutor

    from distributed import Event

    from chunkseg.segment import _foreground, threshold_value

    image = synthetic_nuclei((240, 240), seed=4)
    with dask.config.set(scheduler="sync"):
        want = chunkseg.segment(da.from_array(image, chunks=80), min_distance=6).compute()
    go = Event("chunkseg-test-histogram", client=client)

    def held(block):
        from distributed import Event

        Event("chunkseg-test-histogram").wait()
        return block

    x = da.from_array(image, chunks=80).map_blocks(held, dtype=image.dtype,
                                                    meta=np.empty((0, 0), dtype=image.dtype))
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(_foreground, x, "otsu", None, None, pending=True)
        try:
            mask, t = job.result(timeout=30)  # an eager threshold would wait for `go`
        finally:
            go.set()
    assert isinstance(t, da.Array)
    seeds = chunkseg.find_seeds(mask, min_distance=6)
    labels = chunkseg.watershed(mask, seeds, min_distance=6).compute()
    assert threshold_value(t) == chunkseg.threshold_otsu(image)
    np.testing.assert_array_equal(labels, want)


def test_run_segment_processes_equals_threads(tmp_path):
    import zarr

    image = synthetic_nuclei((300, 300), seed=8)
    zarr.create_array(str(tmp_path / "in.zarr"), data=image, chunks=(100, 100))
    a = run_segment(tmp_path / "in.zarr", tmp_path / "a.zarr", min_distance=6)
    b = run_segment(tmp_path / "in.zarr", tmp_path / "b.zarr", min_distance=6,
                    scheduler="processes", workers=2)
    assert a.objects == b.objects > 50
    np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "a.zarr").compute(),
                                  chunkseg.open_labels(tmp_path / "b.zarr").compute())


def test_a_run_whose_distances_are_not_kept_finds_its_threshold_on_the_cluster(
        tmp_path, client, monkeypatch):
    """Past the distances budget (a small memory limit, a large image) each pass reads
    and thresholds its chunks again, with the threshold still being computed on the
    cluster: optimising that mask used to drop the threshold's future, and the run
    failed with lost dependencies."""
    import importlib

    import zarr

    module = importlib.import_module("chunkseg.segment")  # the package's `segment` is the function
    image = synthetic_nuclei((300, 320), seed=9)
    zarr.create_array(str(tmp_path / "in.zarr"), data=image, chunks=(100, 110))
    a = run_segment(tmp_path / "in.zarr", tmp_path / "a.zarr", min_distance=6)
    monkeypatch.setattr(module, "distances_budget", lambda: 1)
    b = run_segment(tmp_path / "in.zarr", tmp_path / "b.zarr", min_distance=6,
                    scheduler=client.scheduler.address)
    assert a.objects == b.objects > 50
    np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "a.zarr").compute(),
                                  chunkseg.open_labels(tmp_path / "b.zarr").compute())


@pytest.fixture(scope="module")
def remote_scheduler(tmp_path_factory):
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1."""
    with remote_cluster(tmp_path_factory.mktemp("sched")) as cluster:
        yield cluster


def test_cli_on_a_remote_scheduler_equals_threads(tmp_path, remote_scheduler, capsys):
    import zarr

    from chunkseg.cli import main

    address, scheduler_file = remote_scheduler
    image = synthetic_nuclei((300, 340), seed=12)
    zarr.create_array(str(tmp_path / "in.zarr"), data=image, chunks=(100, 120))
    assert main(["segment", str(tmp_path / "in.zarr"), str(tmp_path / "t.zarr"), "--min-distance", "6"]) == 0
    assert main(["segment", str(tmp_path / "in.zarr"), str(tmp_path / "r.zarr"), "--min-distance", "6",
                 "--scheduler", address]) == 0
    assert main(["segment", str(tmp_path / "in.zarr"), str(tmp_path / "f.zarr"), "--min-distance", "6",
                 "--scheduler-file", str(scheduler_file), "--method", "label"]) == 0
    want = chunkseg.open_labels(tmp_path / "t.zarr").compute()
    np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "r.zarr").compute(), want)
    import scipy.ndimage as ndi

    t = chunkseg.threshold_otsu(image)
    np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "f.zarr").compute(),
                                  ndi.label(image > t)[0])
    # each run placed its chunks by band and took its scheduler plugin away again
    with Client(address) as c:
        left = c.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.plugins))
    assert not [name for name in left if name.startswith("chunkseg-placement")], left


def test_tiff_input_on_worker_processes_keeps_task_keys_consistent(tmp_path, caplog):
    import logging

    import tifffile

    image = synthetic_nuclei((256, 300), seed=13)
    rgb = np.stack([image, image // 2, image // 3], axis=-1)
    tifffile.imwrite(tmp_path / "in.tif", rgb, photometric="rgb")
    logging.getLogger("distributed.scheduler").setLevel(logging.WARNING)
    with caplog.at_level(logging.WARNING, logger="distributed.scheduler"):
        report = run_segment(tmp_path / "in.tif", tmp_path / "o.zarr", min_distance=6, channel=0,
                             chunks=128, scheduler="processes", workers=2)
    assert report.objects > 20
    assert "run_spec" not in caplog.text  # one key, one task, in every graph of the run
    want = run_segment(tmp_path / "in.tif", tmp_path / "t.zarr", min_distance=6, chunks=128, channel=0)
    assert want.objects == report.objects
    np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "o.zarr").compute(),
                                  chunkseg.open_labels(tmp_path / "t.zarr").compute())


def test_chunks_placed_by_band_keep_neighbours_on_one_worker():
    """With placement, each chunk's kept seeds result lives on its band's worker,
    seams alone send faces, and the labels equal the single-process ones."""
    from distributed import Future, get_task_stream

    from chunkseg import _graph
    from chunkseg.cluster import scheduler

    image = synthetic_nuclei((480, 480), seed=5)
    x = da.from_array(image, chunks=(120, 120))  # a 4 x 4 grid: two bands of two rows
    with dask.config.set(scheduler="sync"):
        want = chunkseg.segment(x, min_distance=6).compute()
    with scheduler("processes", workers=2) as client:
        assert _graph.placement_bands() == 2
        workers = sorted(client.scheduler_info()["workers"])
        mask, _ = chunkseg.foreground(x)
        with get_task_stream(client) as stream:
            seeds = chunkseg.find_seeds(mask, min_distance=6, keep_distances=True)
        held = seeds.held.keys
        where = dict(client.who_has())
        for index, key in held.items():
            assert tuple(where[key]) == (workers[_graph.band(index, (4, 4), 2)],), index
        # the summaries come back in one task per band, run where the band is
        collected = {t["key"][1:]: t["worker"] for t in stream.data
                     if t["key"][0].endswith("-summaries")}
        assert collected == {(0,): workers[0], (1,): workers[1]}
        labels = chunkseg.watershed(mask, seeds, min_distance=6)
        # the seeds reach the cluster once (scattered), not inside the tasks
        tables = [v for k, v in dict(labels.__dask_graph__()).items()
                  if isinstance(v, Future) and k not in held.values()]
        assert len(tables) == 1
        np.testing.assert_array_equal(tables[0].result(), seeds.flat)
        # on every worker: scattered data cannot be recomputed if its only holder dies
        assert sorted(client.who_has(tables[0])[tables[0].key]) == workers
        faces = [k for k in dict(labels.__dask_graph__()) if isinstance(k, tuple)
                 and k[0].endswith("labels-faces")]
        assert {k[1] for k in faces} == {1, 2}  # only the rows at the seam send faces
        np.testing.assert_array_equal(labels.compute(), want)


def test_placement_bands_follow_the_scheduler(client):
    from chunkseg import _graph

    assert _graph.placement_bands() is None  # a client that does not place: faces everywhere
    with dask.config.set(scheduler="threads"):
        assert _graph.placement_bands() == 1  # one memory: neighbours are used whole


def test_levels_budget_follows_the_scheduler_that_runs_the_pass():
    """The workers' memory decides on their client; under threads the levels stay in
    this process, so this machine's memory decides even while a client exists."""
    import psutil

    from chunkseg.segment import distances_budget

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, memory_limit="64MB",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster):
        assert distances_budget() == 64_000_000 // 4
        with dask.config.set(scheduler="threads"):
            assert distances_budget() == psutil.virtual_memory().total // 4


@pytest.mark.parametrize("workers", [1, 2])
def test_local_workers_share_the_machine_memory(workers):
    """``memory_limit="auto"``: the machine split equally, so one worker has all of it
    (distributed's own auto gave one single-threaded worker half of a 2-core machine)."""
    from distributed.system import MEMORY_LIMIT

    from chunkseg.cluster import scheduler

    with scheduler("processes", workers=workers) as client:
        limits = [w["memory_limit"] for w in client.scheduler_info()["workers"].values()]
    assert limits == [MEMORY_LIMIT // workers] * workers


def test_local_workers_under_a_memory_limit_start_fresh():
    """With a memory limit the workers are fresh interpreters, not forks of this process:
    a forked worker's resident memory counts the pages it shares with this one, which
    distributed charges to its limit (1024^3 at 1.75 GB a worker: workers killed, and
    the cluster hung once one was forked again to replace them)."""
    import gc

    from chunkseg.cluster import scheduler

    with scheduler("processes", workers=1, memory_limit="1.5GB") as client:
        assert gc.get_freeze_count() > 0  # this process froze its heap; a fork would inherit it
        assert list(client.run(gc.get_freeze_count).values()) == [0]
        limits = [w["memory_limit"] for w in client.scheduler_info()["workers"].values()]
    assert limits == [1_500_000_000]


def test_local_cluster_heap_frozen_and_health_check_every_100ms():
    """gc.freeze before the workers fork, unfrozen after; a caller's own freeze is kept.
    The event-loop health check runs every 100 ms (not 20) in the scheduler and the
    workers; a caller's slower setting is kept, and the setting is restored after."""
    import gc
    import multiprocessing

    from chunkseg.cluster import scheduler

    assert gc.get_freeze_count() == 0
    with scheduler("processes", workers=1) as client:
        assert gc.get_freeze_count() > 0
        if "fork" in multiprocessing.get_all_start_methods():  # a forked worker inherits it
            assert all(n > 0 for n in client.run(gc.get_freeze_count).values())
        assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler._tick_interval) == 0.1
        assert list(client.run(lambda dask_worker: dask_worker._tick_interval).values()) == [0.1]
    assert gc.get_freeze_count() == 0
    assert dask.config.get("distributed.admin.tick.interval") == "20ms"
    with dask.config.set({"distributed.admin.tick.interval": "2s"}), \
            scheduler("processes", workers=1) as client:
        assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler._tick_interval) == 2
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with scheduler("processes", workers=1):
            pass
        assert gc.get_freeze_count() > frozen // 2  # not unfrozen (a few frozen objects died)
    finally:
        gc.unfreeze()


def _worker_keeps(*messages):
    """Whether a local worker's ``distributed.worker`` logger lets each record through."""
    import logging

    logger = logging.getLogger("distributed.worker")
    return [bool(logger.filter(logger.makeRecord(logger.name, logging.ERROR, __file__, 0, m,
                                                 (), None))) for m in messages]


def test_local_workers_drop_only_records_that_repeat_or_come_from_closing():
    """A task's error reaches the client, so the worker's own copy is dropped; a heartbeat
    that fails while the cluster closes (distributed's race) only once the run is over
    (scheduler() does that after its block); anything else always shows."""
    import logging

    from chunkseg.cluster import _QUIET_WHILE_CLOSING, _Expected, _quiet_worker_logs, scheduler

    messages = ("Compute Failed\nKey: x", "Failed to communicate with scheduler during heartbeat.",
                "Worker stream died during communication")
    with scheduler("processes", workers=1) as client:
        assert list(client.run(_worker_keeps, *messages).values()) == [[False, True, True]]
        client.run(_quiet_worker_logs, _QUIET_WHILE_CLOSING)
        client.run(_quiet_worker_logs, _QUIET_WHILE_CLOSING)  # once is enough: one filter
        assert list(client.run(_worker_keeps, *messages).values()) == [[False, False, True]]
        assert list(client.run(lambda: sum(
            isinstance(f, _Expected)
            for f in logging.getLogger("distributed.worker").filters)).values()) == [1]


def test_quieting_the_closing_workers_never_fails_a_run(monkeypatch):
    """That step is best effort: a worker that cannot be reached at the end (here the
    call fails as a lost worker's would) leaves the run's result standing."""
    from distributed import Client as RealClient

    from chunkseg.cluster import _QUIET_WHILE_CLOSING, scheduler

    real_run = RealClient.run
    calls = []

    def run(self, function, *args, **kwargs):
        if args == (_QUIET_WHILE_CLOSING,):
            calls.append(function)
            raise OSError("worker lost")
        return real_run(self, function, *args, **kwargs)

    monkeypatch.setattr(RealClient, "run", run)
    with scheduler("processes", workers=1) as client:
        total = client.submit(sum, [1, 2, 3]).result()
    assert total == 6 and len(calls) == 1


def test_placement_can_be_turned_off():
    """``chunkseg.placement: false``: no plugin, every neighbour sends faces, same labels."""
    from chunkseg import _graph
    from chunkseg.cluster import scheduler

    x = da.from_array(synthetic_nuclei((240, 240), seed=2), chunks=(80, 80))
    with dask.config.set(scheduler="sync"):
        want = chunkseg.segment(x, min_distance=6).compute()
    with dask.config.set({"chunkseg.placement": False}), scheduler("processes", workers=2) as c:
        assert _graph.placement_bands() is None
        plugins = c.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.plugins))
        assert not [p for p in plugins if p.startswith("chunkseg-placement")]
        np.testing.assert_array_equal(chunkseg.segment(x, min_distance=6).compute(), want)
