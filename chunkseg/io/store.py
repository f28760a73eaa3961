"""Where a path becomes a storage location: the one place that knows what a location is.

Today every location is a local path; the object-storage work adds URLs
(``s3://``, ``gs://``, ``https://``) here and nowhere else: readers, writers
and resume ask this module whether a location exists, how to remove it and
what token identifies its content.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .._validate import InputError

__all__ = ["exists", "is_local", "location", "missing", "remove", "token"]


def location(path) -> Path:
    """The storage location of ``path`` (a str or os.PathLike)."""
    return Path(path)


def is_local(path) -> bool:
    """Whether ``path`` names a location (a str or a path), not an in-memory array."""
    return isinstance(path, (str, os.PathLike))


def exists(path) -> bool:
    return location(path).exists()


def missing(path) -> InputError:
    """The error for an input that is not there."""
    return InputError(f"input not found: {path} (check the path)")


def remove(path) -> None:
    """Remove a store (a folder) or a file at ``path``; nothing when it is absent."""
    path = location(path)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def token(path) -> str:
    """A token for a stored file or store that changes when it is rewritten."""
    from dask.base import tokenize

    path = location(path)
    st = os.stat(path)
    return tokenize(str(path.resolve()), st.st_size, st.st_mtime_ns)


def resolved(path) -> str:
    """An absolute name of ``path`` for reports and comparisons."""
    return str(location(path).resolve())
