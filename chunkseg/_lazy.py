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


class Deferred:
    """A module imported on its first attribute access: ``da = Deferred("dask.array")`` at
    the top of a module whose every use of ``da`` is inside a function, so importing that
    module (e.g. the readers, for ``chunkseg info``) does not import dask.array (0.4-1 s)."""

    def __init__(self, name: str):
        vars(self)["_deferred"] = name

    def __getattr__(self, attr: str):
        value = getattr(importlib.import_module(vars(self)["_deferred"]), attr)
        if not attr.startswith("__"):
            vars(self)[attr] = value  # found once, then a plain attribute
        return value

    def __repr__(self) -> str:
        return f"<deferred module {vars(self)['_deferred']!r}>"
