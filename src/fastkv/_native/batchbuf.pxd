# cdef view of the batch write buffer (batchbuf.pyx), for the fused MVCC write in revwrite.pyx.

cdef enum:
    MAX_BUCKETS = 64


cdef class WriteBuffer:
    cdef list _buckets           # per bucket: dict key -> value (None = buffered delete)
    cdef list _last_new          # per bucket: the key most recently added to the dict (or None)
    cdef Py_ssize_t _ops
    cdef int _n
    cdef unsigned char _unordered[MAX_BUCKETS]   # a new key arrived at or below the previous one
    cdef unsigned char _has_deletes[MAX_BUCKETS]
    cdef int store(self, int bucket, bytes key, object value) except -1
    cpdef put(self, int bucket, bytes key, bytes value)
    cpdef delete(self, int bucket, bytes key)
    cpdef get(self, int bucket, bytes key, default=*)
    cpdef list bucket_items(self, int bucket)
