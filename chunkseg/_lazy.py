"""Public names of a package that load on first use (PEP 562), for chunkseg and chunkseg.io.

``chunkseg --help``, ``chunkseg info`` and a worker that unpickles one kernel
then import no more than they touch (dask.array, zarr and numba cost about a
second).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys


def attach(package: str, public: dict):
    """``(__getattr__, __dir__)`` for ``package``: ``public`` maps each name to the submodule
    that defines it; any other name that is a submodule is imported as such."""

    def __getattr__(name: str):
        module = public.get(name)
        if module is None:
            if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}"):
                return importlib.import_module(f".{name}", package)
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        vars(sys.modules[package])[name] = value  # found once, then a plain attribute
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__
