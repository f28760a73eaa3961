"""gs:// and az:// as s3:// is: real Google Cloud Storage and Azure Blob API servers on
127.0.0.1 (fake-gcs-server from its PyPI wheel, Azurite from the npm registry), read and written
through gcsfs and adlfs by worker processes; labels equal the local-disk run's."""

import json
import subprocess
import sys

import numpy as np
import pytest
import zarr

import chunkseg
from chunkseg.cli import main
from chunkseg.io import resume, store

from ._servers import azure_server, gcs_server
from ._stores import put_input_with_local_labels, write_ome_zarr

#: Each scheme's storage options: gcsfs would otherwise look for Google credentials (a
#: metadata server among them) before it falls back to anonymous access.
OPTIONS = {"gs": {"token": "anon"}, "az": {}}


def _filesystem(scheme):
    """The scheme's filesystem on the server, with a bucket (a container) ``data``."""
    if scheme == "gs":
        import gcsfs

        fs = gcsfs.GCSFileSystem(token="anon", skip_instance_cache=True)
    else:
        import adlfs

        fs = adlfs.AzureBlobFileSystem(skip_instance_cache=True)
    fs.mkdir("data")
    return fs


@pytest.fixture(scope="module", params=["gs", "az"])
def cloud(request, tmp_path_factory):
    """A server of the scheme, its filesystem, and a local input with its local-disk labels."""
    scheme = request.param
    server = gcs_server() if scheme == "gs" else azure_server()
    with server:
        fs = _filesystem(scheme)
        folder = tmp_path_factory.mktemp(scheme)
        image, want = put_input_with_local_labels(fs, folder, seed=23)
        yield {"scheme": scheme, "fs": fs, "image": image, "want": want, "folder": folder,
               "options": OPTIONS[scheme],
               "args": ["--storage-options", json.dumps(OPTIONS[scheme])] if OPTIONS[scheme]
               else []}


def test_worker_processes_segment_between_buckets_as_on_local_disk(cloud):
    """Two worker processes read the input and write labels, pyramid, report and table in the
    store themselves; the labels equal the local-disk run's bit for bit, the run ends cleanly
    (nothing printed at exit) and its chunks are the blocks done."""
    url = f"{cloud['scheme']}://data/out.zarr"
    run = subprocess.run([sys.executable, "-m", "chunkseg", "segment",
                          f"{cloud['scheme']}://data/in.zarr", url, "--min-distance", "6",
                          "--workers", "2", "--table", f"{cloud['scheme']}://data/objects.csv",
                          *cloud["args"]], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "Error" not in run.stderr, run.stderr
    with store.storage_options(cloud["options"]):
        got = chunkseg.open_labels(url).compute()
        np.testing.assert_array_equal(got, cloud["want"])
        levels = zarr.open_group(url, mode="r")
        assert "1" in levels  # the pyramid
        done = resume.done_blocks(url)
    fs = cloud["fs"]
    report = json.loads(fs.cat_file("data/out.zarr.report.json"))
    assert report["objects"] == int(cloud["want"].max())
    assert fs.cat_file("data/objects.csv").decode().count("\n") == report["objects"] + 1
    assert done == set(np.ndindex(3, 3))  # 300x340 in the input's 100x120 chunks


def test_ome_zarr_levels_and_channels_are_read_from_the_store(cloud):
    image = np.stack([cloud["image"], 255 - cloud["image"]])
    write_ome_zarr(cloud["folder"] / "img.ome.zarr", image, channel_names=["DNA", "inv"])
    cloud["fs"].put(str(cloud["folder"] / "img.ome.zarr"), "data/img.ome.zarr", recursive=True)
    url = f"{cloud['scheme']}://data/img.ome.zarr"
    with store.storage_options(cloud["options"]):
        for level in (0, 1):
            got = chunkseg.open_image(url, channel="inv", level=level).compute()
            np.testing.assert_array_equal(got, image[1, ::2**level, ::2**level])


def test_existing_output_and_missing_bucket_are_one_line_exit_2(cloud, capsys):
    scheme = cloud["scheme"]
    cloud["fs"].pipe_file("data/taken.zarr/zarr.json", b"{}")
    assert main(["segment", f"{scheme}://data/in.zarr", f"{scheme}://data/taken.zarr",
                 *cloud["args"]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{scheme}://data/taken.zarr" in err, err
    assert "--overwrite" in err
    assert main(["segment", f"{scheme}://nobucket/in.zarr", str(cloud["folder"] / "x.zarr"),
                 *cloud["args"]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{scheme}://nobucket/in.zarr" in err, err
    assert not (cloud["folder"] / "x.zarr").exists()
