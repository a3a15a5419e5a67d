# distutils: extra_compile_args = -O3
# distutils: depends = src/fastkv/_native/revindex.h src/fastkv/_native/revindex_tree.h
# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The in-memory revision index (etcd's treeIndex of keyIndex), compiled.

Same public API and behaviour as the pure-Python twin `revindex_py` (read its docstring for the
semantics: etcd v3.4 keyIndex, compact(rev) == keep(rev)). Storage is plain C (revindex.h): one
malloc'd record per key holding the key bytes and a varint-packed revision stream (generations
marked inside the stream), ordered by key in sorted chunks of pointers. No Python object lives per
key or per revision; Python objects are made only for what a call returns.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport abort, free

import os

__all__ = ["TreeIndex", "RevisionNotFoundError"]

cdef int64_t INT32_MAX = 2147483647


class RevisionNotFoundError(KeyError):
    """etcd's ErrRevisionNotFound: the key is absent or deleted at the asked revision."""

    def __init__(self, msg="mvcc: revision not found"):
        super().__init__(msg)


cdef inline bytes _as_key(object key):
    """bytes, or a copy of any bytes-like object (ints and str are refused with TypeError)."""
    if type(key) is bytes:
        return <bytes>key
    return bytes(memoryview(key))


cdef inline int _check_rev(int64_t main, int64_t sub) except -1:
    if main <= 0:
        raise ValueError(f"main revision must be in 1..2**63-1, got {main}")
    if sub < 0 or sub > INT32_MAX:
        raise ValueError(f"sub revision must be in 0..2**31-1, got {sub}")
    return 0


_REENTRY = ("TreeIndex used while one of its scans or compactions is in progress (a garbage "
            "collector callback or finalizer, or another thread, re-entered it; callers serialize)")


cdef class TreeIndex:
    """key (bytes) -> revision history, ordered by key. Not thread-safe: callers serialize.

    Every call runs under the GIL without releasing it, but scans allocate their Python results as
    they go, and an allocation may run a garbage-collector callback or finalizer that calls back
    into the index (or lets another thread in). Such re-entry cannot corrupt the C storage: a
    mutation during a scan, or any use during compaction, raises RuntimeError instead.
    """

    def __cinit__(self):
        ri_tree_init(&self.tree)
        self.hash.slots = NULL
        self.hash.cap = self.hash.n = 0
        # per-index seed: bucket placement cannot be predicted from outside the process
        self.hash.seed = int.from_bytes(os.urandom(8), "little")

    def __dealloc__(self):
        ri_tree_free(&self.tree)
        free(self.hash.slots)

    def __len__(self):
        return self.tree.nkeys

    cdef int _writable(self) except -1:
        if self._readers or self._compacting:
            raise RuntimeError(_REENTRY)
        return 0

    cdef int _readable(self) except -1:
        if self._compacting:
            raise RuntimeError(_REENTRY)
        return 0

    cdef uint64_t *_bucket(self, bytes key, uint64_t *h):
        """The hash bucket of key (NULL when absent); *h receives the key's hash."""
        cdef const unsigned char *kp = <const unsigned char *>PyBytes_AS_STRING(key)
        cdef size_t klen = <size_t>PyBytes_GET_SIZE(key)
        h[0] = ri_hash_bytes(kp, klen, self.hash.seed)
        return ri_hash_find(&self.hash, kp, klen, h[0])

    cdef int _insert_new(self, bytes key, uint64_t h, int64_t main, int32_t sub, int64_t cmain,
                         int32_t csub, int64_t ver) except -1:
        cdef size_t ci, si
        cdef const unsigned char *kp = <const unsigned char *>PyBytes_AS_STRING(key)
        cdef size_t klen = <size_t>PyBytes_GET_SIZE(key)
        cdef ri_key_t *k
        if klen > 0x7fffffff:
            raise ValueError("key too long")
        ri_tree_find(&self.tree, kp, klen, &ci, &si)
        k = ri_key_new(kp, klen, 0)
        if k == NULL:
            raise MemoryError()
        if ri_append(&k, main, sub, 0, 1, cmain, csub, ver) != 0 or \
                ri_tree_insert(&self.tree, ci, si, k) != 0:
            free(k)
            raise MemoryError()
        if ri_hash_add(&self.hash, k, h, &self.tree) != 0:
            # keep the two structures in step: take the key back out of the tree
            ri_tree_find(&self.tree, kp, klen, &ci, &si)
            self.tree.chunks[ci].slots[si] = NULL
            free(k)
            ri_tree_sweep(&self.tree)
            raise MemoryError()
        return 0

    # -- writes ---------------------------------------------------------------------------------

    def put(self, key, int64_t main, int64_t sub):
        self._writable()
        _check_rev(main, sub)
        cdef bytes bkey = _as_key(key)
        cdef uint64_t h
        cdef uint64_t *b = self._bucket(bkey, &h)
        cdef ri_key_t *k
        if b == NULL:
            self._insert_new(bkey, h, main, <int32_t>sub, main, <int32_t>sub, 1)
            return
        k = ri_hash_ptr(b[0])
        if main < k.last_main or (main == k.last_main and sub <= ri_last_sub(k)):
            raise ValueError(f"put with revision {(main, sub)} not above "
                             f"{(k.last_main, ri_last_sub(k))} for {bkey!r}")
        # after a tombstone this opens a fresh generation: created = this revision, version 1
        if ri_append_at(&self.tree, b, main, <int32_t>sub, 0, RI_IS_CLOSED(k), main,
                        <int32_t>sub, 1) != 0:
            raise MemoryError()

    def put_versioned(self, key, int64_t main, int64_t sub):
        """put(), returning (created_main, version) of the key after it: what the MVCC write path
        needs for the record it stores, in one call and without an exception for a new key."""
        cdef int64_t created, version
        self.put_versioned_c(_as_key(key), main, sub, &created, &version)
        return created, version

    cdef int put_versioned_c(self, bytes key, int64_t main, int64_t sub, int64_t *created,
                             int64_t *version) except -1:
        """put_versioned() for C callers (the fused MVCC write in revwrite.pyx): no tuple."""
        self._writable()
        _check_rev(main, sub)
        cdef uint64_t h
        cdef uint64_t *b = self._bucket(key, &h)
        cdef ri_key_t *k
        cdef int64_t mmain = 0, cmain = 0, ver = 0
        cdef int32_t msub = 0, csub = 0
        if b == NULL:
            self._insert_new(key, h, main, <int32_t>sub, main, <int32_t>sub, 1)
            created[0] = main
            version[0] = 1
            return 0
        k = ri_hash_ptr(b[0])
        if main < k.last_main or (main == k.last_main and sub <= ri_last_sub(k)):
            raise ValueError(f"put with revision {(main, sub)} not above "
                             f"{(k.last_main, ri_last_sub(k))} for {key!r}")
        if RI_IS_CLOSED(k) or not ri_get(k, main, &mmain, &msub, &cmain, &csub, &ver):
            cmain, ver = main, 0
        if ri_append_at(&self.tree, b, main, <int32_t>sub, 0, RI_IS_CLOSED(k), main,
                        <int32_t>sub, 1) != 0:
            raise MemoryError()
        created[0] = cmain
        version[0] = ver + 1
        return 0

    def tombstone(self, key, int64_t main, int64_t sub):
        self._writable()
        _check_rev(main, sub)
        cdef bytes bkey = _as_key(key)
        cdef uint64_t h
        cdef uint64_t *b = self._bucket(bkey, &h)
        cdef ri_key_t *k
        if b == NULL or RI_IS_CLOSED(ri_hash_ptr(b[0])):
            raise RevisionNotFoundError()
        k = ri_hash_ptr(b[0])
        if main < k.last_main or (main == k.last_main and sub <= ri_last_sub(k)):
            raise ValueError(f"tombstone with revision {(main, sub)} not above "
                             f"{(k.last_main, ri_last_sub(k))} for {bkey!r}")
        if ri_append_at(&self.tree, b, main, <int32_t>sub, 1, 0, 0, 0, 0) != 0:
            raise MemoryError()

    def restore(self, key, int64_t created_main, int64_t main, int64_t sub, int64_t version):
        self._writable()
        _check_rev(main, sub)
        if not (0 < created_main <= main):
            raise ValueError(f"created_main must be in 1..main, got {created_main} (main {main})")
        if version < 1:
            raise ValueError(f"version must be >= 1, got {version}")
        cdef bytes bkey = _as_key(key)
        cdef uint64_t h
        cdef uint64_t *b = self._bucket(bkey, &h)
        cdef ri_key_t *k
        if b == NULL:
            self._insert_new(bkey, h, main, <int32_t>sub, created_main, 0, version)
            return
        k = ri_hash_ptr(b[0])
        if not RI_IS_CLOSED(k):
            raise ValueError(f"restore over a live generation of {bkey!r}")
        if main < k.last_main or (main == k.last_main and sub <= ri_last_sub(k)):
            raise ValueError(f"restore with revision {(main, sub)} not above "
                             f"{(k.last_main, ri_last_sub(k))} for {bkey!r}")
        if ri_append_at(&self.tree, b, main, <int32_t>sub, 0, 1, created_main, 0, version) != 0:
            raise MemoryError()

    # -- reads ----------------------------------------------------------------------------------

    def get(self, key, int64_t at_rev):
        self._readable()
        cdef bytes bkey = _as_key(key)
        cdef uint64_t h
        cdef uint64_t *b = self._bucket(bkey, &h)
        cdef int64_t mmain = 0, cmain = 0, ver = 0
        cdef int32_t msub = 0, csub = 0
        if b == NULL or not ri_get(ri_hash_ptr(b[0]), at_rev, &mmain, &msub, &cmain, &csub, &ver):
            raise RevisionNotFoundError()
        return (mmain, msub), (cmain, csub), ver

    cdef bint _start(self, bytes key, size_t *ci, size_t *si):
        """Position of the first key >= key; False when there is none."""
        ri_tree_find(&self.tree, <const unsigned char *>PyBytes_AS_STRING(key),
                     <size_t>PyBytes_GET_SIZE(key), ci, si)
        if ci[0] < self.tree.nchunks and si[0] == self.tree.chunks[ci[0]].n:
            ci[0] += 1
            si[0] = 0
        return ci[0] < self.tree.nchunks

    def revisions(self, key, end, int64_t at_rev, Py_ssize_t limit=0):
        self._readable()
        cdef bytes bkey = _as_key(key)
        cdef uint64_t h
        cdef uint64_t *b
        cdef int64_t mmain
        cdef int32_t msub
        if end is None:
            b = self._bucket(bkey, &h)
            if b == NULL or not ri_get_mod(ri_hash_ptr(b[0]), at_rev, &mmain, &msub):
                return [], 0
            return [(mmain, msub)], 1
        cdef bytes bend = _as_key(end)
        cdef const unsigned char *ep = <const unsigned char *>PyBytes_AS_STRING(bend)
        cdef size_t elen = <size_t>PyBytes_GET_SIZE(bend)
        cdef size_t ci, si
        cdef ri_chunk_t *c
        cdef list revs = []
        cdef Py_ssize_t total = 0
        if not self._start(bkey, &ci, &si):
            return revs, 0
        self._readers += 1  # appending to revs allocates: see the class docstring
        try:
            while ci < self.tree.nchunks:
                c = self.tree.chunks[ci]
                while si < c.n:
                    if elen and ri_cmp(ep, elen, c.slots[si]) <= 0:
                        return revs, total
                    if ri_get_mod(c.slots[si], at_rev, &mmain, &msub):
                        if limit <= 0 or total < limit:
                            revs.append((mmain, msub))
                        total += 1
                    si += 1
                ci += 1
                si = 0
            return revs, total
        finally:
            self._readers -= 1

    def count_revisions(self, key, end, int64_t at_rev):
        self._readable()
        cdef bytes bkey = _as_key(key)
        cdef uint64_t h
        cdef uint64_t *b
        cdef int64_t mmain
        cdef int32_t msub
        if end is None:
            b = self._bucket(bkey, &h)
            return 1 if b != NULL and ri_get_mod(ri_hash_ptr(b[0]), at_rev, &mmain, &msub) else 0
        cdef bytes bend = _as_key(end)
        cdef const unsigned char *ep = <const unsigned char *>PyBytes_AS_STRING(bend)
        cdef size_t elen = <size_t>PyBytes_GET_SIZE(bend)
        cdef size_t ci, si
        cdef ri_chunk_t *c
        cdef Py_ssize_t total = 0
        if not self._start(bkey, &ci, &si):
            return 0
        while ci < self.tree.nchunks:
            c = self.tree.chunks[ci]
            while si < c.n:
                if elen and ri_cmp(ep, elen, c.slots[si]) <= 0:
                    return total
                if ri_get_mod(c.slots[si], at_rev, &mmain, &msub):
                    total += 1
                si += 1
            ci += 1
            si = 0
        return total

    def range(self, key, end, int64_t at_rev):
        self._readable()
        cdef bytes bkey = _as_key(key)
        cdef uint64_t h
        cdef uint64_t *b
        cdef ri_key_t *k
        cdef int64_t mmain
        cdef int32_t msub
        if end is None:
            b = self._bucket(bkey, &h)
            if b == NULL or not ri_get_mod(ri_hash_ptr(b[0]), at_rev, &mmain, &msub):
                return [], []
            return [bkey], [(mmain, msub)]
        cdef bytes bend = _as_key(end)
        cdef const unsigned char *ep = <const unsigned char *>PyBytes_AS_STRING(bend)
        cdef size_t elen = <size_t>PyBytes_GET_SIZE(bend)
        cdef size_t ci, si
        cdef ri_chunk_t *c
        cdef list keys = [], revs = []
        if not self._start(bkey, &ci, &si):
            return keys, revs
        self._readers += 1  # building keys/revs allocates: see the class docstring
        try:
            while ci < self.tree.nchunks:
                c = self.tree.chunks[ci]
                while si < c.n:
                    k = c.slots[si]
                    if elen and ri_cmp(ep, elen, k) <= 0:
                        return keys, revs
                    if ri_get_mod(k, at_rev, &mmain, &msub):
                        keys.append(PyBytes_FromStringAndSize(<char *>RI_KEY(k), RI_KLEN(k)))
                        revs.append((mmain, msub))
                    si += 1
                ci += 1
                si = 0
            return keys, revs
        finally:
            self._readers -= 1

    def range_since(self, key, end, int64_t rev):
        # collects into a C buffer first and builds Python objects after the scan
        self._readable()
        cdef bytes bkey = _as_key(key)
        cdef uint64_t h
        cdef uint64_t *b
        cdef ri_revbuf_t buf
        cdef size_t ci, si, i
        cdef ri_chunk_t *c
        cdef bytes bend
        cdef const unsigned char *ep
        cdef size_t elen
        cdef int err = 0
        buf.revs = NULL
        buf.n = buf.cap = 0
        try:
            if end is None:
                b = self._bucket(bkey, &h)
                if b != NULL:
                    err = ri_since(ri_hash_ptr(b[0]), rev, &buf)
            else:
                bend = _as_key(end)
                ep = <const unsigned char *>PyBytes_AS_STRING(bend)
                elen = <size_t>PyBytes_GET_SIZE(bend)
                if self._start(bkey, &ci, &si):
                    while ci < self.tree.nchunks and not err:
                        c = self.tree.chunks[ci]
                        while si < c.n:
                            if elen and ri_cmp(ep, elen, c.slots[si]) <= 0:
                                ci = self.tree.nchunks
                                break
                            if ri_since(c.slots[si], rev, &buf) != 0:
                                err = 1
                                break
                            si += 1
                        ci += 1
                        si = 0
                ri_sort_revs(&buf)
            if err:
                raise MemoryError()
            return [(buf.revs[i].main, buf.revs[i].sub) for i in range(buf.n)]
        finally:
            free(buf.revs)

    # -- compaction -----------------------------------------------------------------------------

    cdef set _compact(self, int64_t rev, int mutate):
        cdef set available = set()
        cdef size_t ci, si
        cdef ri_chunk_t *c
        cdef ri_rev_t avail
        cdef ri_key_t *before
        cdef int empty, r, swept = 0, moved = 0
        avail.main = avail.sub = 0
        # available.add() allocates mid-scan: see the class docstring
        if mutate:
            self._writable()
            self._compacting = 1
        else:
            self._readable()
            self._readers += 1
        try:
            for ci in range(self.tree.nchunks):
                c = self.tree.chunks[ci]
                for si in range(c.n):
                    before = c.slots[si]
                    r = ri_compact_key(&c.slots[si], rev, mutate, &avail, &empty)
                    if r < 0:
                        raise MemoryError()
                    moved |= c.slots[si] != before
                    if r:
                        available.add((avail.main, avail.sub))
                    if empty and mutate:
                        free(c.slots[si])
                        c.slots[si] = NULL
                        swept = 1
        finally:
            # also after an error: never leave NULL slots or stale hash buckets behind
            if swept:
                ri_tree_sweep(&self.tree)
            if swept or moved:
                if ri_hash_rebuild(&self.hash, &self.tree) != 0:
                    abort()  # the table would point at freed records; nothing sane is left
            if mutate:
                self._compacting = 0
            else:
                self._readers -= 1
        return available

    def compact(self, int64_t rev):
        return self._compact(rev, 1)

    def keep(self, int64_t rev):
        return self._compact(rev, 0)

    # -- introspection (tests, debugging) --------------------------------------------------------

    def dump(self):
        """Every key with its generations as (created, version_of_first_rev, revs, closed), in key
        order; the same shape as the twin's dump(), for differential tests."""
        cdef list out = []
        self._readable()
        self._readers += 1
        try:
            self._dump_into(out)
        finally:
            self._readers -= 1
        return out

    cdef _dump_into(self, list out):
        cdef list gens, revs
        cdef size_t ci, si
        cdef ri_key_t *k
        cdef ri_dec_t d
        for ci in range(self.tree.nchunks):
            for si in range(self.tree.chunks[ci].n):
                k = self.tree.chunks[ci].slots[si]
                gens = []
                ri_dec_init(&d, k)
                while ri_dec_next(&d):
                    if d.gen_start:
                        revs = []
                        gens.append([(d.cmain, d.csub), d.ver, revs, False])
                    revs.append((d.main, d.sub))
                    if d.flags & RI_TOMB:
                        gens[len(gens) - 1][3] = True
                out.append((PyBytes_FromStringAndSize(<char *>RI_KEY(k), RI_KLEN(k)),
                            [tuple(g) for g in gens]))
