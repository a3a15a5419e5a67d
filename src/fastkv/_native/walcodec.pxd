# C-level record layout of the WAL (see walcodec.pyx for the format and its reasons).
from libc.stdint cimport uint32_t, uint64_t

cdef enum:
    WAL_FRAME_SIZE = 8          # the little-endian length word
    WAL_RECORD_HEADER = 16      # length word + crc u32 + type u32
    WAL_ENTRY_HEADER = 21       # raftpb Entry: term u64 | index u64 | type u8 | data_len u32

cdef extern from "crc32c.h" nogil:
    void fastkv_crc32c_init()
    uint32_t fastkv_crc32c_update(uint32_t crc, const unsigned char *p, size_t n)
