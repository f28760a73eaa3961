"""Where a path or URL becomes a storage location: the one place that knows what one is.

A :class:`Location` is a local path or a URL (``s3://``, ``gs://``,
``az://``, ``https://`` read-only, ``file://``). Readers, writers and resume
ask it whether something exists, open it as a Zarr store, read and write
small files (markers, the report, the table) and remove it; nothing else in
chunkseg tells the two apart. Remote locations go through fsspec (s3fs,
gcsfs, adlfs, aiohttp), whose clients take their credentials and endpoints
the standard way: for S3 the ``AWS_*`` environment variables (``AWS_ENDPOINT_URL``
for S3-compatible servers) and profiles; ``storage_options`` (a dict,
``--storage-options JSON``) pass anything else, ``anon=True`` (``--anon``)
reads public buckets. Secrets are never part of a location's name, so they
appear in no report, attribute, log or message.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import json
import os
import shutil
from pathlib import Path

from .._validate import InputError

__all__ = ["Location", "exists", "is_location", "location", "missing", "recorded",
           "storage_options", "token"]

#: URL schemes chunkseg reads; the last two only read (no output goes there).
REMOTE = ("s3", "gs", "gcs", "az", "abfs", "http", "https")
READ_ONLY = ("http", "https")

_OPTIONS: contextvars.ContextVar[dict] = contextvars.ContextVar("chunkseg_storage_options",
                                                               default={})


@contextlib.contextmanager
def storage_options(options: dict | None = None, *, anon: bool = False):
    """Storage options for every remote location opened inside the block (None and not
    ``anon``: those already in force)."""
    if options is None and not anon:
        yield _OPTIONS.get()
        return
    merged = dict(check_storage_options(options))
    if anon:
        merged["anon"] = True
    token = _OPTIONS.set(merged)
    try:
        yield merged
    finally:
        _OPTIONS.reset(token)


def check_storage_options(options) -> dict:
    """A dict, or a JSON object as text (``--storage-options``)."""
    if options is None:
        return {}
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError as exc:
            raise InputError(f"`storage_options` must be a JSON object, got {options!r} "
                             f"({exc.msg})") from None
    if not isinstance(options, dict):
        raise InputError(f"`storage_options` must be a JSON object (a dict), got "
                         f"{type(options).__name__}")
    return options


@functools.lru_cache(maxsize=16)
def _filesystem(protocol: str, options: str):
    import fsspec

    try:
        return fsspec.filesystem(protocol, **json.loads(options))
    except (ImportError, ValueError) as exc:
        raise InputError(f"cannot open {protocol}:// locations here ({exc}); install the "
                         f"fsspec backend for {protocol}") from None


@dataclasses.dataclass(frozen=True)
class Location:
    """A local path or a URL, with what is needed to reach it."""

    name: str  # the local path or the URL as given (never with credentials)
    protocol: str = "file"
    options: str = "{}"  # storage options as JSON (hashable)

    @property
    def local(self) -> bool:
        return self.protocol == "file"

    @property
    def path(self) -> Path:
        return Path(self.name)

    def __str__(self) -> str:
        return self.name

    def __fspath__(self) -> str:  # only local locations are paths
        if not self.local:
            raise TypeError(f"{self.name} is not a local path")
        return self.name

    def __truediv__(self, part: str) -> Location:
        if self.local:
            return dataclasses.replace(self, name=str(self.path / part))
        return dataclasses.replace(self, name=f"{self.name.rstrip('/')}/{part}")

    @property
    def fs(self):
        return _filesystem(self.protocol, self.options)

    def _call(self, what: str, func, *args, **kwargs):
        """A remote call whose failure is one line naming the URL (never its credentials)."""
        try:
            return func(*args, **kwargs)
        except FileNotFoundError:
            raise
        except PermissionError as exc:
            raise self.denied(exc) from None
        except OSError as exc:
            raise InputError(f"cannot {what} {self.name} ({type(exc).__name__}: {_short(exc)}); "
                             "check the URL, the endpoint (AWS_ENDPOINT_URL) and the "
                             "credentials") from None

    def denied(self, exc: BaseException) -> InputError:
        """The one line for a refused request: which location, and what to check."""
        return InputError(f"access to {self.name} denied ({_short(exc)}); check the "
                          "credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, "
                          "`storage_options`) or use `anon` for a public bucket")

    def exists(self) -> bool:
        if self.local:
            return self.path.exists()
        return bool(self._call("reach", self.fs.exists, self.name))

    def remove(self) -> None:
        if self.local:
            if self.path.is_dir():
                shutil.rmtree(self.path)
            elif self.path.exists():
                self.path.unlink()
        elif self.exists():
            self._call("remove", self.fs.rm, self.name, recursive=True)

    def resolved(self) -> str:
        return str(self.path.resolve()) if self.local else self.name

    def check_writable(self) -> None:
        if self.protocol in READ_ONLY:
            raise InputError(f"{self.name}: {self.protocol}:// is read-only; write the output to "
                             "a local path or to object storage (s3://, gs://, az://)")

    def zarr_store(self, *, read_only: bool):
        """What zarr opens: the path for local stores, an FsspecStore for URLs (or, with the
        dask config ``chunkseg.store: obstore``, zarr's ObjectStore over obstore for s3://)."""
        if self.local:
            return self.name
        if not read_only:
            self.check_writable()
        if self.protocol == "s3" and _backend() == "obstore":
            return _obstore(self.name, json.loads(self.options), read_only)
        from zarr.storage import FsspecStore

        fs_store = FsspecStore.from_url(self.name, storage_options=json.loads(self.options),
                                        read_only=read_only)
        if self.protocol in ("az", "abfs"):
            _close_clients_before_zarr_stops()
        if not read_only:
            return fs_store
        from ._readcache import CachedStore

        return CachedStore(fs_store)

    @property
    def fork_safe(self) -> bool:
        """Whether a worker process forked from this one can read and write here: zarr's and
        fsspec's event loops are made anew in a forked child, obstore's runtime is not (its
        threads are gone, and a forked worker waits on its first read for ever)."""
        return self.local or not (self.protocol == "s3" and _backend() == "obstore")

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes of a file (a range request for URLs)."""
        if self.local:
            with open(self.path, "rb") as f:
                return f.read(n)
        return self._call("read", self.fs.cat_file, self.name, start=0, end=n)

    def is_dir(self) -> bool:
        """A folder, or a key prefix with keys below it (a Zarr store on object storage)."""
        if self.local:
            return self.path.is_dir()
        return self._call("reach", self.fs.isdir, self.name)

    def read_bytes(self) -> bytes:
        if self.local:
            return self.path.read_bytes()
        return self._call("read", self.fs.cat_file, self.name)

    def write_bytes(self, data: bytes) -> None:
        if self.local:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(data)
        else:
            self.check_writable()
            self._call("write", self.fs.pipe_file, self.name, data)

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def names(self) -> list[str]:
        """The names directly inside this location (a folder or a key prefix)."""
        if self.local:
            return [p.name for p in self.path.iterdir()] if self.path.is_dir() else []
        try:
            found = self._call("list", self.fs.ls, self.name, detail=False)
        except FileNotFoundError:
            return []
        return [p.rstrip("/").rsplit("/", 1)[-1] for p in found]

    def keys(self) -> set[str]:
        """Every key below this location (a folder or a key prefix), relative to it."""
        if self.local:
            return {p.relative_to(self.path).as_posix() for p in self.path.rglob("*")
                    if p.is_file()}
        root = self.fs._strip_protocol(self.name).rstrip("/") + "/"
        try:
            found = self._call("list", self.fs.find, self.name)
        except FileNotFoundError:
            return set()
        return {p[len(root):] for p in found if p.startswith(root)}

    def token(self) -> str:
        """A token that changes when what is stored here is rewritten."""
        from dask.base import tokenize

        if self.local:
            st = os.stat(self.path)
            return tokenize(self.resolved(), st.st_size, st.st_mtime_ns)
        info = {}
        for meta in ("zarr.json", ".zgroup", ".zarray", ""):
            target = self / meta if meta else self
            try:
                info = self._call("reach", self.fs.info, target.name)
                break
            except FileNotFoundError:
                continue
        return tokenize(self.name, info.get("ETag") or info.get("etag"), info.get("size"),
                        str(info.get("LastModified") or info.get("mtime")))


def _backend() -> str:
    """``fsspec`` (default) or ``obstore``: the dask config ``chunkseg.store``
    (``DASK_CHUNKSEG__STORE=obstore``), for S3 only."""
    import dask

    backend = str(dask.config.get("chunkseg.store", "fsspec"))
    if backend not in ("fsspec", "obstore"):
        raise InputError(f"chunkseg.store must be fsspec or obstore, got {backend!r}")
    return backend


def _obstore(url: str, options: dict, read_only: bool):
    """zarr's ObjectStore on obstore's S3Store (endpoint and credentials from the AWS_*
    variables, as s3fs takes them)."""
    try:
        from obstore.store import S3Store
    except ImportError:
        raise InputError("chunkseg.store: obstore needs the obstore package "
                         "(pip install obstore)") from None
    from zarr.storage import ObjectStore

    # the fsspec options do not carry over (other names): credentials come from AWS_*
    config = {"skip_signature": True} if options.get("anon") else {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    client = {"allow_http": True} if endpoint.startswith("http://") else {}
    return ObjectStore(S3Store.from_url(url, config=config or None, client_options=client or None),
                       read_only=read_only)


@functools.cache
def _close_clients_before_zarr_stops() -> None:
    """adlfs closes each Azure client in a ``weakref.finalize`` that holds the filesystem
    itself, so it runs only at exit, on the filesystem's event loop (None for the ones zarr
    makes, whose clients live on zarr's loop); by then zarr has stopped its loop and each
    prints "Loop is not running" after a clean run. This hook, registered after zarr's
    (atexit runs the last one first), closes them while the loops still run."""
    import atexit
    import weakref

    def close() -> None:
        from fsspec.asyn import sync
        from zarr.core.sync import _get_loop

        for finalizer in list(weakref.finalize._registry):
            args = (finalizer.peek() or (None, None, ()))[2]  # (object, func, args, kwargs)
            if len(args) != 3 or type(args[2]).__module__.split(".")[0] != "adlfs":
                continue
            loop, func, fs = args
            finalizer.detach()
            with contextlib.suppress(Exception):
                sync(loop if loop is not None and loop.is_running() else _get_loop(), func, fs)

    atexit.register(close)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def is_url(path) -> bool:
    return isinstance(path, str) and "://" in path


def location(path) -> Location:
    """The storage location of ``path``: a str, an os.PathLike, a URL or a Location."""
    if isinstance(path, Location):
        return path
    if is_url(path):
        protocol, _, rest = path.partition("://")
        protocol = protocol.lower()
        if protocol == "file":
            return Location(rest)
        if protocol not in REMOTE:
            raise InputError(f"{path}: unknown URL scheme {protocol}://; use a local path, "
                             f"file://, {', '.join(p + '://' for p in REMOTE)}")
        options = dict(_OPTIONS.get())
        if protocol == "s3":
            # one GET per chunk: s3fs otherwise asks each object's size first (a HEAD) to split
            # large reads in parallel; chunkseg's concurrency is over chunks
            options.setdefault("max_concurrency", 1)
        return Location(path.rstrip("/"), protocol, json.dumps(options, sort_keys=True))
    return Location(os.fspath(path))


def is_location(path) -> bool:
    """Whether ``path`` names a location (a str, a path, a URL), not an in-memory array."""
    return isinstance(path, (str, os.PathLike, Location))


def exists(path) -> bool:
    return location(path).exists()


def recorded(path):
    """How a run records an input: its resolved location, or "array" for an in-memory one;
    a series of files: the list of theirs."""
    if isinstance(path, (list, tuple)):
        return [recorded(p) for p in path]
    return resolved(path) if is_location(path) else "array"


def missing(path) -> InputError:
    """The error for an input that is not there."""
    return InputError(f"input not found: {path} (check the path)")


def token(path) -> str:
    """A token for a stored file or store that changes when it is rewritten."""
    return location(path).token()


def resolved(path) -> str:
    """An absolute name of ``path`` for reports and comparisons."""
    return location(path).resolved()


def _forget_filesystems() -> None:
    """In a forked worker, no client of the parent's: fsspec's async filesystems (s3fs)
    refuse to run in a child of the process that made them ("not fork-safe")."""
    _filesystem.cache_clear()
    import sys

    if "fsspec" not in sys.modules:
        return
    from fsspec.registry import _registry

    for cls in list(_registry.values()):
        try:
            cls.clear_instance_cache()
        except Exception:  # a backend without an instance cache
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_filesystems)
