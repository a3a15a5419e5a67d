"""In-memory backend: the same batching and interface as LMDB, with sorted dicts for storage.

It exists to prove the Backend interface is real (the whole backend test suite runs over it) and
for tests and benchmarks that want no disk. It is not durable: closing it loses everything.
"""
from __future__ import annotations

from sortedcontainers import SortedDict

from fastkv.backend._batching import BatchingBackend
from fastkv.backend.base import BUCKETS, DEFAULT_BATCH_INTERVAL, DEFAULT_BATCH_LIMIT


class MemoryBackend(BatchingBackend):
    def __init__(self, *, batch_limit: int = DEFAULT_BATCH_LIMIT, batch_interval: float = DEFAULT_BATCH_INTERVAL,
                 max_size: int | None = None):
        self._stores = [SortedDict() for _ in BUCKETS]
        self._bytes = 0
        self.max_size = max_size
        super().__init__(batch_limit=batch_limit, batch_interval=batch_interval)

    def _stored_get(self, bucket: int, key: bytes):
        return self._stores[bucket].get(key)

    def _stored_range(self, bucket: int, start: bytes, end, limit: int) -> list:
        store = self._stores[bucket]
        keys = store.irange(start, None if end == b"" else end, inclusive=(True, False))
        out = []
        for k in keys:
            out.append((k, store[k]))
            if limit and len(out) >= limit:
                break
        return out

    def _commit_buffers(self, buffers) -> None:
        # never more than one: without detached commits no frozen batch exists
        for buffer in buffers:
            self._commit_buffer(buffer)

    def _commit_buffer(self, buffer) -> None:
        # Validate first so a failed commit changes nothing, like a rolled-back LMDB txn.
        delta = 0
        for bucket in range(len(BUCKETS)):
            store = self._stores[bucket]
            for k, v in buffer.bucket_items(bucket):
                old = store.get(k)
                delta -= 0 if old is None else len(k) + len(old)
                delta += 0 if v is None else len(k) + len(v)
        if self.max_size is not None and self._bytes + delta > self.max_size:
            from fastkv.errors import ErrNoSpace

            raise ErrNoSpace()
        for bucket in range(len(BUCKETS)):
            store = self._stores[bucket]
            for k, v in buffer.bucket_items(bucket):
                if v is None:
                    store.pop(k, None)
                else:
                    store[k] = v
        self._bytes += delta

    def size(self) -> int:
        return self._bytes

    def size_in_use(self) -> int:
        return self._bytes

    def defrag(self) -> None:
        self.force_commit()

    def clone(self, **kw) -> "MemoryBackend":
        """An independent copy of everything committed after committing the buffer: the memory
        backend's counterpart of a snapshot file (the simulator ships it to lagging members)."""
        self.force_commit()
        with self._lock:
            copy = MemoryBackend(max_size=self.max_size, **kw)
            copy._stores = [SortedDict(s) for s in self._stores]
            copy._bytes = self._bytes
        return copy

    def write_snapshot(self, fileobj) -> int:
        raise NotImplementedError("the memory backend has no on-disk form to snapshot")

    def close(self) -> None:
        self._stop_committer()
        with self._lock:
            if not self._closed:
                self._commit_locked(force=True)
                self._closed = True
