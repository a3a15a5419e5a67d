from libc.stdint cimport int64_t

cdef class KeyValue:
    cdef public bytes key
    cdef public int64_t create_revision
    cdef public int64_t mod_revision
    cdef public int64_t version
    cdef public bytes value
    cdef public int64_t lease

cpdef bytes rev_key(int64_t main, int64_t sub, bint tombstone=*)
cpdef bytes encode_record(bytes key, bytes value, int64_t create_revision, int64_t mod_revision,
                          int64_t version, int64_t lease)
cpdef KeyValue decode_record(bytes b)
