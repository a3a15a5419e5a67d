# cython: language_level=3
"""The MVCC put path (compiled; twin, semantics and contract: revwrite_py.py).

With the compiled TreeIndex and WriteBuffer a put stays in C from the index insert to the buffered
record: the index's C entry point, mvcccodec's C encoders, the buffer's C entry point. Given other
implementations (the pure-Python twins) it calls their Python APIs, so any combination works.
"""
from libc.stdint cimport int64_t

from fastkv._native.batchbuf cimport WriteBuffer
from fastkv._native.mvcccodec cimport encode_record, rev_key
from fastkv._native.revindex cimport TreeIndex

PUT_OVERHEAD = 64
cdef int64_t _PUT_OVERHEAD = PUT_OVERHEAD


cdef class RevisionWriter:
    def __init__(self, index, buffer, int bucket, *, lock, tx, batch_limit, batch_full, empty_key_error,
                 no_space_error, quota_bytes=None):
        self.buffer = buffer
        self.bucket = bucket
        self._c_buffer = buffer if type(buffer) is WriteBuffer else None
        self.set_index(index)
        self.revision = 1
        self.size_at_commit = 0
        self.bytes_since_commit = 0
        self.quota_bytes = quota_bytes
        self.on_put = None
        self._lock_acquire = lock.acquire
        self._lock_release = lock.release
        self._tx = tx
        self._batch_limit = batch_limit if batch_limit is not None else 0
        self._batch_full = batch_full
        self._empty_key_error = empty_key_error
        self._no_space_error = no_space_error

    def set_index(self, index):
        self.index = index
        self._c_index = index if type(index) is TreeIndex else None

    @property
    def quota_bytes(self):
        return self._quota if self._has_quota else None

    @quota_bytes.setter
    def quota_bytes(self, value):
        self._has_quota = value is not None
        self._quota = value if value is not None else 0

    cpdef tuple put(self, bytes key, bytes value, int64_t main, int64_t sub, int64_t lease):
        cdef int64_t created, version
        if self._c_index is not None:
            self._c_index.put_versioned_c(key, main, sub, &created, &version)
        else:
            created, version = self.index.put_versioned(key, main, sub)
        cdef bytes record = encode_record(key, value, created, main, version, lease)
        if self._c_buffer is not None:
            self._c_buffer.store(self.bucket, rev_key(main, sub, False), record)
        else:
            self.buffer.put(self.bucket, rev_key(main, sub, False), record)
        return created, version

    def put_value(self, bytes key not None, bytes value not None, int64_t lease=0):
        return self.put_value_c(key, value, lease)

    cdef int64_t put_value_c(self, bytes key, bytes value, int64_t lease) except -1:
        if len(key) == 0:
            raise self._empty_key_error()
        cdef int64_t created, version, rev
        cdef int64_t cost = len(key) + len(value) + _PUT_OVERHEAD
        self._lock_acquire()
        try:
            if self._has_quota and self.size_at_commit + self.bytes_since_commit + cost > self._quota:
                raise self._no_space_error()
            rev = self.revision + 1
            if self._c_index is not None and self._c_buffer is not None:
                self._c_index.put_versioned_c(key, rev, 0, &created, &version)
                self._c_buffer.store(self.bucket, rev_key(rev, 0, False),
                                     encode_record(key, value, created, rev, version, lease))
            else:
                created, version = self.put(key, value, rev, 0, lease)
            self.revision = rev
            self.bytes_since_commit += cost
            if self.on_put is not None:
                self.on_put(key, value, created, rev, version, lease)
            # the batch-limit commit as the tx's outermost exit considers it (see the twin)
            if self._batch_limit and len(self.buffer) >= self._batch_limit and self._tx.depth == 0:
                self._batch_full()
        finally:
            self._lock_release()
        return rev


cdef class PutResult:
    """The result of a put: its revision and, when asked for, the key's previous KeyValue (else None).

    A compiled class rather than a dataclass because one is made per put on the hottest path; it
    keeps the dataclass's constructor, attributes, equality and repr (see the twin)."""

    def __init__(self, int64_t revision, prev_kv=None):
        self.revision = revision
        self.prev_kv = prev_kv

    def __eq__(self, other):
        if not isinstance(other, PutResult):
            return NotImplemented
        return self.revision == (<PutResult>other).revision and self.prev_kv == (<PutResult>other).prev_kv

    __hash__ = None  # mutable, like the dataclass it replaces

    def __repr__(self):
        return f"PutResult(revision={self.revision}, prev_kv={self.prev_kv!r})"

    def __reduce__(self):
        return (PutResult, (self.revision, self.prev_kv))


cdef class PutEntry:
    """A put entry point with a lean path (what the embedded DB's `put` is bound to).

    put(key, value, *, lease=0, prev_kv=False, ignore_value=False, ignore_lease=False): when `lean`
    is set and no option is asked for, returns PutResult(put_value(key, value, lease)); otherwise
    returns slow(key, value, lease=..., prev_kv=..., ignore_value=..., ignore_lease=...). The owner
    keeps `lean` up to date (for the DB: batched mode, or inside a batch block)."""

    def __init__(self, put_value, slow):
        self._put_value = put_value
        self._slow = slow
        self.lean = False
        # a RevisionWriter's own put_value is called in C, skipping its Python-level call
        owner = getattr(put_value, "__self__", None)
        self._writer = owner if type(owner) is RevisionWriter and put_value == owner.put_value else None

    def put(self, key, value, *, lease=0, prev_kv=False, ignore_value=False, ignore_lease=False):
        cdef PutResult result
        if self.lean and not (prev_kv or ignore_value or ignore_lease):
            result = PutResult.__new__(PutResult)
            if self._writer is not None and type(key) is bytes and type(value) is bytes:
                result.revision = self._writer.put_value_c(key, value, lease)
            else:
                result.revision = self._put_value(key, value, lease)
            result.prev_kv = None
            return result
        return self._slow(key, value, lease=lease, prev_kv=prev_kv, ignore_value=ignore_value,
                          ignore_lease=ignore_lease)
