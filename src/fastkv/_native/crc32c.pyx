# distutils: extra_compile_args = -O3
"""CRC-32C (Castagnoli) with the SSE4.2 instruction when the CPU has it, slicing-by-8 otherwise.

Chaining contract (the WAL relies on it): crc32c(b, crc32c(a)) == crc32c(a + b); crc32c(b"") == 0.
The pure-Python twin is crc32c_py.py.
"""
from libc.stdint cimport uint32_t

fastkv_crc32c_init()


def crc32c(data, unsigned int crc=0):
    """CRC-32C of `data` (any contiguous buffer), continuing from the finished value `crc`."""
    cdef const unsigned char[::1] view = _as_view(data)
    cdef size_t n = view.shape[0]
    cdef uint32_t out
    if n == 0:
        return crc
    with nogil:
        out = fastkv_crc32c_update(crc, &view[0], n)
    return out


def crc32c_software(data, unsigned int crc=0):
    """Same as crc32c() but always through the table path (for tests and the benchmark)."""
    cdef const unsigned char[::1] view = _as_view(data)
    cdef size_t n = view.shape[0]
    cdef uint32_t out
    if n == 0:
        return crc
    with nogil:
        out = fastkv_crc32c_update_sw(crc, &view[0], n)
    return out


def has_hardware():
    """True when the SSE4.2 crc32 instruction is in use."""
    return fastkv_crc32c_hw != 0


cdef inline const unsigned char[::1] _as_view(data):
    if isinstance(data, memoryview) and not (<memoryview>data).c_contiguous:
        data = bytes(data)
    try:
        return data
    except (TypeError, ValueError):
        # buffers with a non-byte format (e.g. array('I')) are read as raw bytes
        return memoryview(data).cast("B")
