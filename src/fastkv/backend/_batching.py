"""What every backend shares: the batch buffer, the lock, commit policy and the interval committer.

A concrete backend supplies `_commit_buffers(buffers)` (move the buffers, oldest first, into durable
storage in one transaction; raise and leave storage unchanged on failure) and the committed-state
readers `_stored_get` and `_stored_range`. Everything about batching lives here, once.

Commits off the lock (etcd's read buffer idea). A commit syncs to disk and takes milliseconds;
whoever needs the lock meanwhile (the event loop, for every read and every applied entry) would
stall behind it. So the committer thread freezes the buffer as `_committing` under the lock, opens
the storage write transaction (also under the lock, so commits land in the order their batches were
frozen), releases the lock, writes and syncs, then takes the lock again only to move the readers
to the new committed state. Meanwhile new writes go to the (same, emptied) buffer, and readers see
buffer over frozen batch over committed state. A synchronous commit (force_commit, a tx's commit,
defrag, close) that runs while a frozen batch is in flight writes the frozen batch again before the
buffer in its own transaction, which storage starts only after the in-flight one ended: rewriting
is harmless if that one committed, and covers it if it failed. A frozen batch whose commit failed
stays frozen under newer writes until a later commit takes it. Backends that cannot commit off
the lock (their readers would see a half-applied commit) leave `detached_commits` False.
"""
from __future__ import annotations

import threading
import time

from fastkv import failpoints
from fastkv._native import load
from fastkv.backend.base import BUCKETS, DEFAULT_BATCH_INTERVAL, DEFAULT_BATCH_LIMIT

_batchbuf = load("batchbuf")


# A full buffer waits for the committer thread until it is this many batch limits long; past that
# the writer commits itself (backpressure: a committer that cannot keep up must not let the
# buffer, and the memory behind it, grow without bound).
BACKPRESSURE_BATCHES = 4


class BatchingBackend:
    detached_commits = False  # see the module docstring

    def __init__(self, batch_limit: int = DEFAULT_BATCH_LIMIT, batch_interval: float = DEFAULT_BATCH_INTERVAL):
        if batch_limit < 1:
            raise ValueError("batch_limit must be >= 1")
        self.batch_limit = batch_limit
        self.batch_interval = batch_interval
        self._lock = threading.RLock()
        self._buffer = _batchbuf.WriteBuffer(len(BUCKETS))
        self._committing = None  # the frozen batch a detached commit is writing (or left after failing)
        self._commit_mutex = threading.Lock()  # one detached commit at a time
        self._kick = threading.Event()  # the buffer is full: the committer should commit now
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

    @property
    def lock(self):
        """The backend's (re-entrant) lock; every unsafe_* call and buffer access holds it."""
        return self._lock

    @property
    def write_buffer(self):
        """The open batch's WriteBuffer (the same object for the backend's life; writes to it need
        the lock). The MVCC writer stores into it directly."""
        return self._buffer

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
            self._committing = None

    def force_commit(self) -> None:
        with self._lock:
            self._commit_locked(force=True)

    # --- commit policy -----------------------------------------------------------------------
    def batch_full(self) -> None:
        """The buffer reached batch_limit (the caller holds the lock and no tx block is open): have
        it committed, by the committer thread off the lock when there is one and it keeps up."""
        if (self._committer is not None and self.detached_commits
                and len(self._buffer) < BACKPRESSURE_BATCHES * self.batch_limit):
            self._kick.set()
        else:
            self._commit_locked(force=False)

    def _after_write(self) -> None:
        if len(self._buffer) >= self.batch_limit:
            self.batch_full()

    def _commit_locked(self, force: bool) -> None:
        """Commit synchronously, holding the lock: the frozen batch (if any), then the buffer."""
        if self._closed:
            raise RuntimeError("backend is closed")
        if len(self._buffer) == 0 and self._committing is None and not force:
            return
        for hook in self._pre_commit_hooks:
            hook(self._tx)
        if len(self._buffer) == 0 and self._committing is None:
            return
        batches = [b for b in (self._committing, self._buffer) if b is not None and len(b)]
        t0 = time.perf_counter()
        failpoints.hit("backend.commit.before")
        self._commit_buffers(batches)  # raises, leaving everything intact, on failure
        failpoints.hit("backend.commit.after")
        self._committing = None
        self._buffer.clear()
        self._committed(time.perf_counter() - t0)

    def _committed(self, seconds: float) -> None:
        self.commits += 1
        self.commit_seconds_total += seconds
        if self.commit_observer is not None:
            self.commit_observer(seconds)
        self._last_commit = time.monotonic()
        for hook in self._post_commit_hooks:
            hook()

    def _commit_detached(self) -> None:
        """(committer thread, lock not held) Commit the buffer with the lock released during the
        write and sync; see the module docstring."""
        with self._commit_mutex:
            with self._lock:
                if self._closed or not len(self._buffer):
                    return
                if self._committing is not None:
                    # an earlier detached commit failed (map full, disk full): commit both under
                    # the lock, where the backend can grow its map; errors stay for the next try
                    self._commit_locked(force=False)
                    return
                for hook in self._pre_commit_hooks:
                    hook(self._tx)
                frozen = self._committing = self._buffer.take()
                txn = self._begin_commit()
            t0 = time.perf_counter()
            try:
                failpoints.hit("backend.commit.before")
                self._finish_commit(txn, frozen)
                failpoints.hit("backend.commit.after")
            except Exception:  # noqa: BLE001 - stays frozen; the next commit takes it
                return
            dt = time.perf_counter() - t0
            with self._lock:
                if self._committing is not frozen:
                    return  # a synchronous commit wrote it again meanwhile and did the rest
                self._committing = None
                self._readers_moved()
                self._committed(dt)

    def _run_interval_commits(self) -> None:
        while True:
            kicked = self._kick.wait(self.batch_interval)
            if self._stop.is_set():
                return
            self._kick.clear()
            if not kicked and time.monotonic() - self._last_commit < self.batch_interval:
                continue
            if self.detached_commits:
                self._commit_detached()
                continue
            with self._lock:
                if self._closed:
                    return
                try:
                    self._commit_locked(force=False)
                except Exception:  # noqa: BLE001 - kept buffered; the next forced commit raises it
                    pass

    def _stop_committer(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._committer is not None and self._committer is not threading.current_thread():
            self._committer.join()

    # --- reads that merge the buffer over committed state --------------------------------------
    def _get(self, bucket: int, key: bytes):
        v = self._buffer.get(bucket, key, self._missing)
        if v is self._missing:
            if self._committing is not None:
                v = self._committing.get(bucket, key, self._missing)
                if v is not self._missing:
                    return v
            return self._stored_get(bucket, key)
        return v  # None when the buffer holds a delete

    def _range(self, bucket: int, start: bytes, end, limit: int) -> list:
        if end is None:
            v = self._get(bucket, start)
            return [] if v is None else [(start, v)]
        buffered = self._buffer.range(bucket, start, end)
        if self._committing is not None:
            frozen = self._committing.range(bucket, start, end)
            if frozen:
                newer = dict(frozen)
                newer.update(buffered)
                buffered = sorted(newer.items())
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
