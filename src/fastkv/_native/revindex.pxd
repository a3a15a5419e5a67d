# cdef view of revindex.h (compact C storage of the revision index) and the TreeIndex type.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t


cdef extern from "revindex.h" nogil:
    ctypedef struct ri_key_t:
        int64_t last_main
        uint32_t key_len
        uint32_t nbytes
        uint8_t last_len
        unsigned char data[1]

    ctypedef struct ri_chunk_t:
        uint32_t n
        uint32_t cap
        ri_key_t *slots[1]

    ctypedef struct ri_tree_t:
        ri_chunk_t **chunks
        size_t nchunks
        size_t cap
        size_t nkeys

    ctypedef struct ri_rev_t:
        int64_t main
        int32_t sub

    ctypedef struct ri_revbuf_t:
        ri_rev_t *revs
        size_t n
        size_t cap

    ctypedef struct ri_dec_t:
        int64_t main
        int32_t sub
        int flags
        int gen_start
        int64_t cmain
        int32_t csub
        int64_t ver

    int RI_TOMB
    size_t RI_KLEN(const ri_key_t *k)
    int32_t ri_last_sub(const ri_key_t *k)
    unsigned char *RI_KEY(const ri_key_t *k)
    bint RI_IS_CLOSED(const ri_key_t *k)

    void ri_dec_init(ri_dec_t *d, const ri_key_t *k)
    int ri_dec_next(ri_dec_t *d)
    ri_key_t *ri_key_new(const unsigned char *key, size_t klen, size_t stream_cap)
    int ri_append(ri_key_t **kp, int64_t main, int32_t sub, int tomb, int gen_start,
                  int64_t cmain, int32_t csub, int64_t ver)
    int ri_get(const ri_key_t *k, int64_t at, int64_t *mmain, int32_t *msub, int64_t *cmain,
               int32_t *csub, int64_t *ver)
    int ri_get_mod(const ri_key_t *k, int64_t at, int64_t *mmain, int32_t *msub)
    int ri_since(const ri_key_t *k, int64_t rev, ri_revbuf_t *out)
    void ri_sort_revs(ri_revbuf_t *b)
    int ri_compact_key(ri_key_t **kp, int64_t at, int mutate, ri_rev_t *avail, int *empty)

    ctypedef struct ri_hash_t:
        uint64_t *slots
        size_t cap
        size_t n
        uint64_t seed

    uint64_t ri_hash_bytes(const unsigned char *p, size_t n, uint64_t seed)
    uint64_t *ri_hash_find(const ri_hash_t *t, const unsigned char *key, size_t klen, uint64_t h)
    ri_key_t *ri_hash_ptr(uint64_t v)
    int ri_hash_add(ri_hash_t *t, ri_key_t *k, uint64_t h, ri_tree_t *tree)
    int ri_hash_rebuild(ri_hash_t *t, ri_tree_t *tree)
    int ri_append_at(ri_tree_t *tree, uint64_t *hs, int64_t main, int32_t sub, int tomb,
                     int gen_start, int64_t cmain, int32_t csub, int64_t ver)

    int ri_cmp(const unsigned char *a, size_t alen, const ri_key_t *k)
    void ri_tree_init(ri_tree_t *t)
    void ri_tree_free(ri_tree_t *t)
    int ri_tree_find(const ri_tree_t *t, const unsigned char *key, size_t klen, size_t *ci,
                     size_t *si)
    int ri_tree_insert(ri_tree_t *t, size_t ci, size_t si, ri_key_t *k)
    void ri_tree_sweep(ri_tree_t *t)


cdef class TreeIndex:
    cdef ri_tree_t tree
    cdef ri_hash_t hash
    cdef int _readers        # scans in progress (they allocate Python objects as they go)
    cdef bint _compacting    # a compaction is rewriting records
    cdef int _writable(self) except -1
    cdef int _readable(self) except -1
    cdef _dump_into(self, list out)
    cdef uint64_t *_bucket(self, bytes key, uint64_t *h)
    cdef int put_versioned_c(self, bytes key, int64_t main, int64_t sub, int64_t *created,
                             int64_t *version) except -1
    cdef int _insert_new(self, bytes key, uint64_t h, int64_t main, int32_t sub, int64_t cmain,
                         int32_t csub, int64_t ver) except -1
    cdef bint _start(self, bytes key, size_t *ci, size_t *si)
    cdef set _compact(self, int64_t rev, int mutate)
