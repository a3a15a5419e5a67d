"""MVCC semantics (etcd 3.4): revisions, versions, ranges, txns, compaction and errors."""
from __future__ import annotations

import pytest

from fastkv.backend import KEY, open_backend
from fastkv.errors import (
    ErrCompacted, ErrDuplicateKey, ErrEmptyKey, ErrFutureRev, ErrKeyNotFound, ErrLeaseProvided, ErrNoSpace,
    ErrTooManyOps, ErrValueProvided,
)
from fastkv.mvcc import (
    Compare, CompareResult as R, CompareTarget as T, DeleteOp, KVStore, PutOp, RangeOp, SortOrder, SortTarget, TxnOp,
)


def kvs(res):
    return [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version) for kv in res.kvs]


def test_fresh_store_is_at_revision_one(store):
    assert store.current_revision == 1
    res = store.range(RangeOp(b"a"))
    assert (res.kvs, res.count, res.more, res.revision) == ([], 0, False, 1)


def test_put_versions_and_revisions(store):
    assert store.put(PutOp(b"a", b"1")).revision == 2
    assert store.put(PutOp(b"a", b"2")).revision == 3
    assert store.put(PutOp(b"b", b"x")).revision == 4
    assert kvs(store.range(RangeOp(b"a"))) == [(b"a", b"2", 2, 3, 2)]
    assert kvs(store.range(RangeOp(b"a", revision=2))) == [(b"a", b"1", 2, 2, 1)]
    # delete resets version; re-create starts a new life
    d = store.delete_range(DeleteOp(b"a"))
    assert (d.revision, d.deleted) == (5, 1)
    assert store.range(RangeOp(b"a")).kvs == []
    store.put(PutOp(b"a", b"3"))
    assert kvs(store.range(RangeOp(b"a"))) == [(b"a", b"3", 6, 6, 1)]


def test_delete_of_nothing_does_not_bump_revision(store):
    store.put(PutOp(b"a", b"1"))
    d = store.delete_range(DeleteOp(b"zzz"))
    assert (d.revision, d.deleted) == (2, 0)
    assert store.current_revision == 2


def test_range_ends_prefix_from_key_and_all(store):
    for k in (b"a", b"ab", b"abc", b"b", b"c"):
        store.put(PutOp(k, k))
    keys = lambda r: [kv.key for kv in r.kvs]  # noqa: E731
    assert keys(store.range(RangeOp(b"ab", b"b"))) == [b"ab", b"abc"]
    assert keys(store.range(RangeOp(b"ab", b"\x00"))) == [b"ab", b"abc", b"b", b"c"]
    assert keys(store.range(RangeOp(b"\x00", b"\x00"))) == [b"a", b"ab", b"abc", b"b", b"c"]
    assert keys(store.range(RangeOp(b"c", b"a"))) == []  # end before key
    r = store.range(RangeOp(b"a", b"\x00", limit=2))
    assert (keys(r), r.count, r.more) == ([b"a", b"ab"], 5, True)
    r = store.range(RangeOp(b"a", b"\x00", limit=5))
    assert (r.count, r.more) == (5, False)
    r = store.range(RangeOp(b"a", b"\x00", count_only=True))
    assert (r.kvs, r.count) == ([], 5)
    r = store.range(RangeOp(b"a", b"\x00", keys_only=True, limit=1))
    assert [(kv.key, kv.value) for kv in r.kvs] == [(b"a", b"")]


def test_sort_and_filters(store):
    store.put(PutOp(b"a", b"z"))   # rev 2
    store.put(PutOp(b"b", b"y"))   # rev 3
    store.put(PutOp(b"c", b"x"))   # rev 4
    store.put(PutOp(b"a", b"w"))   # rev 5, a: version 2
    all_ = RangeOp(b"a", b"\x00")
    keys = lambda **o: [kv.key for kv in store.range(RangeOp(b"a", b"\x00", **o)).kvs]  # noqa: E731
    assert keys(sort_order=SortOrder.DESCEND) == [b"c", b"b", b"a"]
    assert keys(sort_target=SortTarget.VALUE) == [b"a", b"c", b"b"]  # target alone sorts ascending
    assert keys(sort_target=SortTarget.MOD, sort_order=SortOrder.DESCEND) == [b"a", b"c", b"b"]
    assert keys(sort_target=SortTarget.CREATE, sort_order=SortOrder.ASCEND) == [b"a", b"b", b"c"]
    assert keys(sort_target=SortTarget.VERSION, sort_order=SortOrder.DESCEND)[0] == b"a"
    assert keys(min_mod_revision=4) == [b"a", b"c"]
    assert keys(max_mod_revision=3) == [b"b"]
    assert keys(min_create_revision=3, max_create_revision=3) == [b"b"]
    r = store.range(RangeOp(b"a", b"\x00", sort_order=SortOrder.DESCEND, limit=2))
    assert ([kv.key for kv in r.kvs], r.count, r.more) == ([b"c", b"b"], 3, True)
    r = store.range(RangeOp(b"a", b"\x00", min_mod_revision=4, limit=1))
    assert ([kv.key for kv in r.kvs], r.count, r.more) == ([b"a"], 3, True)  # count ignores filters
    assert store.range(all_).count == 3


def test_put_options(store):
    r = store.put(PutOp(b"a", b"1", lease=7))
    assert r.prev_kv is None
    r = store.put(PutOp(b"a", b"2", prev_kv=True))
    assert (r.prev_kv.value, r.prev_kv.lease) == (b"1", 7)
    assert store.range(RangeOp(b"a")).kvs[0].lease == 0
    store.put(PutOp(b"a", b"3", lease=9))
    store.put(PutOp(b"a", ignore_value=True, lease=11))
    kv = store.range(RangeOp(b"a")).kvs[0]
    assert (kv.value, kv.lease, kv.version) == (b"3", 11, 4)
    store.put(PutOp(b"a", b"4", ignore_lease=True))
    kv = store.range(RangeOp(b"a")).kvs[0]
    assert (kv.value, kv.lease) == (b"4", 11)
    with pytest.raises(ErrKeyNotFound):
        store.put(PutOp(b"missing", ignore_value=True))
    with pytest.raises(ErrValueProvided):
        store.put(PutOp(b"a", b"v", ignore_value=True))
    with pytest.raises(ErrLeaseProvided):
        store.put(PutOp(b"a", b"v", lease=3, ignore_lease=True))
    with pytest.raises(ErrEmptyKey) as e:
        store.put(PutOp(b"", b"v"))
    assert str(e.value) == "etcdserver: key is not provided" and e.value.code == "INVALID_ARGUMENT"
    assert store.current_revision == 6  # rejected requests changed nothing


def test_delete_prev_kvs_and_range(store):
    for k in (b"a", b"b", b"c"):
        store.put(PutOp(k, k * 2))
    d = store.delete_range(DeleteOp(b"a", b"c", prev_kv=True))
    assert d.deleted == 2 and [kv.key for kv in d.prev_kvs] == [b"a", b"b"] and d.revision == 5
    assert [kv.key for kv in store.range(RangeOp(b"a", b"\x00")).kvs] == [b"c"]
    assert store.delete_range(DeleteOp(b"\x00", b"\x00")).deleted == 1


def test_txn_compare_and_branches(store):
    store.put(PutOp(b"k", b"v1"))  # rev 2
    t = store.txn(TxnOp(
        [Compare(b"k", T.VALUE, R.EQUAL, b"v1"), Compare(b"k", T.VERSION, R.EQUAL, 1),
         Compare(b"k", T.CREATE, R.EQUAL, 2), Compare(b"k", T.MOD, R.LESS, 3), Compare(b"k", T.LEASE, R.EQUAL, 0)],
        [PutOp(b"k", b"v2"), PutOp(b"j", b"x"), RangeOp(b"j")],
        [RangeOp(b"k")],
    ))
    assert t.succeeded and t.revision == 3
    assert [type(r).__name__ for r in t.responses] == ["PutResult", "PutResult", "RangeResult"]
    assert t.responses[0].revision == 3 and kvs(t.responses[2]) == [(b"j", b"x", 3, 3, 1)]
    assert kvs(store.range(RangeOp(b"k"))) == [(b"k", b"v2", 2, 3, 2)]
    # failure branch, read-only: revision unchanged
    t = store.txn(TxnOp([Compare(b"k", T.VALUE, R.EQUAL, b"nope")], [PutOp(b"k", b"x")], [RangeOp(b"k")]))
    assert not t.succeeded and t.revision == 3 and kvs(t.responses[0]) == [(b"k", b"v2", 2, 3, 2)]
    # missing key: VALUE compare always false, VERSION compares against 0
    assert not store.txn(TxnOp([Compare(b"zz", T.VALUE, R.NOT_EQUAL, b"a")])).succeeded
    assert store.txn(TxnOp([Compare(b"zz", T.VERSION, R.EQUAL, 0)])).succeeded
    assert store.txn(TxnOp([Compare(b"zz", T.CREATE, R.LESS, 1)])).succeeded
    # range compare: every key in range must satisfy
    assert store.txn(TxnOp([Compare(b"j", T.VERSION, R.GREATER, 0, range_end=b"l")])).succeeded
    assert not store.txn(TxnOp([Compare(b"j", T.VERSION, R.GREATER, 1, range_end=b"l")])).succeeded


def test_nested_txn_compares_see_state_before_the_txn(store):
    store.put(PutOp(b"a", b"1"))  # rev 2
    t = store.txn(TxnOp(
        [], [PutOp(b"a", b"2"), TxnOp([Compare(b"a", T.VALUE, R.EQUAL, b"1")], [PutOp(b"b", b"seen-old")],
                                      [PutOp(b"b", b"seen-new")])], []))
    assert t.succeeded and t.responses[1].succeeded
    assert store.range(RangeOp(b"b")).kvs[0].value == b"seen-old"
    assert [kv.mod_revision for kv in store.range(RangeOp(b"a", b"c")).kvs] == [3, 3]


def test_txn_sub_revisions_and_delete_then_put_other_key(store):
    store.put(PutOp(b"a", b"1"))
    t = store.txn(TxnOp([], [DeleteOp(b"a"), PutOp(b"b", b"2"), PutOp(b"c", b"3")], []))
    assert t.revision == 3 and t.responses[0].deleted == 1
    assert [kv.mod_revision for kv in store.range(RangeOp(b"b", b"d")).kvs] == [3, 3]
    assert store.pending_events and [e.kv.key for e in store.pending_events[-3:]] == [b"a", b"b", b"c"]


def test_txn_validation(store):
    with pytest.raises(ErrDuplicateKey) as e:
        store.txn(TxnOp([], [PutOp(b"a", b"1"), PutOp(b"a", b"2")], []))
    assert str(e.value) == "etcdserver: duplicate key given in txn request"
    with pytest.raises(ErrDuplicateKey):
        store.txn(TxnOp([], [DeleteOp(b"a", b"c"), PutOp(b"b", b"2")], []))
    with pytest.raises(ErrDuplicateKey):
        store.txn(TxnOp([], [PutOp(b"a", b"1"), TxnOp([], [PutOp(b"a", b"2")], [])], []))
    # the same key in then/else of one nested txn is fine; put in both branches of the top is fine
    store.txn(TxnOp([], [TxnOp([], [PutOp(b"a", b"1")], [PutOp(b"a", b"2")])], [PutOp(b"a", b"3")]))
    with pytest.raises(ErrTooManyOps) as e:
        store.txn(TxnOp([], [PutOp(b"k%d" % i, b"") for i in range(129)], []))
    assert e.value.code == "INVALID_ARGUMENT"
    with pytest.raises(ErrEmptyKey):
        store.txn(TxnOp([Compare(b"", T.VERSION, R.EQUAL, 0)], [], []))
    assert store.current_revision == 2


def test_compaction(store):
    for i in range(1, 6):
        store.put(PutOp(b"a", b"%d" % i))  # revs 2..6
    store.put(PutOp(b"b", b"x"))  # 7
    store.delete_range(DeleteOp(b"b"))  # 8
    with pytest.raises(ErrFutureRev) as e:
        store.compact(9)
    assert str(e.value) == "etcdserver: mvcc: required revision is a future revision" and e.value.code == "OUT_OF_RANGE"
    assert store.compact(5) == 8
    with pytest.raises(ErrCompacted) as e:
        store.range(RangeOp(b"a", revision=4))
    assert str(e.value) == "etcdserver: mvcc: required revision has been compacted"
    assert kvs(store.range(RangeOp(b"a", revision=5))) == [(b"a", b"4", 2, 5, 4)]
    with pytest.raises(ErrCompacted):
        store.compact(5)
    with pytest.raises(ErrFutureRev):
        store.range(RangeOp(b"a", revision=9))
    store.compact(8)
    assert kvs(store.range(RangeOp(b"a", revision=8))) == [(b"a", b"5", 2, 6, 5)]
    # physically removed: only a@6 is left in the key bucket (b's generation ended at/below 8)
    with store.backend.read_tx() as rt:
        from fastkv.backend import KEY
        assert len(rt.unsafe_range(KEY, b"", b"")) == 1


def test_restart_rebuilds_index(tmp_path):
    path = str(tmp_path / "db")
    be = open_backend("lmdb", path, batch_interval=0)
    s = KVStore(be)
    for i in range(50):
        s.put(PutOp(b"k%02d" % (i % 10), b"v%d" % i))
    s.delete_range(DeleteOp(b"k05"))
    s.compact(30)
    s.put(PutOp(b"k05", b"again"))
    s.set_consistent_index(77)
    before = kvs(s.range(RangeOp(b"\x00", b"\x00")))
    rev, crev = s.current_revision, s.compact_revision
    be.close()
    be = open_backend("lmdb", path, batch_interval=0)
    s = KVStore(be)
    assert (s.current_revision, s.compact_revision, s.consistent_index) == (rev, crev, 77)
    assert kvs(s.range(RangeOp(b"\x00", b"\x00"))) == before
    # versions continue where they were
    s.put(PutOp(b"k01", b"more"))
    assert s.range(RangeOp(b"k01")).kvs[0].version == 6
    be.close()


def test_quota_rejects_put_and_leaves_store_untouched(open_store):
    s = open_store(quota_bytes=200_000)
    n = 0
    with pytest.raises(ErrNoSpace) as e:
        for n in range(10_000):
            s.put(PutOp(b"k%05d" % n, b"x" * 1000))
            s.backend.force_commit()
    assert e.value.code == "RESOURCE_EXHAUSTED"
    rev = s.current_revision
    with pytest.raises(ErrNoSpace):
        s.put(PutOp(b"one-more", b"x" * 1000))
    assert s.current_revision == rev and s.range(RangeOp(b"one-more")).kvs == []
    # deletes and reads still work
    assert s.delete_range(DeleteOp(b"k", b"l")).deleted == n


def test_ignore_value_on_key_deleted_earlier_in_txn_is_refused_cleanly(store):
    # etcd 3.4.23 panics on this txn (its checks pass, its apply fails); we refuse it untouched.
    store.put(PutOp(b"a", b"1"))
    store.put(PutOp(b"b", b"2"))
    rev = store.current_revision
    with pytest.raises(ErrKeyNotFound):
        store.txn(TxnOp([], [DeleteOp(b"a", b"\x00"), PutOp(b"b", ignore_value=True)], []))
    assert store.current_revision == rev
    assert [kv.key for kv in store.range(RangeOp(b"a", b"\x00")).kvs] == [b"a", b"b"]
    store.put(PutOp(b"c", b"3"))  # and the store keeps working at the next revision
    assert store.current_revision == rev + 1


def test_txn_range_with_future_or_compacted_revision_fails_whole(store):
    for i in range(4):
        store.put(PutOp(b"k", b"%d" % i))
    store.compact(3)
    rev = store.current_revision
    with pytest.raises(ErrFutureRev):
        store.txn(TxnOp([], [PutOp(b"x", b"1"), RangeOp(b"k", revision=rev + 1)], []))
    with pytest.raises(ErrCompacted):
        store.txn(TxnOp([], [PutOp(b"x", b"1"), RangeOp(b"k", revision=2)], []))
    assert store.current_revision == rev and store.range(RangeOp(b"x")).kvs == []


def test_lessor_set_after_construction_routes_leased_puts(store):
    """put_value is the native lean put only while there is no lessor: a lessor attached later gets
    its lease checks and attachments, and detaching it brings the lean put back."""
    from fastkv.errors import ErrLeaseNotFound
    from fastkv.lease import Lessor

    lessor = Lessor(store.backend, min_ttl=2)
    lessor.grant(7, 60)
    lean = store.put_value
    store.lessor = lessor
    assert store.put_value(b"leased", b"v", 7) == 2
    assert lessor.time_to_live(7, keys=True)[2] == [b"leased"]
    with pytest.raises(ErrLeaseNotFound):
        store.put_value(b"other", b"v", 8)
    assert store.current_revision == 2
    store.lessor = None
    assert store.put_value == lean and store.put_value(b"plain", b"v") == 3


def _run_steps(steps, between=None):
    """Drive KVStore.hash_steps to its result, calling between() at every step boundary."""
    n = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value, n
        n += 1
        if between is not None:
            between(n)


def test_hash_steps_is_one_hash_of_the_revisions_up_to_rev(store):
    from fastkv._native import load

    crc = load("crc32c").crc32c
    for i in range(250):
        store.put(PutOp(b"k%03d" % (i % 90), b"v%d" % i))
    store.delete_range(DeleteOp(b"k050"))
    rev = store.current_revision
    whole, steps = _run_steps(store.hash_steps(0, chunk=1000))
    assert steps == 0 and whole[1:] == (-1, rev)
    chunked, steps = _run_steps(store.hash_steps(0, chunk=7))
    assert steps == 251 // 7 and chunked == whole
    # by hand: CRC-32C over every record of the key bucket, keys and values in key order
    h = 0
    with store.backend.read_tx() as tx:
        for k, v in tx.unsafe_range(KEY, b"", b""):
            h = crc(v, crc(k, h))
    assert whole[0] == h
    # writes made between steps are after the revision hashed: the hash does not move
    more, _ = _run_steps(store.hash_steps(rev, chunk=7), lambda n: store.put(PutOp(b"new%d" % n, b"x")))
    assert more == whole
    with pytest.raises(ErrFutureRev):
        next(store.hash_steps(store.current_revision + 1))


def test_hash_steps_start_over_after_a_compaction_between_steps(store):
    for i in range(100):
        store.put(PutOp(b"k%02d" % (i % 10), b"v%d" % i))
    rev = store.current_revision
    compacted = []

    def compact_once(n):
        if n == 3 and not compacted:
            compacted.append(store.compact(rev - 20))

    h, steps = _run_steps(store.hash_steps(0, chunk=10), compact_once)
    assert compacted and h[1] == rev - 20 and h[2] == rev
    assert h == _run_steps(store.hash_steps(0, chunk=10))[0]  # the post-compaction hash, whole
    with pytest.raises(ErrCompacted):  # a revision the compaction removed cannot be hashed
        next(store.hash_steps(rev - 30))
