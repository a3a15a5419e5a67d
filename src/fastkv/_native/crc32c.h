/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) for fastkv.
 *
 * Two paths with one contract, fastkv_crc32c_update(crc, p, n):
 *   - the SSE4.2 `crc32` instruction, eight bytes per step, compiled with a target attribute so the
 *     rest of the module needs no -msse4.2 and still runs on CPUs without it;
 *   - a slicing-by-8 table fallback, chosen at run time when __builtin_cpu_supports says no.
 * `crc` is the finished value of the previous chunk (0 to start), so
 * update(update(0, a), b) == update(0, a + b): the WAL chains records this way.
 *
 * Everything is static: each extension that includes this header gets its own copy (the table is
 * 8 KiB), which keeps the modules independent of each other at import time.
 */
#ifndef FASTKV_CRC32C_H
#define FASTKV_CRC32C_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fastkv's CRC-32C and WAL codec assume a little-endian host"
#endif

#define FASTKV_CRC32C_POLY 0x82F63B78u

static uint32_t fastkv_crc32c_table[8][256];
static int fastkv_crc32c_ready = 0;
static int fastkv_crc32c_hw = 0;

static void fastkv_crc32c_init(void) {
    if (fastkv_crc32c_ready)
        return;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ FASTKV_CRC32C_POLY : c >> 1;
        fastkv_crc32c_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = fastkv_crc32c_table[0][i];
        for (int t = 1; t < 8; t++) {
            c = fastkv_crc32c_table[0][c & 0xff] ^ (c >> 8);
            fastkv_crc32c_table[t][i] = c;
        }
    }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    fastkv_crc32c_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
    fastkv_crc32c_ready = 1;
}

/* Raw (pre/post-inverted by the caller) slicing-by-8 update. */
static uint32_t fastkv_crc32c_sw_raw(uint32_t c, const unsigned char *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) {
        c = fastkv_crc32c_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        /* little-endian hosts only (x86-64, aarch64); the WAL format is little-endian too */
        uint32_t lo = (uint32_t)w ^ c;
        uint32_t hi = (uint32_t)(w >> 32);
        c = fastkv_crc32c_table[7][lo & 0xff] ^ fastkv_crc32c_table[6][(lo >> 8) & 0xff] ^
            fastkv_crc32c_table[5][(lo >> 16) & 0xff] ^ fastkv_crc32c_table[4][lo >> 24] ^
            fastkv_crc32c_table[3][hi & 0xff] ^ fastkv_crc32c_table[2][(hi >> 8) & 0xff] ^
            fastkv_crc32c_table[1][(hi >> 16) & 0xff] ^ fastkv_crc32c_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = fastkv_crc32c_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
__attribute__((target("sse4.2")))
static uint32_t fastkv_crc32c_hw_raw(uint32_t c, const unsigned char *p, size_t n) {
    uint64_t c64 = c;
    while (n && ((uintptr_t)p & 7)) {
        c64 = _mm_crc32_u8((uint32_t)c64, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c64 = _mm_crc32_u64(c64, w);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n--)
        c = _mm_crc32_u8(c, *p++);
    return c;
}
#define FASTKV_CRC32C_HAVE_HW 1
#else
#define FASTKV_CRC32C_HAVE_HW 0
static uint32_t fastkv_crc32c_hw_raw(uint32_t c, const unsigned char *p, size_t n) {
    return fastkv_crc32c_sw_raw(c, p, n);
}
#endif

static inline uint32_t fastkv_crc32c_update(uint32_t crc, const unsigned char *p, size_t n) {
    uint32_t c = ~crc;
    c = fastkv_crc32c_hw ? fastkv_crc32c_hw_raw(c, p, n) : fastkv_crc32c_sw_raw(c, p, n);
    return ~c;
}

static inline uint32_t fastkv_crc32c_update_sw(uint32_t crc, const unsigned char *p, size_t n) {
    return ~fastkv_crc32c_sw_raw(~crc, p, n);
}

#endif /* FASTKV_CRC32C_H */
