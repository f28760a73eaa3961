"""Real servers on 127.0.0.1 for the storage tests: an S3 API (moto's server mode) and HTTP."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading

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
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield server, env
    finally:
        # the server may have been stopped already (a test of a server gone mid-run)
        with contextlib.suppress(Exception):
            server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
