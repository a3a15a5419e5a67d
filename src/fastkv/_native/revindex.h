/* Compact C storage for the revision index (see revindex.pyx for the Python face).
 *
 * One malloc'd record per key holds the key bytes and that key's whole revision history,
 * encoded as a byte stream; the records are ordered by key in sorted chunks of pointers
 * ("list of lists", as sortedcontainers does), which keeps inserts cheap (a memmove of at most
 * RI_CHUNK_MAX pointers) and costs about one pointer per key.
 *
 * Revision stream: one entry per revision, oldest first, strictly increasing (main, sub).
 *   varint  head = (main - previous main) * 2 + has_flags     (previous main is 0 for the first)
 *   [byte   flags]                      present when has_flags: RI_SUB | RI_TOMB | RI_GENHDR
 *   [varint sub]                        when RI_SUB (sub != 0)
 *   [varint created_main, varint created_sub, varint version]   when RI_GENHDR
 * A generation starts at the first entry and after every RI_TOMB entry (the tombstone closes
 * its generation). A starting entry without RI_GENHDR means created = this revision and
 * version 1 (a fresh put); RI_GENHDR carries them explicitly (restore, or a generation whose
 * head was trimmed by compaction). Each later entry of a generation has version + 1.
 * A put of a 16-byte key at a 6-digit revision thus costs 17 (header) + 16 + 3 bytes, which with
 * malloc's 8-byte chunk header fits glibc's 48-byte size class up to revision 2**41 (or 2**34
 * with a sub revision).
 *
 * Records whose stream outgrows RI_BIG_MIN bytes (about 6+ revisions) carry a 24-byte extension
 * between header and key caching the open generation's created revision and the newest version,
 * so that get() at or above the newest revision (every MVCC put asks it) stays O(1) on hot keys;
 * older revisions are found by decoding the stream.
 */
#ifndef FASTKV_REVINDEX_H
#define FASTKV_REVINDEX_H

#include <malloc.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RI_SUB 1
#define RI_TOMB 2
#define RI_GENHDR 4

#define RI_CLOSED 0x80000000u /* in key_len: the last generation ended with a tombstone */
#define RI_BIG 0x80000000u    /* in nbytes: the record carries an ri_ext_t before the key */
#define RI_BIG_MIN 24         /* stream bytes above which a record gets its ri_ext_t */
#define RI_KLEN_MASK 0x7fffffffu
#define RI_CHUNK_MAX 512
#define RI_MAX_ENTRY 40 /* head 10 + flags 1 + sub 5 + created 10 + csub 5 + version 10 */

typedef struct {
    int64_t last_main;     /* newest revision's main: O(1) ordering checks and latest reads */
    uint32_t key_len;      /* low 31 bits: key length; RI_CLOSED flag */
    uint32_t nbytes;       /* low 31 bits: bytes used in the revision stream; RI_BIG flag */
    uint8_t last_len;      /* encoded length of the newest entry (its sub is read from there) */
    unsigned char data[];  /* [ri_ext_t when RI_BIG] key bytes, then the revision stream */
} ri_key_t;

/* The newest generation's created revision and newest version (big records only). Stored
 * unaligned after the 17-byte header: always accessed through memcpy. */
typedef struct {
    int64_t cmain;
    int64_t ver;
    int32_t csub;
    int32_t unused;
} ri_ext_t;

#define RI_KLEN(k) ((size_t)((k)->key_len & RI_KLEN_MASK))
#define RI_IS_BIG(k) (((k)->nbytes & RI_BIG) != 0)
#define RI_NB(k) ((size_t)((k)->nbytes & ~RI_BIG))
#define RI_EXTLEN(k) (RI_IS_BIG(k) ? sizeof(ri_ext_t) : 0)
#define RI_KEY(k) ((k)->data + RI_EXTLEN(k))
#define RI_STREAM(k) (RI_KEY(k) + RI_KLEN(k))
#define RI_PREFIX(k) (offsetof(ri_key_t, data) + RI_EXTLEN(k) + RI_KLEN(k)) /* bytes before stream */
#define RI_IS_CLOSED(k) (((k)->key_len & RI_CLOSED) != 0)

static inline void ri_set_nb(ri_key_t *k, size_t nb) {
    k->nbytes = (k->nbytes & RI_BIG) | (uint32_t)nb;
}

static inline ri_ext_t ri_ext_load(const ri_key_t *k) {
    ri_ext_t e;
    memcpy(&e, k->data, sizeof e);
    return e;
}

static inline void ri_ext_store(ri_key_t *k, const ri_ext_t *e) { memcpy(k->data, e, sizeof *e); }

typedef struct {
    uint32_t n, cap;
    ri_key_t *slots[];
} ri_chunk_t;

typedef struct {
    ri_chunk_t **chunks;
    size_t nchunks, cap;
    size_t nkeys;
} ri_tree_t;

/* ---------------------------------------------------------------- varints */

static inline unsigned char *ri_put_varint(unsigned char *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

static inline const unsigned char *ri_get_varint(const unsigned char *p, uint64_t *out) {
    uint64_t v = 0;
    int shift = 0;
    while (*p & 0x80) {
        v |= (uint64_t)(*p++ & 0x7f) << shift;
        shift += 7;
    }
    v |= (uint64_t)(*p++) << shift;
    *out = v;
    return p;
}

/* ---------------------------------------------------------------- decoding */

/* Sub revision of the newest entry, decoded from the stream's tail (its main is last_main). */
static inline int32_t ri_last_sub(const ri_key_t *k);


typedef struct {
    const unsigned char *p, *end;
    int64_t main;     /* current revision */
    int32_t sub;
    int flags;
    int gen_start;    /* current revision opens a generation */
    int64_t cmain;    /* created revision of the current generation */
    int32_t csub;
    int64_t ver;      /* version of the current revision */
    int prev_tomb;
} ri_dec_t;

static inline void ri_dec_init(ri_dec_t *d, const ri_key_t *k) {
    d->p = RI_STREAM(k);
    d->end = d->p + RI_NB(k);
    d->main = 0;
    d->prev_tomb = 1; /* the first entry opens a generation */
    d->ver = 0;
    d->cmain = 0;
    d->csub = 0;
}

/* Decode the next revision; 0 at the end of the stream. */
static inline int ri_dec_next(ri_dec_t *d) {
    uint64_t v;
    if (d->p >= d->end) return 0;
    d->p = ri_get_varint(d->p, &v);
    d->main += (int64_t)(v >> 1);
    d->flags = (v & 1) ? *d->p++ : 0;
    if (d->flags & RI_SUB) {
        d->p = ri_get_varint(d->p, &v);
        d->sub = (int32_t)v;
    } else {
        d->sub = 0;
    }
    d->gen_start = d->prev_tomb;
    if (d->flags & RI_GENHDR) {
        d->p = ri_get_varint(d->p, &v);
        d->cmain = (int64_t)v;
        d->p = ri_get_varint(d->p, &v);
        d->csub = (int32_t)v;
        d->p = ri_get_varint(d->p, &v);
        d->ver = (int64_t)v;
    } else if (d->gen_start) {
        d->cmain = d->main;
        d->csub = d->sub;
        d->ver = 1;
    } else {
        d->ver++;
    }
    d->prev_tomb = (d->flags & RI_TOMB) != 0;
    return 1;
}

static inline int32_t ri_last_sub(const ri_key_t *k) {
    const unsigned char *p = RI_STREAM(k) + RI_NB(k) - k->last_len;
    uint64_t v;
    int flags;
    if (k->last_len == 0) return 0;
    p = ri_get_varint(p, &v);
    flags = (v & 1) ? *p++ : 0;
    if (!(flags & RI_SUB)) return 0;
    ri_get_varint(p, &v);
    return (int32_t)v;
}

/* Recompute a big record's cache from its stream: the last entry's generation and version. */
static void ri_ext_refresh(ri_key_t *k) {
    ri_dec_t d;
    ri_ext_t e = {0, 0, 0, 0};
    ri_dec_init(&d, k);
    while (ri_dec_next(&d)) {
        e.cmain = d.cmain;
        e.csub = d.csub;
        e.ver = d.ver;
    }
    ri_ext_store(k, &e);
}

/* ---------------------------------------------------------------- encoding */

/* Encode one revision after `prev_main`; `gen_start` says whether it opens a generation, in
 * which case the created revision and version are written only when they differ from the
 * defaults of a fresh put. */
static inline unsigned char *ri_encode(unsigned char *p, int64_t prev_main, int64_t main,
                                       int32_t sub, int tomb, int gen_start, int64_t cmain,
                                       int32_t csub, int64_t ver) {
    int flags = 0;
    if (sub) flags |= RI_SUB;
    if (tomb) flags |= RI_TOMB;
    if (gen_start && (cmain != main || csub != sub || ver != 1)) flags |= RI_GENHDR;
    p = ri_put_varint(p, ((uint64_t)(main - prev_main) << 1) | (flags ? 1u : 0u));
    if (flags) *p++ = (unsigned char)flags;
    if (flags & RI_SUB) p = ri_put_varint(p, (uint64_t)sub);
    if (flags & RI_GENHDR) {
        p = ri_put_varint(p, (uint64_t)cmain);
        p = ri_put_varint(p, (uint64_t)csub);
        p = ri_put_varint(p, (uint64_t)ver);
    }
    return p;
}

static inline size_t ri_capacity(const ri_key_t *k) {
    return malloc_usable_size((void *)k) - RI_PREFIX(k);
}

static ri_key_t *ri_key_new(const unsigned char *key, size_t klen, size_t stream_cap) {
    ri_key_t *k = (ri_key_t *)malloc(offsetof(ri_key_t, data) + klen + stream_cap);
    if (!k) return NULL;
    k->last_main = 0;
    k->last_len = 0;
    k->key_len = (uint32_t)klen;
    k->nbytes = 0;
    memcpy(RI_KEY(k), key, klen);
    return k;
}

/* Append a revision to a record that is not (yet) in the index: only for a key's first entry.
 * *kp may move (realloc). gen_start/cmain/csub/ver as in ri_encode. Returns -1 on OOM. */
static int ri_append(ri_key_t **kp, int64_t main, int32_t sub, int tomb, int gen_start,
                     int64_t cmain, int32_t csub, int64_t ver) {
    ri_key_t *k = *kp;
    unsigned char buf[RI_MAX_ENTRY];
    size_t len = (size_t)(ri_encode(buf, RI_NB(k) ? k->last_main : 0, main, sub, tomb,
                                    gen_start, cmain, csub, ver) - buf);
    size_t need = RI_NB(k) + len;
    if (need > ri_capacity(k)) {
        ri_key_t *nk = (ri_key_t *)realloc(k, RI_PREFIX(k) + need);
        if (!nk) return -1;
        k = *kp = nk;
    }
    memcpy(RI_STREAM(k) + RI_NB(k), buf, len);
    ri_set_nb(k, need);
    k->last_main = main;
    k->last_len = (uint8_t)len;
    if (tomb)
        k->key_len |= RI_CLOSED;
    else
        k->key_len &= RI_KLEN_MASK;
    return 0;
}

/* ---------------------------------------------------------------- reads */

/* The key as of at_rev: the newest revision with main <= at_rev, unless it is a tombstone (the
 * stream is ordered across generations, so this is etcd's findGeneration + walk in one pass).
 * Returns 1 and fills the outputs when found. */
static int ri_get(const ri_key_t *k, int64_t at, int64_t *mmain, int32_t *msub, int64_t *cmain,
                  int32_t *csub, int64_t *ver) {
    ri_dec_t d;
    int found = 0;
    if (at >= k->last_main && RI_IS_BIG(k)) {
        ri_ext_t e;
        if (RI_IS_CLOSED(k)) return 0;
        e = ri_ext_load(k);
        *mmain = k->last_main;
        *msub = ri_last_sub(k);
        *cmain = e.cmain;
        *csub = e.csub;
        *ver = e.ver;
        return 1;
    }
    ri_dec_init(&d, k);
    while (ri_dec_next(&d)) {
        if (d.main > at) break;
        found = !(d.flags & RI_TOMB);
        *mmain = d.main;
        *msub = d.sub;
        *cmain = d.cmain;
        *csub = d.csub;
        *ver = d.ver;
    }
    return found;
}

/* Only the modified revision: O(1) when at_rev is at or above the key's newest revision. */
static inline int ri_get_mod(const ri_key_t *k, int64_t at, int64_t *mmain, int32_t *msub) {
    int64_t cm, v;
    int32_t cs;
    if (at >= k->last_main) {
        if (RI_IS_CLOSED(k)) return 0;
        *mmain = k->last_main;
        *msub = ri_last_sub(k);
        return 1;
    }
    return ri_get(k, at, mmain, msub, &cm, &cs, &v);
}

typedef struct {
    int64_t main;
    int32_t sub;
} ri_rev_t;

typedef struct {
    ri_rev_t *revs;
    size_t n, cap;
} ri_revbuf_t;

static int ri_revbuf_push(ri_revbuf_t *b, int64_t main, int32_t sub) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        ri_rev_t *r = (ri_rev_t *)realloc(b->revs, cap * sizeof(ri_rev_t));
        if (!r) return -1;
        b->revs = r;
        b->cap = cap;
    }
    b->revs[b->n].main = main;
    b->revs[b->n].sub = sub;
    b->n++;
    return 0;
}

/* Revisions with main >= rev; of several sharing one main only the last (the one a watcher
 * sees). Returns -1 on OOM. */
static int ri_since(const ri_key_t *k, int64_t rev, ri_revbuf_t *out) {
    ri_dec_t d;
    size_t first = out->n;
    if (k->last_main < rev) return 0;
    ri_dec_init(&d, k);
    while (ri_dec_next(&d)) {
        if (d.main < rev) continue;
        if (out->n > first && out->revs[out->n - 1].main == d.main) {
            out->revs[out->n - 1].sub = d.sub;
            continue;
        }
        if (ri_revbuf_push(out, d.main, d.sub)) return -1;
    }
    return 0;
}

static int ri_rev_cmp(const void *a, const void *b) {
    const ri_rev_t *x = (const ri_rev_t *)a, *y = (const ri_rev_t *)b;
    if (x->main != y->main) return x->main < y->main ? -1 : 1;
    return (x->sub > y->sub) - (x->sub < y->sub);
}

static void ri_sort_revs(ri_revbuf_t *b) { qsort(b->revs, b->n, sizeof(ri_rev_t), ri_rev_cmp); }

/* ---------------------------------------------------------------- compaction */

/* etcd v3.4 keyIndex.doCompact/compact/keep on one key.
 *
 * The generation kept is the first closed one whose tombstone is above at_rev, else the open
 * generation (if any). Inside it, the newest revision with main <= at_rev is "available" (kept in
 * the backend). Compaction drops everything before that revision (or before the generation when
 * none is <= at_rev); when nothing is left the key is empty.
 * Returns 1 with *avail filled when a revision is available, else 0; -1 on OOM (key untouched).
 * *empty tells whether compaction leaves nothing (the caller frees the key). With mutate != 0 the
 * stream is rewritten in place; the record may move when it grows or shrinks (*kp updated).
 */
static int ri_compact_key(ri_key_t **kp, int64_t at, int mutate, ri_rev_t *avail, int *empty) {
    ri_key_t *k = *kp;
    ri_dec_t d, before, gen_state, keep_state, start;
    int any = 0, have = 0, selected = 0, last_tomb = 0;
    long gen_len = 0, after_keep = 0, left;

    *empty = 0;
    ri_dec_init(&d, k);
    gen_state = keep_state = d;
    for (;;) {
        before = d;
        if (!ri_dec_next(&d)) break;
        if (d.gen_start) {
            if (selected) break; /* the selected generation ended with the previous entry */
            gen_state = before;
            have = 0;
            gen_len = 0;
            after_keep = 0;
        }
        any = 1;
        gen_len++;
        if (d.main <= at) {
            have = 1;
            keep_state = before;
            after_keep = 0;
        } else {
            after_keep++;
        }
        last_tomb = (d.flags & RI_TOMB) != 0;
        if (last_tomb && d.main > at) selected = 1;
    }
    if (!selected && (!any || last_tomb)) {
        *empty = 1; /* every generation ended at or before at_rev */
        return 0;
    }
    /* `selected` now names the last generation scanned: closed iff last_tomb */
    left = have ? after_keep + 1 : gen_len;
    start = have ? keep_state : gen_state;
    if (have) {
        ri_dec_t t = keep_state;
        ri_dec_next(&t);
        avail->main = t.main;
        avail->sub = t.sub;
    }
    if (last_tomb && left == 1) {
        /* a closed generation reduced to its lone tombstone goes too (etcd 3.4 rule; put,
         * tombstone and restore never build one, a closed generation has >= 2 revisions) */
        have = 0;
        ri_dec_next(&start);
        if (start.p >= RI_STREAM(k) + RI_NB(k)) {
            *empty = 1;
            return 0;
        }
    }
    if (!mutate || start.p == RI_STREAM(k)) return have;
    {
        /* rewrite from `start`: its first entry opens the stream, with an explicit generation
         * header when its created revision/version are not those of a fresh put. Entries after
         * the first encode exactly as before, so the new stream is at most RI_MAX_ENTRY longer
         * than the kept suffix. */
        unsigned char stack[256], *buf = stack, *w;
        size_t cap = ri_capacity(k), len;
        size_t bound = (size_t)(RI_STREAM(k) + RI_NB(k) - start.p) + RI_MAX_ENTRY;
        int64_t prev = 0;
        int first = 1;
        size_t last_len = 0;
        if (bound > sizeof(stack) && !(buf = (unsigned char *)malloc(bound))) return -1;
        w = buf;
        while (ri_dec_next(&start)) {
            unsigned char *e = w;
            w = ri_encode(w, prev, start.main, start.sub, start.flags & RI_TOMB,
                          first || start.gen_start, start.cmain, start.csub, start.ver);
            last_len = (size_t)(w - e);
            prev = start.main;
            first = 0;
        }
        len = (size_t)(w - buf);
        if (len > cap) {
            ri_key_t *nk = (ri_key_t *)realloc(k, RI_PREFIX(k) + len);
            if (!nk) {
                if (buf != stack) free(buf);
                return -1;
            }
            k = *kp = nk;
        }
        memcpy(RI_STREAM(k), buf, len);
        ri_set_nb(k, len);
        k->last_len = (uint8_t)last_len; /* the newest entry may have been re-encoded */
        if (buf != stack) free(buf);
        if (RI_IS_BIG(k)) {
            if (len <= RI_BIG_MIN) {
                /* short history again: drop the cache, back to the compact layout */
                memmove(k->data, k->data + sizeof(ri_ext_t), RI_KLEN(k) + len);
                k->nbytes &= ~RI_BIG;
                cap += sizeof(ri_ext_t);
            } else {
                ri_ext_refresh(k);
            }
        }
        /* give memory back once at least one malloc size class (16 bytes) went unused; glibc's
         * realloc keeps a chunk whose surplus is under 32 bytes, so move to a fresh one */
        if (cap >= len + 16) {
            ri_key_t *nk = (ri_key_t *)malloc(RI_PREFIX(k) + len);
            if (nk) {
                memcpy(nk, k, RI_PREFIX(k) + len);
                free(k);
                *kp = nk;
            }
        }
    }
    return have;
}

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

#endif /* FASTKV_REVINDEX_H */
