"""Seeded randomized comparison of the compiled index with its twin at a scale the hypothesis tests
do not reach: thousands of keys, so the compiled side splits and sweeps its sorted chunks, grows
and rebuilds its hash table, and rewrites records in compaction. Deterministic (fixed seeds).
"""
from __future__ import annotations

import random

import pytest

from fastkv._native import load

native = load("revindex", pure=False)
twin = load("revindex", pure=True)


def random_key(rng: random.Random, nkeys: int) -> bytes:
    i = rng.randrange(nkeys)
    # shared prefixes, varied lengths, and a few binary keys
    if i % 7 == 0:
        return bytes([i % 256, (i // 256) % 256, 0, 255])[: 1 + i % 4]
    return b"/registry/%s/%d" % (b"pods" if i % 2 else b"leases", i)


def pick_end(rng: random.Random, key: bytes, nkeys: int):
    """Mostly short ranges (the twin scans in Python), sometimes open-ended or arbitrary."""
    r = rng.random()
    if r < 0.4:
        return None
    if r < 0.9:
        return key + b"\x05"  # the key and its few extensions (/registry/pods/1 -> .../1\x05)
    if r < 0.93:
        return b""
    return random_key(rng, nkeys)


def same(a, b, name, *args):
    try:
        ra = ("ok", getattr(a, name)(*args))
    except (KeyError, ValueError) as exc:
        ra = ("raise", type(exc).__name__)
    try:
        rb = ("ok", getattr(b, name)(*args))
    except (KeyError, ValueError) as exc:
        rb = ("raise", type(exc).__name__)
    assert ra == rb, (name, args)
    return ra


@pytest.mark.parametrize("seed,nkeys,nops", [(1, 3000, 20000), (2, 300, 10000), (3, 20000, 30000)])
def test_large_random_history(seed, nkeys, nops):
    rng = random.Random(seed)
    a, b = native.TreeIndex(), twin.TreeIndex()
    main, compacted = 1, 0
    for step in range(nops):
        r = rng.random()
        key = random_key(rng, nkeys)
        if r < 0.55:
            main += 1
            same(a, b, "put", key, main, rng.choice((0, 0, 0, 1)))
        elif r < 0.70:
            main += 1
            same(a, b, "tombstone", key, main, 0)
        elif r < 0.72:
            main += 1
            same(a, b, "restore", key, rng.randint(max(1, main - 50), main), main, 0, rng.randint(1, 9))
        elif r < 0.85:
            same(a, b, "get", key, rng.randint(compacted, main))
        elif r < 0.95:
            end = pick_end(rng, key, nkeys)
            at = rng.randint(compacted, main)
            same(a, b, "revisions", key, end, at, rng.choice((0, 1, 5, 100)))
            same(a, b, "range_since", key, end, rng.randint(compacted + 1, main + 1))
        else:
            same(a, b, "count_revisions", key, pick_end(rng, key, nkeys), rng.randint(compacted, main))
        if step % (nops // 10) == nops // 20:  # ~10 compactions per test (each walks every key)
            compacted = rng.randint(compacted, main)
            same(a, b, "keep", compacted)
            same(a, b, "compact", compacted)
            assert len(a) == len(b)
    assert len(a) == len(b)
    for at in (compacted, (compacted + main) // 2, main):
        same(a, b, "range", b"", b"", at)
    same(a, b, "range_since", b"", b"", compacted + 1)
    assert a.dump() == b.dump()
    same(a, b, "compact", main)
    assert a.dump() == b.dump()
