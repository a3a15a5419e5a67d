# cython: language_level=3
"""Revision keys and stored records of the MVCC key bucket (compiled; twin: mvcccodec_py.py).

Layouts are documented in the twin. Encoding writes straight into a new bytes object (one
allocation per key or record, no intermediate concatenations), which is what the write path pays per
put.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy

cdef enum:
    REV_KEY_LEN = 17
    HDR = 36

REV_KEY_SIZE = 17
TOMBSTONE_MARK = b"t"
HEADER_SIZE = HDR


cdef class KeyValue:
    """An etcd mvccpb.KeyValue."""

    def __init__(self, bytes key=b"", int64_t create_revision=0, int64_t mod_revision=0,
                 int64_t version=0, bytes value=b"", int64_t lease=0):
        self.key = key
        self.create_revision = create_revision
        self.mod_revision = mod_revision
        self.version = version
        self.value = value
        self.lease = lease

    def __eq__(self, other):
        if not hasattr(other, "mod_revision"):
            return NotImplemented
        return (self.key, self.create_revision, self.mod_revision, self.version, self.value, self.lease) == (
            other.key, other.create_revision, other.mod_revision, other.version, other.value, other.lease)

    def __repr__(self):
        return (f"KeyValue(key={self.key!r}, create_revision={self.create_revision}, "
                f"mod_revision={self.mod_revision}, version={self.version}, value={self.value!r}, lease={self.lease})")

    def __reduce__(self):
        return (KeyValue, (self.key, self.create_revision, self.mod_revision, self.version, self.value, self.lease))


cdef inline void _put_be64(char* p, uint64_t v) noexcept nogil:
    cdef int i
    for i in range(8):
        p[7 - i] = <char>(v & 0xFF)
        v >>= 8


cdef inline uint64_t _get_be64(const unsigned char* p) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v = (v << 8) | p[i]
    return v


cdef inline void _put_le64(char* p, uint64_t v) noexcept nogil:
    memcpy(p, &v, 8)  # x86-64 and aarch64 (little-endian) only; asserted at import below


cdef inline uint64_t _get_le64(const char* p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


import sys as _sys
if _sys.byteorder != "little":  # pragma: no cover
    raise ImportError("mvcccodec's compiled form assumes a little-endian CPU; use FASTKV_PURE=1")


cpdef bytes rev_key(int64_t main, int64_t sub, bint tombstone=False):
    if main < 0 or sub < 0:
        raise OverflowError("revisions are non-negative")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, REV_KEY_LEN + (1 if tombstone else 0))
    cdef char* p = PyBytes_AS_STRING(out)
    _put_be64(p, <uint64_t>main)
    p[8] = b"_"
    _put_be64(p + 9, <uint64_t>sub)
    if tombstone:
        p[17] = b"t"
    return out


def parse_rev_key(bytes b):
    """-> (main, sub, is_tombstone)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    if n != REV_KEY_LEN and n != REV_KEY_LEN + 1:
        raise ValueError(f"revision key has {n} bytes, expected 17 or 18")
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(b)
    return <int64_t>_get_be64(p), <int64_t>_get_be64(p + 9), n == REV_KEY_LEN + 1


cpdef bytes encode_record(bytes key, bytes value, int64_t create_revision, int64_t mod_revision,
                          int64_t version, int64_t lease):
    cdef Py_ssize_t klen = PyBytes_GET_SIZE(key), vlen = PyBytes_GET_SIZE(value)
    if klen > 0xFFFFFFFF:
        raise OverflowError("key too long")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, HDR + klen + vlen)
    cdef char* p = PyBytes_AS_STRING(out)
    cdef uint32_t k32 = <uint32_t>klen
    memcpy(p, &k32, 4)
    _put_le64(p + 4, <uint64_t>create_revision)
    _put_le64(p + 12, <uint64_t>mod_revision)
    _put_le64(p + 20, <uint64_t>version)
    _put_le64(p + 28, <uint64_t>lease)
    memcpy(p + HDR, PyBytes_AS_STRING(key), klen)
    memcpy(p + HDR + klen, PyBytes_AS_STRING(value), vlen)
    return out


cpdef KeyValue decode_record(bytes b):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    if n < HDR:
        raise ValueError("stored record is shorter than its header")
    cdef const char* p = PyBytes_AS_STRING(b)
    cdef uint32_t klen
    memcpy(&klen, p, 4)
    if HDR + <Py_ssize_t>klen > n:
        raise ValueError("stored record key runs past its end")
    cdef KeyValue kv = KeyValue.__new__(KeyValue)
    kv.key = PyBytes_FromStringAndSize(p + HDR, klen)
    kv.create_revision = <int64_t>_get_le64(p + 4)
    kv.mod_revision = <int64_t>_get_le64(p + 12)
    kv.version = <int64_t>_get_le64(p + 20)
    kv.lease = <int64_t>_get_le64(p + 28)
    kv.value = PyBytes_FromStringAndSize(p + HDR + klen, n - HDR - klen)
    return kv


def record_key(bytes b):
    """Just the user key of a stored record (cheaper than a full decode)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    if n < HDR:
        raise ValueError("stored record is shorter than its header")
    cdef const char* p = PyBytes_AS_STRING(b)
    cdef uint32_t klen
    memcpy(&klen, p, 4)
    if HDR + <Py_ssize_t>klen > n:
        raise ValueError("stored record key runs past its end")
    return PyBytes_FromStringAndSize(p + HDR, klen)
