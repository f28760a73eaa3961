"""The chunks a process has read from a remote Zarr store, kept for the next read.

A run reads its input more than once (the threshold's pass, then the seeds and
the watershed). On local disk the operating system's page cache answers the
second read; on object storage it would be another request, with its latency
and the client's and server's work. :class:`CachedStore` answers a chunk read
again from this process's memory, up to the dask config ``chunkseg.read-cache``
(bytes, default 256 MiB, ``0`` turns it off; least recently used dropped
first). Metadata and byte ranges always go to the store, and the keys carry
the namespace of one opening of a store: a store opened again (rewritten,
perhaps) is never answered from here.
"""

from __future__ import annotations

import collections
import os
import threading
import uuid

from zarr.storage import WrapperStore

__all__ = ["CachedStore", "READ_CACHE", "chunk_cache"]

#: Bytes of remote chunks each process keeps once read.
READ_CACHE = "256 MiB"

_METADATA = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")


class _ChunkCache:
    """Bytes by key, least recently used dropped first past a limit; thread-safe."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    def get(self, key):
        with self._lock:
            data = self._items.get(key)
            if data is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return data

    def put(self, key, data: bytes, limit: int) -> None:
        if len(data) > limit:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = data
            self._bytes += len(data)
            while self._bytes > limit:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)


_CHUNKS = _ChunkCache()


def chunk_cache() -> _ChunkCache:
    """This process's cache (its ``hits`` and ``misses`` count reads)."""
    return _CHUNKS


def _limit() -> int:
    import dask
    from dask.utils import parse_bytes

    value = dask.config.get("chunkseg.read-cache", READ_CACHE)
    return int(parse_bytes(value) if isinstance(value, str) else value)


class CachedStore(WrapperStore):
    """A read-only store whose chunks, once read in this process, are answered from memory."""

    def __init__(self, store, namespace: str | None = None):
        super().__init__(store)
        self.namespace = namespace or uuid.uuid4().hex

    def _with_store(self, store):
        return type(self)(store, self.namespace)

    def __reduce__(self):  # every task of a run shares its namespace
        return type(self), (self._store, self.namespace)

    async def get(self, key, prototype, byte_range=None):
        limit = _limit()
        if byte_range is not None or limit <= 0 or key.rsplit("/", 1)[-1] in _METADATA:
            return await self._store.get(key, prototype, byte_range)
        data = _CHUNKS.get((self.namespace, key))
        if data is not None:
            return prototype.buffer.from_bytes(data)
        value = await self._store.get(key, prototype)
        if value is not None:
            _CHUNKS.put((self.namespace, key), value.to_bytes(), limit)
        return value


if hasattr(os, "register_at_fork"):  # a lock held by a thread of the parent stays held
    os.register_at_fork(after_in_child=_CHUNKS.reset)
