from libc.stdint cimport int64_t

from fastkv._native.batchbuf cimport WriteBuffer
from fastkv._native.revindex cimport TreeIndex


cdef class RevisionWriter:
    cdef readonly object index
    cdef readonly object buffer
    cdef readonly int bucket
    cdef TreeIndex _c_index      # the same objects when they are the compiled types, else None
    cdef WriteBuffer _c_buffer
    # the store's write state (see the twin's docstring)
    cdef public int64_t revision
    cdef public int64_t size_at_commit
    cdef public int64_t bytes_since_commit
    cdef int64_t _quota
    cdef bint _has_quota
    cdef public object on_put
    # what put_value needs from the backend
    cdef object _lock_acquire, _lock_release, _tx, _batch_full
    cdef Py_ssize_t _batch_limit
    cdef object _empty_key_error, _no_space_error
    cpdef tuple put(self, bytes key, bytes value, int64_t main, int64_t sub, int64_t lease)
    cdef int64_t put_value_c(self, bytes key, bytes value, int64_t lease) except -1


cdef class PutResult:
    cdef public int64_t revision
    cdef public object prev_kv


cdef class PutEntry:
    cdef object _put_value, _slow
    cdef RevisionWriter _writer
    cdef public bint lean
