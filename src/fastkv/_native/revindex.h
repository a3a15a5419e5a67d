/* Compact C storage for the revision index (see revindex.pyx for the Python face): records
 * and their revision streams here, ordered storage and hash lookups in revindex_tree.h.
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

#include "revindex_tree.h"

#endif /* FASTKV_REVINDEX_H */
