"""The embedded API: operations, batching, watch, and the durability contract in-process."""
from __future__ import annotations

import threading

import pytest

import fastkv
from fastkv.embedded import Compare, CompareResult, CompareTarget, PutOp, prefix_end
from fastkv.errors import ErrCompacted, ErrNoSpace


@pytest.fixture
def db(tmp_path):
    d = fastkv.open(str(tmp_path / "db"))
    yield d
    d.close()


def test_prefix_end():
    assert prefix_end(b"abc") == b"abd"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"


def test_basic_operations(db):
    assert db.revision == 1
    db.put(b"/a/1", b"x")
    db.put(b"/a/2", b"y")
    db.put(b"/b", b"z")
    assert db.get(b"/a/1").value == b"x"
    assert db.get(b"nope") is None
    assert [kv.key for kv in db.range(b"/a/", prefix=True).kvs] == [b"/a/1", b"/a/2"]
    assert db.delete(b"/a/", prefix=True).deleted == 2
    t = db.txn([Compare(b"/b", CompareTarget.VALUE, CompareResult.EQUAL, b"z")], [PutOp(b"/b", b"w")], [])
    assert t.succeeded and db.get(b"/b").value == b"w"
    assert db.get(b"/a/1", revision=2).value == b"x"
    db.compact(4)
    with pytest.raises(ErrCompacted):
        db.get(b"/a/1", revision=2)


def test_durable_mode_commits_every_write(db):
    commits = db.backend.commits
    db.put(b"a", b"1")
    db.put(b"b", b"2")
    assert db.backend.commits == commits + 2
    assert db.backend.batch_tx().pending() == 0


def test_batch_block_shares_commits_and_flushes(db):
    commits = db.backend.commits
    with db.batch():
        for i in range(500):
            db.put(b"k%04d" % i, b"v")
        assert db.backend.batch_tx().pending() > 0  # buffered, yet readable:
        assert db.get(b"k0499").value == b"v"
    assert db.backend.batch_tx().pending() == 0
    assert db.backend.commits == commits + 1


def test_batched_mode_uses_limit(tmp_path):
    with fastkv.open(str(tmp_path / "db"), sync=False, batch_limit=100, batch_interval=0) as d:
        for i in range(250):
            d.put(b"k%04d" % i, b"v")
        assert d.backend.commits == 2
        d.flush()
        assert d.backend.commits == 3


def test_reopen_sees_everything(tmp_path):
    path = str(tmp_path / "db")
    with fastkv.open(path, sync=False) as d:
        for i in range(1000):
            d.put(b"k%04d" % (i % 100), b"v%d" % i)
    with fastkv.open(path) as d:
        assert d.revision == 1001
        r = d.range(b"k", prefix=True)
        assert r.count == 100 and r.kvs[0].version == 10


def test_watch_live_and_history(db):
    db.put(b"w/1", b"a")  # rev 2
    db.put(b"x", b"b")    # rev 3
    w = db.watch(b"w/", prefix=True, start_revision=1, prev_kv=True)
    db.put(b"w/1", b"c")  # rev 4
    db.delete(b"w/1")     # rev 5
    got = [w.get(timeout=5) for _ in range(3)]
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in got] == [(0, b"w/1", 2), (0, b"w/1", 4), (1, b"w/1", 5)]
    assert got[1].prev_kv.value == b"a" and got[2].prev_kv.value == b"c"
    assert w.get(timeout=0.05) is None
    w.close()
    assert list(w) == []


def test_watch_in_batch_mode_sees_only_committed(db):
    w = db.watch(b"k")
    with db.batch():
        db.put(b"k", b"1")
        assert w.get(timeout=0.05) is None  # not committed yet
    assert w.get(timeout=5).kv.value == b"1"


def test_watch_from_compacted_revision_fails(db):
    for i in range(5):
        db.put(b"k", b"%d" % i)
    db.compact(4)
    with pytest.raises(ErrCompacted):
        db.watch(b"k", start_revision=2)


def test_threads_share_one_db(db):
    def writer(n):
        for i in range(200):
            db.put(b"t%d/%d" % (n, i), b"v")

    ts = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert db.revision == 801
    assert db.range(b"t", prefix=True).count == 800


def test_failed_durable_commit_leaves_store_untouched(tmp_path):
    # A tiny LMDB map that cannot grow: the first write that does not fit fails at commit time,
    # raises etcd's error, and the store (index, revision, disk) is as before the call.
    d = fastkv.open(str(tmp_path / "db"), max_size=1 << 20, quota_bytes=1 << 40)
    d.backend._map_size = 1 << 20
    n = 0
    with pytest.raises(ErrNoSpace):
        for n in range(10_000):
            d.put(b"k%05d" % n, b"x" * 2000)
    assert d.revision == n + 1
    assert d.get(b"k%05d" % n) is None and d.get(b"k%05d" % (n - 1)) is not None
    assert d.range(b"k", prefix=True).count == n
    d.delete(b"k00000")  # the store still works
    d.close()
    with fastkv.open(str(tmp_path / "db"), max_size=1 << 20) as d2:
        assert d2.range(b"k", prefix=True).count == n - 1


def test_put_paths_durable_batched_and_with_options(tmp_path):
    """db.put's compiled entry point: durable puts commit one by one, batch-block puts share commits,
    and a put with an option inside a block takes the full path (prev_kv answered)."""
    with fastkv.open(str(tmp_path / "db"), batch_interval=0) as d:
        r = d.put(b"k", b"1")
        assert (r.revision, r.prev_kv, d.backend.commits) == (2, None, 1)
        with d.batch():
            assert d.put(b"k", b"2").revision == 3
            prev = d.put(b"k", b"3", prev_kv=True)
            assert prev.revision == 4 and prev.prev_kv.value == b"2"
            with d.batch():                       # nested block: still buffered after the inner exit
                d.put(b"j", b"1")
            assert d.put(b"j", b"2").revision == 6
            assert d.backend.commits == 1 and d.get(b"j").value == b"2"
        assert d.backend.commits == 2
        d.put(b"after", b"x")                     # durable again once the block is over
        assert d.backend.commits == 3
    with fastkv.open(str(tmp_path / "db")) as d:
        assert d.revision == 7 and d.get(b"k").version == 3
