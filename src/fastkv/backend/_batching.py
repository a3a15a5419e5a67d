"""What every backend shares: the batch buffer, the lock, commit policy and the interval committer.

A concrete backend supplies `_commit_buffer(buffer)` (move the buffer into durable storage; raise
and leave storage unchanged on failure) and the committed-state readers `_stored_get` and
`_stored_range`. Everything about batching lives here, once.
"""
from __future__ import annotations

import threading
import time

from fastkv._native import load
from fastkv.backend.base import BUCKETS, DEFAULT_BATCH_INTERVAL, DEFAULT_BATCH_LIMIT

_batchbuf = load("batchbuf")


class BatchingBackend:
    def __init__(self, batch_limit: int = DEFAULT_BATCH_LIMIT, batch_interval: float = DEFAULT_BATCH_INTERVAL):
        if batch_limit < 1:
            raise ValueError("batch_limit must be >= 1")
        self.batch_limit = batch_limit
        self.batch_interval = batch_interval
        self._lock = threading.RLock()
        self._buffer = _batchbuf.WriteBuffer(len(BUCKETS))
        self._missing = self._buffer.missing()
        self._pre_commit_hooks: list = []
        self._post_commit_hooks: list = []
        self._tx = _Tx(self)
        self.commits = 0  # storage transactions committed (each one sync to disk)
        self.commit_seconds_total = 0.0
        self.commit_observer = None  # callable(seconds): exported as etcd_disk_backend_commit_duration_seconds
        self._closed = False
        self._last_commit = time.monotonic()
        self._stop = threading.Event()
        self._committer = None
        if batch_interval and batch_interval > 0:
            self._committer = threading.Thread(target=self._run_interval_commits, name="fastkv-backend-commit", daemon=True)
            self._committer.start()

    # --- the interface ---------------------------------------------------------------------
    def batch_tx(self):
        return self._tx

    def read_tx(self):
        return self._tx

    def add_pre_commit_hook(self, fn) -> None:
        """fn(batch_tx) runs under the lock just before each commit (e.g. to persist an index)."""
        self._pre_commit_hooks.append(fn)

    def add_post_commit_hook(self, fn) -> None:
        """fn() runs under the lock just after each successful commit."""
        self._post_commit_hooks.append(fn)

    def discard_buffer(self) -> None:
        """Forget every buffered write (after a failed commit whose writes were not acknowledged)."""
        with self._lock:
            self._buffer.clear()

    def force_commit(self) -> None:
        with self._lock:
            self._commit_locked(force=True)

    # --- commit policy -----------------------------------------------------------------------
    def _after_write(self) -> None:
        if len(self._buffer) >= self.batch_limit:
            self._commit_locked(force=False)

    def _commit_locked(self, force: bool) -> None:
        if self._closed:
            raise RuntimeError("backend is closed")
        if len(self._buffer) == 0 and not force:
            return
        for hook in self._pre_commit_hooks:
            hook(self._tx)
        if len(self._buffer) == 0:
            return
        t0 = time.perf_counter()
        self._commit_buffer(self._buffer)  # raises, leaving the buffer intact, on failure
        dt = time.perf_counter() - t0
        self._buffer.clear()
        self.commits += 1
        self.commit_seconds_total += dt
        if self.commit_observer is not None:
            self.commit_observer(dt)
        self._last_commit = time.monotonic()
        for hook in self._post_commit_hooks:
            hook()

    def _run_interval_commits(self) -> None:
        while not self._stop.wait(self.batch_interval):
            with self._lock:
                if self._closed:
                    return
                if len(self._buffer) and time.monotonic() - self._last_commit >= self.batch_interval:
                    try:
                        self._commit_locked(force=False)
                    except Exception:  # noqa: BLE001 - kept buffered; the next forced commit raises it
                        pass

    def _stop_committer(self) -> None:
        self._stop.set()
        if self._committer is not None and self._committer is not threading.current_thread():
            self._committer.join()

    # --- reads that merge the buffer over committed state --------------------------------------
    def _get(self, bucket: int, key: bytes):
        v = self._buffer.get(bucket, key, self._missing)
        if v is self._missing:
            return self._stored_get(bucket, key)
        return v  # None when the buffer holds a delete

    def _range(self, bucket: int, start: bytes, end, limit: int) -> list:
        if end is None:
            v = self._get(bucket, start)
            return [] if v is None else [(start, v)]
        buffered = self._buffer.range(bucket, start, end)
        if not buffered:
            return self._stored_range(bucket, start, end, limit)
        # Merge: buffered entries override stored ones; the limit applies after the merge, so
        # over-fetch stored rows by the number of buffered deletes that could hide them.
        stored = self._stored_range(bucket, start, end, limit + len(buffered) if limit else 0)
        merged = dict(stored)
        for k, v in buffered:
            merged[k] = v
        out = sorted((k, v) for k, v in merged.items() if v is not None)
        return out[:limit] if limit else out


class _Tx:
    """The batch tx (and read tx) of a BatchingBackend: one per backend, guarded by its lock.

    `with tx:` blocks nest (the lock is re-entrant). The batch-limit commit is considered only when
    the OUTERMOST block exits: everything a caller does inside one block (an applied raft entry with
    its consistent index, a lease revoke with its key deletions) lands in the same commit, never
    split across two. `depth` is only touched while holding the lock.

    A caller that holds the backend lock itself instead of opening a block (the MVCC lean put) keeps
    the same rule by calling `_after_write()` only when `depth == 0`: then no block is open around
    it and its write is complete."""

    __slots__ = ("_b", "_buf", "depth")

    def __init__(self, backend: BatchingBackend):
        self._b = backend
        self._buf = backend._buffer
        self.depth = 0  # open `with tx:` blocks (read by the lean put path; see above)

    def __enter__(self):
        self._b._lock.acquire()
        self.depth += 1
        return self

    def __exit__(self, *exc):
        try:
            self.depth -= 1
            if exc[0] is None and self.depth == 0:
                self._b._after_write()
        finally:
            self._b._lock.release()

    def unsafe_put(self, bucket: int, key: bytes, value: bytes) -> None:
        self._buf.put(bucket, key, value)

    def unsafe_delete(self, bucket: int, key: bytes) -> None:
        self._buf.delete(bucket, key)

    def unsafe_get(self, bucket: int, key: bytes):
        return self._b._get(bucket, key)

    def unsafe_range(self, bucket: int, start: bytes, end=None, limit: int = 0) -> list:
        return self._b._range(bucket, start, end, limit)

    def pending(self) -> int:
        return len(self._buf)

    def commit(self) -> None:
        self._b._commit_locked(force=True)
