"""Compaction gives memory back: the compiled index's C allocations (glibc mallinfo2, a byte count,
not a time) shrink with the keys and revisions it drops."""
from __future__ import annotations

from fastkv._native import load
from fastkv.bench.index_memory import _malloc_in_use

native = load("revindex", pure=False)


def test_compaction_frees_records_chunks_and_hash_table():
    n = 100_000
    keys = [b"/registry/pods/%08d" % ((i * 7919) % n) for i in range(n)]
    base = _malloc_in_use()  # after the key list, which lives in malloc'd memory too
    idx = native.TreeIndex()
    rev = 0
    for _ in range(8):  # eight versions: records grow and switch to the cached layout
        for k in keys:
            rev += 1
            idx.put(k, rev, 0)
    full = _malloc_in_use() - base
    assert full > n * 40  # sanity: the index really is in these allocations

    idx.compact(rev)  # one version per key is left (its record now names created and version)
    one_version = _malloc_in_use() - base
    # each record moves down at least one 16-byte malloc size class (about 13 bytes/key measured)
    assert full - one_version > 8 * n, (one_version, full)

    for k in keys[: n // 2]:
        rev += 1
        idx.tombstone(k, rev, 0)
    idx.compact(rev)  # half of the keys are gone
    assert len(idx) == n // 2
    half = _malloc_in_use() - base
    assert half < 0.6 * one_version, (half, one_version)

    for k in keys[n // 2:]:
        rev += 1
        idx.tombstone(k, rev, 0)
    idx.compact(rev)
    assert len(idx) == 0
    assert _malloc_in_use() - base < 0.02 * full, (_malloc_in_use() - base, full)
