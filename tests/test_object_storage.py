"""Images and labels on object storage: a real S3 API server (moto) and an HTTP server on
127.0.0.1, read and written through zarr's fsspec store; labels equal the local-disk run's."""

import json
import os
import subprocess
import sys

import dask
import numpy as np
import pytest
import zarr

import chunkseg
import chunkseg.run
from chunkseg.cli import main
from chunkseg.datasets import synthetic_nuclei

from ._servers import SECRET, http_server, s3_server
from ._stores import put_input_with_local_labels, write_ome_zarr



@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The server, an S3 filesystem on it, and a local input with its local-disk labels."""
    import s3fs

    with s3_server() as (server, env):
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("data")
        folder = tmp_path_factory.mktemp("s3")
        image, want = put_input_with_local_labels(fs, folder, seed=21)
        yield {"fs": fs, "env": env, "image": image, "want": want, "folder": folder}


def _objects_text(fs, prefix):
    """Every object under ``prefix`` as text (to look for secrets in)."""
    return "".join(fs.cat_file(p).decode("latin-1") for p in fs.find(prefix))


def test_segment_from_s3_to_s3_equals_local_disk_and_leaves_no_secret(s3, capsys):
    assert main(["segment", "s3://data/in.zarr", "s3://data/out.zarr", "--min-distance", "6",
                 "--table", "s3://data/objects.csv"]) == 0
    out = capsys.readouterr()
    got = chunkseg.open_labels("s3://data/out.zarr").compute()
    np.testing.assert_array_equal(got, s3["want"])
    fs = s3["fs"]
    report = json.loads(fs.cat_file("data/out.zarr.report.json"))
    assert report["params"]["input"] == "s3://data/in.zarr"
    assert report["objects"] == int(s3["want"].max())
    assert fs.cat_file("data/objects.csv").decode().count("\n") == report["objects"] + 1
    assert not fs.exists("data/out.zarr/.chunkseg-progress")  # markers removed when complete
    written = _objects_text(fs, "data/out.zarr") + fs.cat_file("data/out.zarr.report.json").decode()
    assert SECRET not in written + out.out + out.err


def test_zarr_v2_and_ome_zarr_levels_channels_on_s3(s3, tmp_path):
    fs = s3["fs"]
    image = s3["image"]
    zarr.create_array(str(tmp_path / "v2.zarr"), data=image, chunks=(64, 64), zarr_format=2)
    fs.put(str(tmp_path / "v2.zarr"), "data/v2.zarr", recursive=True)
    np.testing.assert_array_equal(chunkseg.open_image("s3://data/v2.zarr").compute(), image)
    stack = np.stack([image, image[::-1]])
    write_ome_zarr(tmp_path / "ome.zarr", stack, axes="cyx", chunks=(1, 100, 100), levels=2,
                   channel_names=["DNA", "flipped"])
    fs.put(str(tmp_path / "ome.zarr"), "data/ome.zarr", recursive=True)
    info = chunkseg.inspect_image("s3://data/ome.zarr")
    assert info.channels == ["DNA", "flipped"] and len(info.levels) == 2
    np.testing.assert_array_equal(
        chunkseg.open_image("s3://data/ome.zarr", channel="flipped").compute(), image[::-1])
    np.testing.assert_array_equal(
        chunkseg.open_image("s3://data/ome.zarr", channel=0, level=1).compute(),
        zarr.open_group(str(tmp_path / "ome.zarr"), mode="r")["1"][0])


@pytest.mark.parametrize("backend", ["fsspec", "obstore"])
def test_worker_processes_read_and_write_s3_themselves(s3, backend):
    # a real CLI process with two worker processes: the workers open the store themselves.
    # fsspec's workers are forked, obstore's spawned (a forked one waited on its first read
    # for ever: obstore's runtime threads do not survive a fork)
    out = f"s3://data/procs-{backend}.zarr"
    run = subprocess.run([sys.executable, "-m", "chunkseg", "-v", "segment", "s3://data/in.zarr",
                          out, "--min-distance", "6", "--scheduler", "processes", "--workers",
                          "2"], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, DASK_CHUNKSEG__STORE=backend))
    assert run.returncode == 0, run.stderr
    np.testing.assert_array_equal(chunkseg.open_labels(out).compute(), s3["want"])
    assert SECRET not in run.stdout + run.stderr
    with dask.config.set({"chunkseg.store": backend}):
        method = chunkseg.run._start_method("s3://data/in.zarr", out, None)
    assert method == ("spawn" if backend == "obstore" else None)


def test_bad_locations_are_one_line_and_write_nothing(s3, capsys):
    fs = s3["fs"]
    assert main(["segment", "s3://nope/in.zarr", "s3://data/x.zarr"]) == 2
    assert "input not found: s3://nope/in.zarr" in capsys.readouterr().err
    assert main(["segment", "s3://data/missing.zarr", "s3://data/x.zarr"]) == 2
    assert "input not found: s3://data/missing.zarr" in capsys.readouterr().err
    fs.pipe_file("data/taken.zarr/zarr.json", b"{}")
    assert main(["segment", "s3://data/in.zarr", "s3://data/taken.zarr"]) == 2
    assert "s3://data/taken.zarr exists; pass --overwrite" in capsys.readouterr().err
    assert main(["segment", "s3://data/in.zarr", "https://example.org/out.zarr"]) == 2
    assert "https:// is read-only" in capsys.readouterr().err
    assert main(["segment", "ftp://host/in.zarr", "s3://data/x.zarr"]) == 2
    assert "unknown URL scheme ftp://" in capsys.readouterr().err
    assert main(["segment", "s3://data/in.zarr", "s3://data/x.zarr",
                 "--storage-options", "{not json"]) == 2
    assert "--storage-options must be a JSON object" in capsys.readouterr().err
    assert not fs.exists("data/x.zarr")


def test_https_ome_zarr_is_read_and_segmented_to_local(s3, tmp_path, capsys):
    image = s3["image"]
    write_ome_zarr(tmp_path / "served" / "img.zarr", image[None], axes="cyx",
                   chunks=(1, 100, 120))
    with http_server(tmp_path / "served") as base:
        url = f"{base}/img.zarr"
        np.testing.assert_array_equal(chunkseg.open_image(url).compute(), image)
        assert main(["-q", "segment", url, str(tmp_path / "o.zarr"), "--min-distance", "6"]) == 0
        np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "o.zarr").compute(),
                                      s3["want"])
        capsys.readouterr()
        assert main(["segment", url, "--into-input", "nuclei"]) == 2
        assert "http:// is read-only" in capsys.readouterr().err


def _wait_for_markers(fs, output: str, proc, at_least: int = 2, timeout: float = 120) -> None:
    """Until ``at_least`` chunks of a run writing to ``output`` (bucket/key) are written (on
    object storage the level-0 chunk is its own marker)."""
    import time

    done = f"{output}/0/c"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        fs.invalidate_cache()
        if fs.exists(done) and len(fs.find(done)) >= at_least:
            return
        time.sleep(0.01)
    raise AssertionError(f"no {at_least} chunks of {output} were written in time")


def _resume_and_compare(url: str, args, image) -> None:
    """The output at ``url`` is incomplete; ``--resume`` finishes it with the whole-image labels."""
    from chunkseg.io import resume

    with pytest.raises(chunkseg.InputError, match="incomplete"):
        chunkseg.open_labels(url)
    done = resume.done_blocks(url)  # the chunks stored are the blocks done
    total = int(np.prod(zarr.open_array(url + "/0", mode="r").cdata_shape))
    assert 0 < len(done) < total, (len(done), total)
    run = subprocess.run([sys.executable, *args, "--resume"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    want = chunkseg.segment(image, min_distance=6).compute()
    np.testing.assert_array_equal(chunkseg.open_labels(url).compute(), want)


@pytest.mark.slow  # the server-gone test below resumes on S3 in the default run
def test_killed_run_on_s3_is_incomplete_and_resume_finishes_it(s3, tmp_path):
    """The chunks are their own markers: a run killed mid-way resumes bit-identically."""
    import signal

    image = synthetic_nuclei((512, 768), seed=5)
    zarr.create_array(str(tmp_path / "big.zarr"), data=image, chunks=(128, 128))
    fs = s3["fs"]
    fs.put(str(tmp_path / "big.zarr"), "data/big.zarr", recursive=True)
    args = ["-m", "chunkseg", "-q", "segment", "s3://data/big.zarr", "s3://data/big-out.zarr",
            "--min-distance", "6", "--workers", "1"]
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_markers(fs, "data/big-out.zarr", proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    _resume_and_compare("s3://data/big-out.zarr", args, image)


def test_server_gone_mid_run_is_one_line_exit_1_and_resumable(s3, tmp_path):
    """The S3 server stops while chunks are written: exit 1, one line naming the chunk and the
    URL, the output incomplete; started again, --resume finishes it bit-identically."""
    import socket

    from ._servers import s3_server

    image = synthetic_nuclei((512, 768), seed=6)
    zarr.create_array(str(tmp_path / "gone.zarr"), data=image, chunks=(128, 128))
    with socket.socket() as sock:  # a free port, the same for both servers
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["-m", "chunkseg", "-q", "segment", "s3://gone/in.zarr", "s3://gone/out.zarr",
            "--min-distance", "6", "--workers", "1"]
    with s3_server(port) as (server, _):
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("gone")
        fs.put(str(tmp_path / "gone.zarr"), "gone/in.zarr", recursive=True)
        proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        _wait_for_markers(fs, "gone/out.zarr", proc)
        server.stop()
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, lines
        assert "s3://gone/" in lines[0] and "chunk (" in lines[0] and "resume" in lines[0], lines
    with s3_server(port):
        _resume_and_compare("s3://gone/out.zarr", args, image)


def test_chunks_read_again_come_from_the_process_cache(s3, tmp_path):
    """A remote chunk read twice is one request; a store opened again asks the server anew
    (rewritten data is seen); ``chunkseg.read-cache: 0`` turns the cache off."""
    from chunkseg.io import store
    from chunkseg.io._readcache import chunk_cache

    fs = s3["fs"]
    image = np.arange(40 * 60, dtype=np.uint16).reshape(40, 60)
    zarr.create_array(str(tmp_path / "c.zarr"), data=image, chunks=(20, 20))
    fs.put(str(tmp_path / "c.zarr"), "data/cache.zarr", recursive=True)
    cache = chunk_cache()
    array = zarr.open_array(store.location("s3://data/cache.zarr").zarr_store(read_only=True),
                            mode="r")
    hits, misses = cache.hits, cache.misses
    np.testing.assert_array_equal(array[:], image)
    np.testing.assert_array_equal(array[:], image)
    assert (cache.hits - hits, cache.misses - misses) == (6, 6)
    zarr.create_array(str(tmp_path / "c.zarr"), data=image + 1, chunks=(20, 20), overwrite=True)
    fs.rm("data/cache.zarr", recursive=True)
    fs.put(str(tmp_path / "c.zarr"), "data/cache.zarr", recursive=True)
    again = zarr.open_array(store.location("s3://data/cache.zarr").zarr_store(read_only=True),
                            mode="r")
    np.testing.assert_array_equal(again[:], image + 1)
    hits = cache.hits
    with dask.config.set({"chunkseg.read-cache": 0}):
        np.testing.assert_array_equal(again[:], image + 1)
    assert cache.hits == hits


def test_tiled_pyramidal_tiff_on_s3_is_read_by_byte_ranges(s3, tmp_path):
    """A tiled pyramidal TIFF on S3 reads lazily, each level equal to the local file's."""
    from ._stores import write_pyramidal_tiff

    image = s3["image"]
    local = write_pyramidal_tiff(tmp_path / "slide.tif", image, levels=3, tile=(64, 64))
    s3["fs"].put(str(local), "data/slide.tif")
    info = chunkseg.inspect_image("s3://data/slide.tif")
    assert info.format == "tiff" and len(info.levels) == 3
    for level in range(3):
        got = chunkseg.open_image("s3://data/slide.tif", level=level)
        np.testing.assert_array_equal(got.compute(), chunkseg.open_image(local, level=level))
    # a window within one tile
    part = chunkseg.open_image("s3://data/slide.tif")[:64, :64].compute()
    np.testing.assert_array_equal(part, image[:64, :64])


@pytest.mark.slow  # a scheduler and two workers start (about 10 s); processes run by default
def test_remote_scheduler_workers_read_and_write_s3(s3, tmp_path):
    """`dask scheduler` and `dask worker` processes (their own environment's credentials)."""
    from ._cluster import remote_cluster

    with remote_cluster(tmp_path, nworkers=2) as (address, _):
        assert main(["-q", "segment", "s3://data/in.zarr", "s3://data/remote.zarr",
                     "--min-distance", "6", "--scheduler", address]) == 0
    np.testing.assert_array_equal(chunkseg.open_labels("s3://data/remote.zarr").compute(),
                                  s3["want"])


def test_obstore_backend_gives_the_same_labels(s3, capsys):
    """zarr's ObjectStore over obstore (dask config chunkseg.store: obstore), for s3://."""
    import dask

    with dask.config.set({"chunkseg.store": "obstore"}):
        assert main(["-q", "segment", "s3://data/in.zarr", "s3://data/obstore.zarr",
                     "--min-distance", "6"]) == 0
        np.testing.assert_array_equal(chunkseg.open_labels("s3://data/obstore.zarr").compute(),
                                      s3["want"])
    with dask.config.set({"chunkseg.store": "bogus"}):
        assert main(["info", "s3://data/in.zarr"]) == 2
        assert "chunkseg.store must be fsspec or obstore, got 'bogus'" in capsys.readouterr().err


def test_bad_credentials_are_one_line_exit_2(s3, capsys):
    """The server checks signatures against its users (moto's IAM auth on): the test's keys
    belong to no user, so every request is refused."""
    import moto.settings

    moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    try:
        assert main(["segment", "s3://data/in.zarr", "s3://data/denied.zarr"]) == 2
    finally:
        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "access to s3://data/in.zarr denied" in err[0], err
    assert "check the credentials" in err[0] and SECRET not in err[0]
    assert not s3["fs"].exists("data/denied.zarr")
