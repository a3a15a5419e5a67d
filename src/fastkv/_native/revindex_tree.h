/* Ordered key storage and point lookups of the revision index (included by revindex.h).
 *
 * The records (ri_key_t, see revindex.h) are owned by sorted chunks of pointers, which give key
 * order for range scans; a hash table of the same pointers serves exact-key operations. A record
 * that moves (realloc) is re-pointed in both: ri_append_at does it for appends, compaction
 * rebuilds the hash table from the chunks.
 */
#ifndef FASTKV_REVINDEX_TREE_H
#define FASTKV_REVINDEX_TREE_H

/* ---------------------------------------------------------------- ordered key storage */

static inline int ri_cmp(const unsigned char *a, size_t alen, const ri_key_t *k) {
    size_t klen = RI_KLEN(k);
    int c = memcmp(a, RI_KEY(k), alen < klen ? alen : klen);
    if (c) return c;
    return (alen > klen) - (alen < klen);
}

static void ri_tree_init(ri_tree_t *t) {
    t->chunks = NULL;
    t->nchunks = t->cap = 0;
    t->nkeys = 0;
}

static void ri_tree_free(ri_tree_t *t) {
    size_t i, j;
    for (i = 0; i < t->nchunks; i++) {
        ri_chunk_t *c = t->chunks[i];
        for (j = 0; j < c->n; j++) free(c->slots[j]);
        free(c);
    }
    free(t->chunks);
    ri_tree_init(t);
}

/* Position of the first key >= key: chunk *ci, slot *si (si == chunk n only when past the end of
 * the last chunk, or for inserting at the end of a chunk). Returns 1 when the key is present. */
static int ri_tree_find(const ri_tree_t *t, const unsigned char *key, size_t klen, size_t *ci,
                        size_t *si) {
    size_t lo = 0, hi, c;
    const ri_chunk_t *ch;
    if (t->nchunks == 0) {
        *ci = 0;
        *si = 0;
        return 0;
    }
    /* past the last key (fresh keys written in key order, as bulk loads do): one compare, not two
     * binary searches whose probes each load another key record */
    ch = t->chunks[t->nchunks - 1];
    if (ch->n && ri_cmp(key, klen, ch->slots[ch->n - 1]) > 0) {
        *ci = t->nchunks - 1;
        *si = ch->n;
        return 0;
    }
    /* last chunk whose first key <= key (chunk 0 if none) */
    hi = t->nchunks;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (ri_cmp(key, klen, t->chunks[mid]->slots[0]) >= 0)
            lo = mid;
        else
            hi = mid;
    }
    c = lo;
    ch = t->chunks[c];
    lo = 0;
    hi = ch->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ri_cmp(key, klen, ch->slots[mid]) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *ci = c;
    *si = lo;
    return lo < ch->n && ri_cmp(key, klen, ch->slots[lo]) == 0;
}

static ri_chunk_t *ri_chunk_alloc(uint32_t cap) {
    ri_chunk_t *c = (ri_chunk_t *)malloc(sizeof(ri_chunk_t) + (size_t)cap * sizeof(ri_key_t *));
    if (!c) return NULL;
    c->n = 0;
    c->cap = cap;
    return c;
}

static int ri_tree_insert_chunk(ri_tree_t *t, size_t at, ri_chunk_t *c) {
    if (t->nchunks == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        ri_chunk_t **nc = (ri_chunk_t **)realloc(t->chunks, cap * sizeof(ri_chunk_t *));
        if (!nc) return -1;
        t->chunks = nc;
        t->cap = cap;
    }
    memmove(t->chunks + at + 1, t->chunks + at, (t->nchunks - at) * sizeof(ri_chunk_t *));
    t->chunks[at] = c;
    t->nchunks++;
    return 0;
}

/* Insert k at position (ci, si) from ri_tree_find. Returns -1 on OOM (k not inserted). */
static int ri_tree_insert(ri_tree_t *t, size_t ci, size_t si, ri_key_t *k) {
    ri_chunk_t *c;
    if (t->nchunks == 0) {
        c = ri_chunk_alloc(8);
        if (!c || ri_tree_insert_chunk(t, 0, c)) {
            free(c);
            return -1;
        }
        ci = si = 0;
    }
    c = t->chunks[ci];
    if (c->n == RI_CHUNK_MAX) {
        /* split: appending at the very end (ascending loads) leaves the full chunk as is and
         * starts a new one, otherwise halve */
        uint32_t keep = (ci == t->nchunks - 1 && si == c->n) ? c->n : c->n / 2;
        uint32_t move = c->n - keep;
        ri_chunk_t *r = ri_chunk_alloc(move + move / 8 + 8);
        if (!r || ri_tree_insert_chunk(t, ci + 1, r)) {
            free(r);
            return -1;
        }
        memcpy(r->slots, c->slots + keep, move * sizeof(ri_key_t *));
        r->n = move;
        c->n = keep;
        if (si > keep || keep == RI_CHUNK_MAX) { /* the new key belongs to the right part */
            si -= keep;
            ci++;
            c = r;
        }
    }
    if (c->n == c->cap) {
        uint32_t cap = c->cap + c->cap / 4 + 8;
        ri_chunk_t *nc;
        if (cap > RI_CHUNK_MAX) cap = RI_CHUNK_MAX;
        nc = (ri_chunk_t *)realloc(c, sizeof(ri_chunk_t) + (size_t)cap * sizeof(ri_key_t *));
        if (!nc) return -1;
        nc->cap = cap;
        t->chunks[ci] = c = nc;
    }
    memmove(c->slots + si + 1, c->slots + si, (c->n - si) * sizeof(ri_key_t *));
    c->slots[si] = k;
    c->n++;
    t->nkeys++;
    return 0;
}

/* Drop the chunk slots that were set to NULL (keys freed by compaction), remove empty chunks and
 * give back unused slot capacity. */
static void ri_tree_sweep(ri_tree_t *t) {
    size_t i, j, w, cw = 0, total = 0;
    for (i = 0; i < t->nchunks; i++) {
        ri_chunk_t *c = t->chunks[i];
        for (j = 0, w = 0; j < c->n; j++)
            if (c->slots[j]) c->slots[w++] = c->slots[j];
        c->n = (uint32_t)w;
        total += w;
        if (w == 0) {
            free(c);
            continue;
        }
        if (c->cap - w > c->cap / 4 && c->cap > 16) {
            uint32_t cap = (uint32_t)w + 8;
            ri_chunk_t *nc =
                (ri_chunk_t *)realloc(c, sizeof(ri_chunk_t) + (size_t)cap * sizeof(ri_key_t *));
            if (nc) {
                nc->cap = cap;
                c = nc;
            }
        }
        t->chunks[cw++] = c;
    }
    t->nchunks = cw;
    t->nkeys = total;
}

/* ---------------------------------------------------------------- point lookups
 *
 * A hash table of record pointers for exact-key access (put/get/tombstone), so that a point
 * operation costs ~2 cache misses instead of a binary search's ~log2(n). Linear probing; the home
 * bucket is (hash * cap) >> 64 so any capacity works and growth is by 1.5x (keeping 10-15 bytes
 * per key). The top 16 bits of each stored pointer carry a hash tag (user-space pointers fit in 48
 * bits on x86-64 and arm64 Linux unless a program asks mmap for higher addresses; a record above
 * that is refused with an error rather than corrupted), so probing past other keys rarely
 * touches their records. Keys are removed only by compaction, which rebuilds
 * the table, so there is no delete.
 */
typedef struct {
    uint64_t *slots;   /* 0 = empty, else (tag << 48) | pointer */
    size_t cap, n;
    uint64_t seed;
} ri_hash_t;

#define RI_PTR_MASK 0x0000ffffffffffffull

static inline uint64_t ri_hash_bytes(const unsigned char *p, size_t n, uint64_t seed) {
    uint64_t h = seed ^ ((uint64_t)n * 0xff51afd7ed558ccdull), v;
    while (n >= 8) {
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    v = 0;
    memcpy(&v, p, n);
    h = (h ^ v) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

/* Records must leave the top 16 address bits free for the tag; stop rather than corrupt. */
static inline void ri_check_addr(const void *k) {
    if ((uint64_t)(uintptr_t)k & ~RI_PTR_MASK) {
        fprintf(stderr, "fastkv revindex: record at %p is above 2**48, cannot tag it\n", k);
        abort();
    }
}

static inline size_t ri_home(uint64_t h, size_t cap) {
    return (size_t)(((unsigned __int128)h * cap) >> 64);
}

static inline uint64_t ri_hash_tag(const ri_hash_t *t, uint64_t h) {
    (void)t;
    return (h >> 48) << 48;
}

/* The bucket holding key, or NULL. */
static inline uint64_t *ri_hash_find(const ri_hash_t *t, const unsigned char *key, size_t klen,
                                     uint64_t h) {
    size_t i;
    uint64_t tag, v;
    if (t->cap == 0) return NULL;
    tag = ri_hash_tag(t, h);
    i = ri_home(h, t->cap);
    for (;;) {
        v = t->slots[i];
        if (v == 0) return NULL;
        if ((v & ~RI_PTR_MASK) == tag) {
            const ri_key_t *k = (const ri_key_t *)(uintptr_t)(v & RI_PTR_MASK);
            if (RI_KLEN(k) == klen && memcmp(RI_KEY(k), key, klen) == 0) return &t->slots[i];
        }
        if (++i == t->cap) i = 0;
    }
}

static inline ri_key_t *ri_hash_ptr(uint64_t v) { return (ri_key_t *)(uintptr_t)(v & RI_PTR_MASK); }

/* Point the bucket at a record that moved (realloc), keeping its tag. */
static inline void ri_hash_repoint(uint64_t *slot, ri_key_t *k) {
    *slot = (*slot & ~RI_PTR_MASK) | (uint64_t)(uintptr_t)k;
}

static void ri_hash_place(ri_hash_t *t, ri_key_t *k, uint64_t h) {
    size_t i = ri_home(h, t->cap);
    while (t->slots[i]) {
        if (++i == t->cap) i = 0;
    }
    t->slots[i] = ri_hash_tag(t, h) | (uint64_t)(uintptr_t)k;
    t->n++;
}

static int ri_hash_resize(ri_hash_t *t, size_t cap, ri_tree_t *tree) {
    /* rebuilt from the ordered storage, which owns the records */
    uint64_t *slots = (uint64_t *)calloc(cap, sizeof(uint64_t));
    size_t ci, si;
    if (!slots) return -1; /* the old table stays valid (callers that moved records abort) */
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    t->n = 0;
    for (ci = 0; ci < tree->nchunks; ci++) {
        ri_chunk_t *c = tree->chunks[ci];
        for (si = 0; si < c->n; si++) {
            ri_key_t *k = c->slots[si];
            ri_check_addr(k);
            ri_hash_place(t, k, ri_hash_bytes(RI_KEY(k), RI_KLEN(k), t->seed));
        }
    }
    return 0;
}

/* Rebuild for the tree's current keys (after compaction freed or moved records). */
static int ri_hash_rebuild(ri_hash_t *t, ri_tree_t *tree) {
    size_t cap = tree->nkeys + tree->nkeys / 2 + 16;
    return ri_hash_resize(t, cap, tree);
}

/* Add a record already inserted in the tree (the table grows from the tree). -1 on OOM. */
static int ri_hash_add(ri_hash_t *t, ri_key_t *k, uint64_t h, ri_tree_t *tree) {
    ri_check_addr(k);
    if ((t->n + 1) * 5 > t->cap * 4) /* load above 0.8: grow by 1.5x (re-adds k from the tree) */
        return ri_hash_resize(t, t->cap + t->cap / 2 + 16, tree);
    ri_hash_place(t, k, h);
    return 0;
}

/* Append a revision to the key in hash bucket hs (see ri_append for the arguments). When the
 * record must grow and moves, both the ordered storage and the bucket are re-pointed; the tree
 * slot is located before the old record is released. Returns -1 on OOM (key untouched). */
static int ri_append_at(ri_tree_t *tree, uint64_t *hs, int64_t main, int32_t sub, int tomb,
                        int gen_start, int64_t cmain, int32_t csub, int64_t ver) {
    ri_key_t *k = ri_hash_ptr(*hs), *nk;
    unsigned char buf[RI_MAX_ENTRY];
    size_t nb = RI_NB(k);
    size_t len = (size_t)(ri_encode(buf, nb ? k->last_main : 0, main, sub, tomb, gen_start, cmain,
                                    csub, ver) - buf);
    int convert = !RI_IS_BIG(k) && nb + len > RI_BIG_MIN;
    size_t need = nb + len + (convert ? sizeof(ri_ext_t) : 0); /* bytes after the key */
    if (nb + len > 0x7fffffffu) return -1;
    if (need > ri_capacity(k)) {
        /* grow by ~1/4 so a hot key's appends stay amortized O(1), without bloating the
         * single-version case (the first put allocates exactly) */
        size_t ci, si, cap = need + need / 4;
        ri_key_t **tslot;
        ri_tree_find(tree, RI_KEY(k), RI_KLEN(k), &ci, &si);
        tslot = &tree->chunks[ci]->slots[si];
        nk = (ri_key_t *)realloc(k, RI_PREFIX(k) + cap);
        if (!nk) return -1;
        if (nk != k) {
            ri_check_addr(nk);
            *tslot = nk;
            ri_hash_repoint(hs, nk);
            k = nk;
        }
    }
    if (convert) {
        /* make room for the cache before the key, then fill it from the stream */
        memmove(k->data + sizeof(ri_ext_t), k->data, RI_KLEN(k) + nb);
        k->nbytes |= RI_BIG;
        ri_ext_refresh(k);
    }
    memcpy(RI_STREAM(k) + nb, buf, len);
    ri_set_nb(k, nb + len);
    k->last_main = main;
    k->last_len = (uint8_t)len;
    if (tomb)
        k->key_len |= RI_CLOSED;
    else
        k->key_len &= RI_KLEN_MASK;
    if (RI_IS_BIG(k)) {
        ri_ext_t e = ri_ext_load(k);
        if (gen_start) {
            e.cmain = cmain;
            e.csub = csub;
            e.ver = ver;
        } else {
            e.ver++;
        }
        ri_ext_store(k, &e);
    }
    return 0;
}

#endif /* FASTKV_REVINDEX_TREE_H */
