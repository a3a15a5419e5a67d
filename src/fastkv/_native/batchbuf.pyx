# cython: language_level=3
"""Batch write buffer (compiled; twin and contract: batchbuf_py.py).

Per bucket a dict holds the newest buffered value of each key (None = buffered delete). The dict
keeps insertion order, and MVCC writes revision keys in increasing order, so the commit path
usually finds a bucket already sorted and hands it to LMDB with MDB_APPEND in one putmulti call.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcmp

DELETED = None
cdef object _MISSING = object()


cdef inline int _cmp(bytes a, bytes b):
    cdef Py_ssize_t la = PyBytes_GET_SIZE(a), lb = PyBytes_GET_SIZE(b)
    cdef int c = memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), la if la < lb else lb)
    if c != 0:
        return c
    return (la > lb) - (la < lb)


cdef class WriteBuffer:
    cdef list _buckets
    cdef Py_ssize_t _ops

    def __init__(self, int n_buckets):
        self._buckets = [dict() for _ in range(n_buckets)]
        self._ops = 0

    def __len__(self):
        return self._ops

    cpdef put(self, int bucket, bytes key, bytes value):
        (<dict>self._buckets[bucket])[key] = value
        self._ops += 1

    cpdef delete(self, int bucket, bytes key):
        (<dict>self._buckets[bucket])[key] = None
        self._ops += 1

    cpdef get(self, int bucket, bytes key, default=_MISSING):
        return (<dict>self._buckets[bucket]).get(key, default)

    @staticmethod
    def missing():
        return _MISSING

    def range(self, int bucket, bytes start, end):
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
        out.sort()
        return out

    cpdef list bucket_items(self, int bucket):
        cdef dict d = self._buckets[bucket]
        cdef list items = list(d.items())
        cdef Py_ssize_t i
        for i in range(1, len(items)):
            if _cmp(<bytes>(<tuple>items[i])[0], <bytes>(<tuple>items[i - 1])[0]) < 0:
                items.sort(key=_first)
                break
        return items

    def clear(self):
        cdef dict d
        for d in self._buckets:
            d.clear()
        self._ops = 0

    def write_to_lmdb(self, txn, dbs):
        cdef Py_ssize_t written = 0, bucket
        cdef dict d
        cdef list items, puts
        cdef tuple kv
        for bucket in range(len(self._buckets)):
            d = self._buckets[bucket]
            if not d:
                continue
            db = dbs[bucket]
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
