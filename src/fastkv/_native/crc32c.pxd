# C-level declarations of the CRC-32C kernels in crc32c.h (static functions: every extension that
# needs them declares the same extern block and gets its own copy, see walcodec.pyx).
from libc.stdint cimport uint32_t

cdef extern from "crc32c.h" nogil:
    void fastkv_crc32c_init()
    uint32_t fastkv_crc32c_update(uint32_t crc, const unsigned char *p, size_t n)
    uint32_t fastkv_crc32c_update_sw(uint32_t crc, const unsigned char *p, size_t n)
    int fastkv_crc32c_hw
