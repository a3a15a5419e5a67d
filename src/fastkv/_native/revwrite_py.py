"""The MVCC put path: index insert + revision key + stored record + batch buffer, as one call. Twin.

`revwrite.pyx` has the same API. A put at revision (main, sub) does three things that always go
together: the revision index learns the key's new revision (which gives the key's create revision
and version), the record {key, value, create, mod, version, lease} is encoded under the revision
key, and that pair goes into the batch write buffer's key bucket: `put(...)`. The compiled module
does all three in C when given the compiled TreeIndex and WriteBuffer (otherwise through their
Python APIs, as here), which saves the Python calls and tuples in between.

`put_value(key, value, lease)` is the whole common put of the MVCC store (no prev_kv, no ignore_*,
no lessor): take the backend lock, check the space quota, put at the next main revision, count its
bytes, report it to `on_put`, and make the batch-limit commit when no `with tx:` block is open
around it; returns the new revision. For that the writer owns the store's write state:
`revision` (the store's current revision), `size_at_commit` + `bytes_since_commit` (the quota
estimate) and `quota_bytes` (None = no quota). KVStore reads and writes them through properties.

Contracts:
* The stored bytes are exactly mvcccodec.rev_key / encode_record's: nothing changes on disk.
* `put` requires the caller to hold the backend lock (like any unsafe_* write); `put_value` takes it.
* put_value's commit rule equals the batch tx's: when the buffer holds `batch_limit` ops it reports
  `batch_full()` (the backend's; it decides how the commit happens), only when `tx.depth == 0`,
  i.e. when no caller holds a `with tx:` block open around this put; such a block reports at its
  own outermost exit. batch_limit None or 0: never reported.
* A refused put (empty key, quota, index error) changes nothing and raises.
* `on_put(key, value, create_revision, mod_revision, version, lease)`, when set, runs under the lock
  right after the put is buffered (the store turns it into a watch event).
"""
from __future__ import annotations

from fastkv._native.mvcccodec_py import encode_record, rev_key

PUT_OVERHEAD = 64  # bytes of record header + revision key + B+tree slot, for the quota estimate


class RevisionWriter:
    __slots__ = ("index", "buffer", "bucket", "revision", "size_at_commit", "bytes_since_commit", "quota_bytes",
                 "on_put", "_lock", "_tx", "_batch_limit", "_batch_full", "_empty_key_error",
                 "_no_space_error")

    def __init__(self, index, buffer, bucket: int, *, lock, tx, batch_limit, batch_full, empty_key_error, no_space_error,
                 quota_bytes=None):
        self.index = index
        self.buffer = buffer
        self.bucket = bucket
        self.revision = 1
        self.size_at_commit = 0
        self.bytes_since_commit = 0
        self.quota_bytes = quota_bytes
        self.on_put = None
        self._lock = lock
        self._tx = tx
        self._batch_limit = batch_limit or 0
        self._batch_full = batch_full
        self._empty_key_error = empty_key_error
        self._no_space_error = no_space_error

    def set_index(self, index) -> None:
        """Write into this index from now on (the store rebuilds its index on reload)."""
        self.index = index

    def put(self, key: bytes, value: bytes, main: int, sub: int, lease: int) -> tuple[int, int]:
        """Record a put of `key` at revision (main, sub); returns (create_revision, version).

        Raises, leaving index and buffer untouched, if the index refuses the revision."""
        created, version = self.index.put_versioned(key, main, sub)
        self.buffer.put(self.bucket, rev_key(main, sub), encode_record(key, value, created, main, version, lease))
        return created, version

    def put_value(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """The store's common put (see the module docstring); returns its revision."""
        if not key:
            raise self._empty_key_error()
        cost = len(key) + len(value) + PUT_OVERHEAD
        with self._lock:
            quota = self.quota_bytes
            if quota is not None and self.size_at_commit + self.bytes_since_commit + cost > quota:
                raise self._no_space_error()
            rev = self.revision + 1
            created, version = self.put(key, value, rev, 0, lease)
            self.revision = rev
            self.bytes_since_commit += cost
            if self.on_put is not None:
                self.on_put(key, value, created, rev, version, lease)
            if self._batch_limit and len(self.buffer) >= self._batch_limit and self._tx.depth == 0:
                self._batch_full()
        return rev


class PutResult:
    """The result of a put: its revision and, when asked for, the key's previous KeyValue (else None).

    Not a dataclass because one is made per put on the hottest path (the compiled one costs a
    fraction of a dataclass's __init__); same constructor, attributes, equality and repr."""

    __slots__ = ("revision", "prev_kv")
    __hash__ = None  # mutable

    def __init__(self, revision: int, prev_kv=None):
        self.revision = revision
        self.prev_kv = prev_kv

    def __eq__(self, other):
        if not isinstance(other, PutResult):
            return NotImplemented
        return self.revision == other.revision and self.prev_kv == other.prev_kv

    def __repr__(self):
        return f"PutResult(revision={self.revision}, prev_kv={self.prev_kv!r})"

    def __reduce__(self):
        return (PutResult, (self.revision, self.prev_kv))


class PutEntry:
    """A put entry point with a lean path (what the embedded DB's `put` is bound to).

    put(key, value, *, lease=0, prev_kv=False, ignore_value=False, ignore_lease=False): when `lean`
    is set and no option is asked for, returns PutResult(put_value(key, value, lease)); otherwise
    returns slow(key, value, lease=..., prev_kv=..., ignore_value=..., ignore_lease=...). The owner
    keeps `lean` up to date (for the DB: batched mode, or inside a batch block)."""

    __slots__ = ("_put_value", "_slow", "lean")

    def __init__(self, put_value, slow):
        self._put_value = put_value
        self._slow = slow
        self.lean = False

    def put(self, key, value, *, lease=0, prev_kv=False, ignore_value=False, ignore_lease=False):
        if self.lean and not (prev_kv or ignore_value or ignore_lease):
            return PutResult(self._put_value(key, value, lease), None)
        return self._slow(key, value, lease=lease, prev_kv=prev_kv, ignore_value=ignore_value,
                          ignore_lease=ignore_lease)
