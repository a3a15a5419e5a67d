# cython: language_level=3
"""Batch write buffer (compiled; twin and contract: batchbuf_py.py).

Per bucket a dict holds the newest buffered value of each key (None = buffered delete). The dict
keeps insertion order, and MVCC writes revision keys in increasing order, so the buffer notes, as
keys arrive, whether a bucket's dict order is still key order (one memcmp per new key). A bucket that
is in order and holds no delete goes to LMDB as it is: its dict items straight into one putmulti,
with MDB_APPEND when it starts after what is stored; no copy, no sort, no order check at commit.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Size
from libc.string cimport memcmp, memcpy, memset

DELETED = None
cdef object _MISSING = object()


cdef inline int _cmp(bytes a, bytes b):
    cdef Py_ssize_t la = PyBytes_GET_SIZE(a), lb = PyBytes_GET_SIZE(b)
    cdef int c = memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), la if la < lb else lb)
    if c != 0:
        return c
    return (la > lb) - (la < lb)


cdef class WriteBuffer:
    def __init__(self, int n_buckets):
        if n_buckets < 1 or n_buckets > MAX_BUCKETS:
            raise ValueError(f"n_buckets must be in 1..{MAX_BUCKETS}")
        self._n = n_buckets
        self._buckets = [dict() for _ in range(n_buckets)]
        self._last_new = [None] * n_buckets
        self._ops = 0
        memset(self._unordered, 0, MAX_BUCKETS)
        memset(self._has_deletes, 0, MAX_BUCKETS)

    def __len__(self):
        return self._ops

    cdef int store(self, int bucket, bytes key, object value) except -1:
        """The one write path: value None = delete. Keeps the per-bucket order note up to date."""
        if bucket < 0 or bucket >= self._n:
            raise IndexError("bucket out of range")
        cdef dict d = <dict>self._buckets[bucket]
        cdef Py_ssize_t before = PyDict_Size(d)
        d[key] = value
        if PyDict_Size(d) != before:
            # a key new to this batch lands at the end of the dict's order; an overwrite keeps
            # its place, so only new keys can break key order
            last = self._last_new[bucket]
            if last is not None and _cmp(key, <bytes>last) <= 0:
                self._unordered[bucket] = 1
            self._last_new[bucket] = key
        self._ops += 1
        return 0

    cpdef put(self, int bucket, bytes key, bytes value):
        self.store(bucket, key, value)

    cpdef delete(self, int bucket, bytes key):
        self.store(bucket, key, None)
        self._has_deletes[bucket] = 1

    cpdef get(self, int bucket, bytes key, default=_MISSING):
        if bucket < 0 or bucket >= self._n:
            raise IndexError("bucket out of range")
        return (<dict>self._buckets[bucket]).get(key, default)

    @staticmethod
    def missing():
        return _MISSING

    def range(self, int bucket, bytes start, end):
        if bucket < 0 or bucket >= self._n:
            raise IndexError("bucket out of range")
        cdef dict d = self._buckets[bucket]
        cdef bytes k
        if end is None:
            v = d.get(start, _MISSING)
            return [] if v is _MISSING else [(start, v)]
        cdef bint unbounded = len(end) == 0
        out = []
        for k, v in d.items():
            if _cmp(k, start) >= 0 and (unbounded or _cmp(k, end) < 0):
                out.append((k, v))
        if self._unordered[bucket]:
            out.sort()
        return out

    cpdef list bucket_items(self, int bucket):
        if bucket < 0 or bucket >= self._n:
            raise IndexError("bucket out of range")
        cdef list items = list((<dict>self._buckets[bucket]).items())
        if self._unordered[bucket]:
            items.sort(key=_first)
        return items

    def take(self):
        """Move everything buffered into a new WriteBuffer and return it; this one is left empty
        (and stays the same object, so whoever holds it keeps writing into the new batch)."""
        cdef WriteBuffer out = WriteBuffer(self._n)
        out._buckets, self._buckets = self._buckets, out._buckets
        out._last_new, self._last_new = self._last_new, out._last_new
        out._ops, self._ops = self._ops, 0
        memcpy(out._unordered, self._unordered, MAX_BUCKETS)
        memcpy(out._has_deletes, self._has_deletes, MAX_BUCKETS)
        memset(self._unordered, 0, MAX_BUCKETS)
        memset(self._has_deletes, 0, MAX_BUCKETS)
        return out

    def clear(self):
        cdef dict d
        for d in self._buckets:
            d.clear()
        self._last_new = [None] * self._n
        self._ops = 0
        memset(self._unordered, 0, MAX_BUCKETS)
        memset(self._has_deletes, 0, MAX_BUCKETS)

    def write_to_lmdb(self, txn, dbs):
        cdef Py_ssize_t written = 0, bucket
        cdef dict d
        cdef list items, puts
        cdef tuple kv
        for bucket in range(self._n):
            d = self._buckets[bucket]
            if not d:
                continue
            db = dbs[bucket]
            if not self._unordered[bucket] and not self._has_deletes[bucket]:
                # in key order, puts only: the dict's items go to LMDB as they are
                cur = txn.cursor(db=db)
                for first in d:  # the bucket's first (smallest) key
                    break
                append = not cur.last() or _cmp(<bytes>cur.key(), <bytes>first) < 0
                cur.putmulti(d.items(), append=append)
                cur.close()
                written += len(d)
                continue
            items = self.bucket_items(bucket)
            puts = []
            for kv in items:
                if kv[1] is None:
                    txn.delete(kv[0], db=db)
                else:
                    puts.append(kv)
            if puts:
                cur = txn.cursor(db=db)
                append = not cur.last() or _cmp(<bytes>cur.key(), <bytes>(<tuple>puts[0])[0]) < 0
                cur.putmulti(puts, append=append)
                cur.close()
            written += len(items)
        return written


def _first(kv):
    return kv[0]
