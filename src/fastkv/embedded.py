"""Embedded fastkv: the storage engine as a library, no server.

    import fastkv
    db = fastkv.open("/path/to/dir")            # durable mode (default)
    db.put(b"k", b"v"); db.get(b"k").value      # -> b"v"
    for ev in db.watch(b"k", prefix=True): ...  # committed changes, in revision order

Durability contract
-------------------
* durable (default, ``sync=True``): every write call (put / delete / txn / compact) commits one
  LMDB transaction, synced to disk, *before it returns*. If it returned, the write survives SIGKILL
  and power loss. If the commit fails (disk full, map full beyond ``max_size``), the call raises
  etcd's "database space exceeded" and the store is exactly as before the call.
* batched (``sync=False``): writes are buffered and many writes share one commit, made when
  ``batch_limit`` writes are pending, ``batch_interval`` seconds after the previous commit, on
  ``flush()``, or on ``close()``. A crash loses at most the writes made since the last commit —
  never part of one: each txn, and each put/delete, is in the same commit or absent. Reads always see
  every write made so far; ``db.flush()`` returns once everything written before it is durable.
  ``with db.batch(): ...`` turns on batching for a block and flushes at its end.

Watchers see only committed (durable) changes: in batched mode events arrive when their commit
lands. Events come in revision order, each revision's changes together.
"""
from __future__ import annotations

import contextlib
import queue
import threading

from fastkv._native import load
from fastkv.backend import open_backend
from fastkv.backend.base import in_range
from fastkv.backend.base import DEFAULT_QUOTA_BYTES
from fastkv.errors import EtcdError
from fastkv.mvcc import (
    Compare, CompareResult, CompareTarget, DeleteOp, KVStore, PutOp, RangeOp, TxnOp,
)
from fastkv.mvcc.ops import PutResult, index_end

__all__ = ["DB", "Watch", "Compare", "CompareResult", "CompareTarget", "DeleteOp", "PutOp", "RangeOp", "TxnOp"]


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with `prefix` (etcd's GetPrefixRangeEnd)."""
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\x00"  # all keys


class DB:
    def __init__(self, path: str | None, *, sync: bool = True, backend: str = "lmdb", batch_limit: int = 10000,
                 batch_interval: float = 0.1, quota_bytes: int = DEFAULT_QUOTA_BYTES, max_size: int | None = None,
                 max_txn_ops: int = 128):
        opts = {"batch_limit": batch_limit, "batch_interval": batch_interval}
        if backend == "lmdb":
            if max_size is None:
                max_size = (quota_bytes or DEFAULT_QUOTA_BYTES * 4) + 256 * 1024**2
            opts["max_size"] = max_size
        self._backend = open_backend(backend, path, **opts)
        self._kv = KVStore(self._backend, quota_bytes=quota_bytes, max_txn_ops=max_txn_ops)
        self._lock = self._backend._lock  # one lock for the engine: writes, commits, watcher hand-off
        self._sync = sync
        self._batch_depth = 0
        self._watches: list = []
        self._kv.collect_events = False  # turned on while watchers exist
        self._backend.add_post_commit_hook(self._publish)
        self.path = path
        # `db.put` is bound to a compiled entry point: when writes are buffered (batched mode or a
        # batch block) and no put option is asked for, it goes straight to the store's put_value and
        # builds the PutResult in C (the Python frame of DB.put and a Python-made result cost about
        # a quarter of the whole buffered put); every other call goes to DB._put below, unchanged.
        self._put_entry = load("revwrite").PutEntry(self._kv.put_value, self._put)
        self._put_entry.lean = self._buffered()
        self.put = self._put_entry.put

    # --- reads ----------------------------------------------------------------------------------
    @property
    def revision(self) -> int:
        return self._kv.current_revision

    @property
    def compact_revision(self) -> int:
        return self._kv.compact_revision

    def get(self, key: bytes, *, revision: int = 0):
        """The KeyValue of `key` (at `revision`, 0 = latest) or None."""
        kvs = self._kv.range(RangeOp(key, revision=revision)).kvs
        return kvs[0] if kvs else None

    def range(self, key: bytes, range_end: bytes = b"", *, prefix: bool = False, **options):
        """etcd Range: options are RangeOp fields (limit, revision, sort_order, keys_only, ...)."""
        if prefix:
            range_end = prefix_end(key)
        return self._kv.range(RangeOp(key, range_end, **options))

    # --- writes ---------------------------------------------------------------------------------
    def put(self, key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False, ignore_value: bool = False,
            ignore_lease: bool = False):
        """etcd Put -> PutResult(revision, prev_kv). (Each DB binds `put` to its compiled entry point,
        which takes the buffered lean case itself and hands every other call to `_put`.)"""
        return self._put(key, value, lease=lease, prev_kv=prev_kv, ignore_value=ignore_value,
                         ignore_lease=ignore_lease)

    def _buffered(self) -> bool:
        """Writes share commits now (batched mode, or inside a batch block): a put returns unsynced."""
        return not self._sync or self._batch_depth > 0

    def _put(self, key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False, ignore_value: bool = False,
             ignore_lease: bool = False):
        if not (prev_kv or ignore_value or ignore_lease) and self._buffered():
            # buffered write on the lean path: nothing to commit here
            return PutResult(self._kv.put_value(key, value, lease), None)
        return self._write(self._kv.put, PutOp(key, value, lease, prev_kv, ignore_value, ignore_lease))

    def delete(self, key: bytes, range_end: bytes = b"", *, prefix: bool = False, prev_kv: bool = False):
        if prefix:
            range_end = prefix_end(key)
        return self._write(self._kv.delete_range, DeleteOp(key, range_end, prev_kv))

    def txn(self, compare=(), success=(), failure=()):
        return self._write(self._kv.txn, TxnOp(list(compare), list(success), list(failure)))

    def compact(self, revision: int) -> int:
        with self._lock:
            return self._kv.compact(revision)  # compaction always commits synchronously

    def _write(self, fn, op):
        with self._lock:
            result = fn(op)
            if self._sync and self._batch_depth == 0:
                try:
                    self._backend.force_commit()
                except EtcdError:
                    self._kv.reload()  # the failed write was never acknowledged: forget it
                    raise
            return result

    # --- batching -------------------------------------------------------------------------------
    def flush(self) -> None:
        """Commit everything written so far; returns when it is durable."""
        self._backend.force_commit()

    @contextlib.contextmanager
    def batch(self):
        """Within the block writes share commits; the block's end flushes (durable on exit)."""
        with self._lock:
            self._batch_depth += 1
            self._put_entry.lean = self._buffered()
        try:
            yield self
        finally:
            with self._lock:
                self._batch_depth -= 1
                self._put_entry.lean = self._buffered()
                if self._batch_depth == 0:
                    self._backend.force_commit()

    # --- watch ----------------------------------------------------------------------------------
    def watch(self, key: bytes, range_end: bytes = b"", *, prefix: bool = False, start_revision: int = 0,
              prev_kv: bool = False) -> "Watch":
        """Iterator over committed events on a key or range, from `start_revision` (history replay;
        0 = only future changes). Raises ErrCompacted if the start revision was compacted."""
        if prefix:
            range_end = prefix_end(key)
        w = Watch(self, key, range_end, prev_kv)
        with self._lock:
            self._backend.force_commit()  # watchers see committed changes only: commit what is buffered
            if start_revision > 0:
                for ev in self._kv.history(start_revision, None, key, range_end):
                    w._offer(ev)
            self._watches.append(w)
            self._kv.collect_events = True
        return w

    def _publish(self) -> None:
        events = self._kv.pending_events
        if not events:
            return
        self._kv.pending_events = []
        for w in self._watches:
            for ev in events:
                w._offer(ev)

    def _unwatch(self, w: "Watch") -> None:
        with self._lock:
            if w in self._watches:
                self._watches.remove(w)
            self._kv.collect_events = bool(self._watches)

    # --- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            for w in list(self._watches):
                w._queue.put(None)
            self._watches.clear()
        self._backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def kv(self) -> KVStore:
        """The underlying MVCC store (for advanced use and the server)."""
        return self._kv

    @property
    def backend(self):
        return self._backend


class Watch:
    """Iterate to receive Events; `close()` ends the iteration. `next(w, timeout)` via `get`."""

    def __init__(self, db: DB, key: bytes, range_end: bytes, prev_kv: bool):
        self._db = db
        self._key = key
        self._end = index_end(range_end)
        self._prev_kv = prev_kv
        self._queue: queue.Queue = queue.Queue()
        self._closed = threading.Event()

    def _offer(self, ev) -> None:
        k = ev.kv.key
        if in_range(k, self._key, self._end):
            if self._prev_kv and ev.prev_kv is None and ev.kv.mod_revision > 1:
                ev = type(ev)(ev.type, ev.kv, self._db.get(k, revision=ev.kv.mod_revision - 1)
                              if ev.kv.mod_revision - 1 >= self._db.compact_revision else None)
            self._queue.put(ev)

    def get(self, timeout: float | None = None):
        """Next event, or None after `timeout` seconds / once closed."""
        if self._closed.is_set() and self._queue.empty():
            return None
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def __iter__(self):
        return self

    def __next__(self):
        ev = self._queue.get()
        if ev is None:
            raise StopIteration
        return ev

    def close(self) -> None:
        self._closed.set()
        self._db._unwatch(self)
        self._queue.put(None)
