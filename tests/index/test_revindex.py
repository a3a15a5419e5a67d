"""Unit tests of the revision index, over the compiled module and its pure-Python twin.

The expected values are worked out by hand from etcd v3.4's keyIndex semantics (the reference etcd
on this machine is 3.4.23): generations, versions, tombstones, compaction and keep.
"""
from __future__ import annotations

import pytest

from tests.conftest import native_and_twin

impl = native_and_twin("revindex")

NF = object()  # "RevisionNotFoundError expected"


def history(idx):
    """The key b"foo" of etcd's classic keyIndex test fixture:

        {2.0, 4.0, 6.0(t)}  {8.0, 10.0, 12.0(t)}  {14.0, 14.1, 16.0(t)}  {empty}
    """
    idx.put(b"foo", 2, 0)
    idx.put(b"foo", 4, 0)
    idx.tombstone(b"foo", 6, 0)
    idx.put(b"foo", 8, 0)
    idx.put(b"foo", 10, 0)
    idx.tombstone(b"foo", 12, 0)
    idx.put(b"foo", 14, 0)
    idx.put(b"foo", 14, 1)
    idx.tombstone(b"foo", 16, 0)
    return idx


GET_AT = {
    0: NF, 1: NF,
    2: ((2, 0), (2, 0), 1), 3: ((2, 0), (2, 0), 1),
    4: ((4, 0), (2, 0), 2), 5: ((4, 0), (2, 0), 2),
    6: NF, 7: NF,
    8: ((8, 0), (8, 0), 1), 9: ((8, 0), (8, 0), 1),
    10: ((10, 0), (8, 0), 2), 11: ((10, 0), (8, 0), 2),
    12: NF, 13: NF,
    14: ((14, 1), (14, 0), 2), 15: ((14, 1), (14, 0), 2),
    16: NF, 17: NF, 100: NF,
}


def check_get(idx, key, at, want):
    if want is NF:
        with pytest.raises(impl_error(idx)):
            idx.get(key, at)
    else:
        assert idx.get(key, at) == want, at


def impl_error(idx):
    import sys

    return sys.modules[type(idx).__module__].RevisionNotFoundError


def test_exports(impl):
    assert issubclass(impl.RevisionNotFoundError, KeyError)
    assert len(impl.TreeIndex()) == 0


@pytest.mark.parametrize("at", sorted(GET_AT))
def test_get_across_generations(impl, at):
    idx = history(impl.TreeIndex())
    check_get(idx, b"foo", at, GET_AT[at])


def test_get_missing_key(impl):
    idx = history(impl.TreeIndex())
    with pytest.raises(impl.RevisionNotFoundError):
        idx.get(b"fo", 20)
    with pytest.raises(KeyError):  # callers may catch the base class
        idx.get(b"fooo", 20)


def test_since_dedups_sub_revisions(impl):
    idx = history(impl.TreeIndex())
    all_revs = [(2, 0), (4, 0), (6, 0), (8, 0), (10, 0), (12, 0), (14, 1), (16, 0)]
    assert idx.range_since(b"foo", None, 1) == all_revs
    assert idx.range_since(b"foo", None, 7) == all_revs[3:]
    assert idx.range_since(b"foo", None, 14) == [(14, 1), (16, 0)]
    assert idx.range_since(b"foo", None, 17) == []
    assert idx.range_since(b"nope", None, 1) == []


def test_tombstone_errors(impl):
    idx = impl.TreeIndex()
    with pytest.raises(impl.RevisionNotFoundError):
        idx.tombstone(b"a", 1, 0)
    idx.put(b"a", 2, 0)
    idx.tombstone(b"a", 3, 0)
    with pytest.raises(impl.RevisionNotFoundError):  # last generation already closed
        idx.tombstone(b"a", 4, 0)
    assert len(idx) == 1  # a deleted key is still held until compaction
    idx.put(b"a", 5, 0)
    assert idx.get(b"a", 5) == ((5, 0), (5, 0), 1)


def test_out_of_order_revisions_rejected(impl):
    idx = impl.TreeIndex()
    idx.put(b"a", 5, 1)
    before = idx.dump()
    for main, sub in [(5, 1), (5, 0), (4, 9)]:
        with pytest.raises(ValueError):
            idx.put(b"a", main, sub)
        with pytest.raises(ValueError):
            idx.tombstone(b"a", main, sub)
    for main, sub in [(0, 0), (-1, 0), (6, -1), (1 << 63, 0), (6, 1 << 31)]:
        with pytest.raises((ValueError, OverflowError)):
            idx.put(b"b", main, sub)
    assert idx.dump() == before
    idx.put(b"a", 5, 2)
    assert idx.get(b"a", 5) == ((5, 2), (5, 1), 2)


def test_large_revisions_and_keys(impl):
    idx = impl.TreeIndex()
    big = (1 << 63) - 1
    key = bytes(range(256)) * 300  # 76800 bytes, every byte value, NULs included
    idx.put(key, big - 1, (1 << 31) - 1)
    idx.put(key, big, 0)
    assert idx.get(key, big) == ((big, 0), (big - 1, (1 << 31) - 1), 2)
    assert idx.range(key[:-1], b"", big) == ([key], [(big, 0)])
    idx.put(b"\x00", 1, 0)
    idx.put(b"", 1, 1)  # the empty key is a key like any other
    assert idx.range(b"", b"\x01", 1) == ([b"", b"\x00"], [(1, 1), (1, 0)])


def test_restore_then_continue(impl):
    idx = impl.TreeIndex()
    idx.restore(b"k", 3, 7, 2, 5)
    assert idx.get(b"k", 7) == ((7, 2), (3, 0), 5)
    with pytest.raises(impl.RevisionNotFoundError):
        idx.get(b"k", 6)
    idx.put(b"k", 9, 0)
    assert idx.get(b"k", 9) == ((9, 0), (3, 0), 6)
    assert idx.get(b"k", 8) == ((7, 2), (3, 0), 5)
    with pytest.raises(ValueError):  # a live generation cannot be restored over
        idx.restore(b"k", 9, 10, 0, 1)
    idx.tombstone(b"k", 10, 0)
    with pytest.raises(impl.RevisionNotFoundError):
        idx.get(b"k", 10)
    idx.restore(b"k", 11, 12, 0, 2)  # after a deletion it starts a new generation
    assert idx.get(b"k", 12) == ((12, 0), (11, 0), 2)
    assert idx.range_since(b"k", None, 0) == [(7, 2), (9, 0), (10, 0), (12, 0)]
    with pytest.raises(ValueError):
        idx.restore(b"z", 5, 4, 0, 1)  # created after modified


# compact(rev) on the fixture: (available, generations left as dump() shows them)
COMPACT = {
    1: (set(), [((2, 0), 1, [(2, 0), (4, 0), (6, 0)], True),
                ((8, 0), 1, [(8, 0), (10, 0), (12, 0)], True),
                ((14, 0), 1, [(14, 0), (14, 1), (16, 0)], True)]),
    2: ({(2, 0)}, None),
    3: ({(2, 0)}, None),
    4: ({(4, 0)}, [((2, 0), 2, [(4, 0), (6, 0)], True),
                   ((8, 0), 1, [(8, 0), (10, 0), (12, 0)], True),
                   ((14, 0), 1, [(14, 0), (14, 1), (16, 0)], True)]),
    5: ({(4, 0)}, None),
    6: (set(), [((8, 0), 1, [(8, 0), (10, 0), (12, 0)], True),
                ((14, 0), 1, [(14, 0), (14, 1), (16, 0)], True)]),
    7: (set(), None),
    8: ({(8, 0)}, None),
    10: ({(10, 0)}, [((8, 0), 2, [(10, 0), (12, 0)], True),
                     ((14, 0), 1, [(14, 0), (14, 1), (16, 0)], True)]),
    11: ({(10, 0)}, None),
    12: (set(), [((14, 0), 1, [(14, 0), (14, 1), (16, 0)], True)]),
    13: (set(), None),
    14: ({(14, 1)}, [((14, 0), 2, [(14, 1), (16, 0)], True)]),
    15: ({(14, 1)}, None),
    16: (set(), []),  # tombstone at the compaction revision: dropped (etcd 3.4), key removed
    17: (set(), []),
}


@pytest.mark.parametrize("rev", sorted(COMPACT))
def test_compact_and_keep_match_etcd(impl, rev):
    want_available, want_gens = COMPACT[rev]
    idx = history(impl.TreeIndex())
    before = idx.dump()
    assert idx.keep(rev) == want_available
    assert idx.dump() == before  # keep never modifies
    assert idx.compact(rev) == want_available
    if want_gens is not None:
        assert idx.dump() == ([(b"foo", want_gens)] if want_gens else [])
    assert len(idx) == (1 if want_gens != [] else 0)
    # reads at or after the compaction revision are unchanged
    for at in range(rev, 18):
        check_get(idx, b"foo", at, GET_AT[at])


def test_compact_progressively(impl):
    """Compacting step by step ends where one big compaction ends, reads above stay stable."""
    idx = history(impl.TreeIndex())
    for rev in range(1, 18):
        want_available = COMPACT[rev][0] if rev in COMPACT else None
        got = idx.compact(rev)
        if want_available is not None:
            assert got == want_available, rev
        for at in range(rev, 18):
            check_get(idx, b"foo", at, GET_AT[at])
    assert len(idx) == 0


def test_compact_open_generation_and_multiple_keys(impl):
    idx = impl.TreeIndex()
    idx.put(b"a", 1, 0)
    idx.put(b"b", 2, 0)
    idx.put(b"a", 3, 0)
    idx.tombstone(b"b", 4, 0)
    idx.put(b"c", 5, 0)
    idx.put(b"a", 6, 0)
    assert idx.keep(4) == {(3, 0)}  # b's generation ended at 4: gone; c born after 4
    assert idx.compact(4) == {(3, 0)}
    assert len(idx) == 2
    assert idx.range(b"", b"", 6) == ([b"a", b"c"], [(6, 0), (5, 0)])
    assert idx.get(b"a", 4) == ((3, 0), (1, 0), 2)
    assert idx.compact(6) == {(6, 0), (5, 0)}
    assert idx.dump() == [(b"a", [((1, 0), 3, [(6, 0)], False)]), (b"c", [((5, 0), 1, [(5, 0)], False)])]


def build_range_fixture(impl):
    idx = impl.TreeIndex()
    for i, k in enumerate([b"a", b"b", b"ba", b"c", b"d", b"e"]):
        idx.put(k, i + 1, 0)  # a:1 b:2 ba:3 c:4 d:5 e:6
    idx.tombstone(b"c", 7, 0)
    idx.put(b"a", 8, 0)
    idx.put(b"a", 8, 1)
    idx.put(b"b", 8, 2)
    return idx


def test_revisions_range_count(impl):
    idx = build_range_fixture(impl)
    assert idx.revisions(b"a", b"", 8) == ([(8, 1), (8, 2), (3, 0), (5, 0), (6, 0)], 5)
    assert idx.revisions(b"a", b"", 8, 2) == ([(8, 1), (8, 2)], 5)
    assert idx.revisions(b"a", b"", 6, 0) == ([(1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0)], 6)
    assert idx.revisions(b"b", b"c", 8) == ([(8, 2), (3, 0)], 2)
    assert idx.revisions(b"b", b"d", 6) == ([(2, 0), (3, 0), (4, 0)], 3)
    assert idx.revisions(b"b", b"d", 7) == ([(2, 0), (3, 0)], 2)
    assert idx.revisions(b"c", None, 6) == ([(4, 0)], 1)
    assert idx.revisions(b"c", None, 7) == ([], 0)
    assert idx.revisions(b"zz", None, 7) == ([], 0)
    assert idx.revisions(b"d", b"b", 7) == ([], 0)  # end below key: empty
    assert idx.revisions(b"a", b"", 0) == ([], 0)
    assert idx.count_revisions(b"a", b"", 8) == 5
    assert idx.count_revisions(b"b", b"d", 6) == 3
    assert idx.count_revisions(b"c", None, 7) == 0
    assert idx.count_revisions(b"c", None, 6) == 1
    assert idx.range(b"b", b"e", 8) == ([b"b", b"ba", b"d"], [(8, 2), (3, 0), (5, 0)])
    assert idx.range(b"a", None, 8) == ([b"a"], [(8, 1)])
    assert idx.range(b"c", None, 8) == ([], [])
    assert idx.range(b"", b"", 1) == ([b"a"], [(1, 0)])


def test_range_since_sorted_across_keys(impl):
    idx = build_range_fixture(impl)
    assert idx.range_since(b"a", b"", 4) == [(4, 0), (5, 0), (6, 0), (7, 0), (8, 1), (8, 2)]
    assert idx.range_since(b"b", b"c", 1) == [(2, 0), (3, 0), (8, 2)]
    assert idx.range_since(b"c", b"d", 1) == [(4, 0), (7, 0)]
    assert idx.range_since(b"a", b"", 9) == []


def test_compaction_frees_keys_and_len(impl):
    idx = impl.TreeIndex()
    n = 3000  # enough keys to fill several storage chunks in the compiled version
    for i in range(n):
        idx.put(b"key%06d" % i, i + 1, 0)
    for i in range(0, n, 2):
        idx.tombstone(b"key%06d" % i, n + 1 + i, 0)
    assert len(idx) == n
    assert idx.count_revisions(b"", b"", 2 * n) == n // 2
    avail = idx.compact(2 * n)
    assert len(idx) == n // 2
    assert avail == {(i + 1, 0) for i in range(1, n, 2)}
    keys, revs = idx.range(b"", b"", 2 * n)
    assert keys == [b"key%06d" % i for i in range(1, n, 2)]
    assert idx.compact(2 * n + 1) == avail
    for i in range(1, n, 2):
        idx.tombstone(b"key%06d" % i, 3 * n + i, 0)
    assert idx.compact(4 * n) == set()
    assert len(idx) == 0 and idx.range(b"", b"", 4 * n) == ([], [])


def test_hot_key_long_history(impl):
    """One key with thousands of revisions over several generations (the compiled side switches
    such records to its cached layout): every historical read, then compaction step by step."""
    idx = impl.TreeIndex()
    expect = {}  # at_rev -> get() result
    main, created, version = 0, None, 0
    for gen in range(4):
        for i in range(700):
            main += 1
            sub = i % 3
            if i == 0 and gen == 2:
                idx.restore(b"hot", main, main, sub, 40)
                created, version = (main, 0), 40
            else:
                idx.put(b"hot", main, sub)
                if i == 0:
                    created, version = (main, sub), 1
                else:
                    version += 1
            expect[main] = ((main, sub), created, version)
            assert idx.get(b"hot", main) == expect[main]  # the newest revision: the fast path
        if gen != 3:
            main += 1
            idx.tombstone(b"hot", main, 0)
            expect[main] = NF
    idx.put(b"other", main + 1, 0)
    assert idx.range_since(b"hot", None, main - 1) == [(main - 1, (699 - 1) % 3), (main, 699 % 3)]
    for at in range(0, main + 3):
        check_get(idx, b"hot", at, expect.get(at, NF if at < 1 else expect[max(r for r in expect if r <= at)]))
    for rev in (350, 701, 702, 1500, 2000, main, main + 1):
        idx.compact(rev)
        for at in range(rev, main + 2, 7):
            want = expect.get(at) or expect[max(r for r in expect if r <= at)]
            check_get(idx, b"hot", at, want)
    assert idx.range_since(b"hot", None, 0) == [(main, 699 % 3)]
    assert idx.dump()[0] == (b"hot", [(created, version, [(main, 699 % 3)], False)])


def test_keys_must_be_bytes_like(impl):
    idx = impl.TreeIndex()
    with pytest.raises(TypeError):
        idx.put(5, 1, 0)  # bytes(5) would silently mean five NUL bytes
    with pytest.raises(TypeError):
        idx.put("text", 1, 0)
    idx.put(bytearray(b"ba"), 1, 0)
    idx.put(memoryview(b"mv"), 2, 0)
    assert idx.range(b"", b"", 2) == ([b"ba", b"mv"], [(1, 0), (2, 0)])
    assert idx.get(bytearray(b"mv"), 2) == ((2, 0), (2, 0), 1)


def test_reentry_during_a_scan_is_refused_not_corrupting(impl):
    """A garbage-collector callback that runs while range() allocates its result and calls back
    into the index gets RuntimeError from the compiled index (its C storage is being walked); the
    twin (plain Python containers) simply serves it. Either way the index stays intact."""
    import gc

    idx = impl.TreeIndex()
    for i in range(2000):
        idx.put(b"k%05d" % i, i + 1, 0)
    seen = []

    def reenter(phase, info):
        if phase == "start" and len(seen) < 3:
            try:
                idx.put(b"k00000", 10_000 + len(seen), 0)
                seen.append("ok")
            except RuntimeError:
                seen.append("refused")

    threshold = gc.get_threshold()
    gc.callbacks.append(reenter)
    gc.set_threshold(1)
    try:
        keys, revs = idx.range(b"", b"", 5000)
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(reenter)
    assert len(keys) == 2000 and len(seen) == 3
    compiled = type(idx).__module__.endswith("revindex")
    assert set(seen) == ({"refused"} if compiled else {"ok"}), seen
    assert idx.get(b"k00000", 20_000)[0] == ((1, 0) if compiled else (10_002, 0))
    idx.put(b"k00000", 30_000, 0)  # usable again once the scan is over
    assert idx.count_revisions(b"", b"", 30_000) == 2000
