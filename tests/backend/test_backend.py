"""One backend test suite, run over every backend (LMDB and memory) and both write buffers."""
from __future__ import annotations

import os
import threading
import time

import pytest

from fastkv.backend import KEY, LEASE, META, open_backend
from fastkv.errors import ErrNoSpace


@pytest.fixture(params=["lmdb", "memory"])
def make_backend(request, tmp_path):
    opened = []

    def make(**opts):
        be = open_backend(request.param, str(tmp_path / "db") if request.param == "lmdb" else None, **opts)
        opened.append(be)
        return be

    make.kind = request.param
    yield make
    for be in opened:
        try:
            be.close()
        except Exception:
            pass


def test_put_get_before_and_after_commit(make_backend):
    be = make_backend(batch_interval=0)
    tx = be.batch_tx()
    with tx:
        tx.unsafe_put(KEY, b"a", b"1")
        tx.unsafe_put(META, b"a", b"meta")
        assert tx.unsafe_get(KEY, b"a") == b"1"  # buffered writes are visible
        assert tx.pending() == 2
    assert be.commits == 0
    be.force_commit()
    assert be.commits == 1
    with be.read_tx() as rt:
        assert rt.unsafe_get(KEY, b"a") == b"1"
        assert rt.unsafe_get(META, b"a") == b"meta"
        assert rt.unsafe_get(LEASE, b"a") is None


def test_delete_hides_committed_value_before_commit(make_backend):
    be = make_backend(batch_interval=0)
    tx = be.batch_tx()
    with tx:
        for k in (b"a", b"b", b"c"):
            tx.unsafe_put(KEY, k, k * 2)
    be.force_commit()
    with tx:
        tx.unsafe_delete(KEY, b"b")
        tx.unsafe_put(KEY, b"d", b"dd")
        assert tx.unsafe_get(KEY, b"b") is None
        assert tx.unsafe_range(KEY, b"a", b"") == [(b"a", b"aa"), (b"c", b"cc"), (b"d", b"dd")]
        assert tx.unsafe_range(KEY, b"a", b"", limit=2) == [(b"a", b"aa"), (b"c", b"cc")]
        assert tx.unsafe_range(KEY, b"b", b"d") == [(b"c", b"cc")]
        assert tx.unsafe_range(KEY, b"c", None) == [(b"c", b"cc")]
    be.force_commit()
    with tx:
        assert tx.unsafe_range(KEY, b"", b"") == [(b"a", b"aa"), (b"c", b"cc"), (b"d", b"dd")]


def test_batch_limit_triggers_commit(make_backend):
    be = make_backend(batch_limit=5, batch_interval=0)
    tx = be.batch_tx()
    for i in range(12):
        with tx:
            tx.unsafe_put(KEY, b"k%03d" % i, b"v")
    assert be.commits == 2  # at 5 and at 10 pending ops
    assert tx.pending() == 2


def test_batch_interval_commits_in_background(make_backend):
    be = make_backend(batch_limit=10000, batch_interval=0.05)
    tx = be.batch_tx()
    with tx:
        tx.unsafe_put(KEY, b"x", b"y")
    deadline = time.monotonic() + 5
    while be.commits == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert be.commits >= 1
    assert tx.pending() == 0


def test_pre_commit_hook_writes_join_the_batch(make_backend):
    be = make_backend(batch_interval=0)
    calls = []

    def hook(tx):
        calls.append(tx.pending())
        tx.unsafe_put(META, b"consistent_index", b"42")

    be.add_pre_commit_hook(hook)
    with be.batch_tx() as tx:
        tx.unsafe_put(KEY, b"a", b"1")
    be.force_commit()
    assert calls == [1]
    with be.read_tx() as rt:
        assert rt.unsafe_get(META, b"consistent_index") == b"42"


def test_concurrent_readers_and_writer(make_backend):
    be = make_backend(batch_limit=50, batch_interval=0.01)
    stop = threading.Event()
    errors = []

    def reader():
        while not stop.is_set():
            with be.read_tx() as rt:
                rows = rt.unsafe_range(KEY, b"", b"")
                # keys are written in order, each only once: what is visible is a prefix
                if [k for k, _ in rows] != [b"%05d" % i for i in range(len(rows))]:
                    errors.append(rows[:3])

    t = threading.Thread(target=reader)
    t.start()
    for i in range(2000):
        with be.batch_tx() as tx:
            tx.unsafe_put(KEY, b"%05d" % i, b"v")
    stop.set()
    t.join()
    assert not errors
    be.force_commit()
    with be.read_tx() as rt:
        assert len(rt.unsafe_range(KEY, b"", b"")) == 2000


def test_lmdb_reopen_keeps_committed_writes(tmp_path):
    path = str(tmp_path / "db")
    be = open_backend("lmdb", path, batch_interval=0)
    with be.batch_tx() as tx:
        tx.unsafe_put(KEY, b"a", b"1")
    be.force_commit()
    be.close()
    be = open_backend("lmdb", path, batch_interval=0)
    with be.read_tx() as rt:
        assert rt.unsafe_get(KEY, b"a") == b"1"
    be.close()


def test_lmdb_map_grows_until_limit_then_reports_no_space(tmp_path):
    be = open_backend("lmdb", str(tmp_path / "db"), batch_interval=0,
                      initial_map_size=1 << 20, max_size=8 << 20)
    value = os.urandom(4096)
    written = 0
    with pytest.raises(ErrNoSpace) as err:
        for i in range(10_000):
            with be.batch_tx() as tx:
                tx.unsafe_put(KEY, b"%08d" % i, value)
            be.force_commit()
            written = i + 1
    assert str(err.value) == "etcdserver: mvcc: database space exceeded"
    assert be.map_size() == 8 << 20  # it grew from 1 MiB to the limit before refusing
    assert written > 256  # more than the initial 1 MiB map could hold
    # The failed write is still buffered (nothing lost) and every committed one is readable.
    assert be.batch_tx().pending() == 1
    with be.read_tx() as rt:
        assert rt.unsafe_get(KEY, b"%08d" % (written - 1)) == value
        assert rt.unsafe_get(KEY, b"%08d" % written) == value  # buffered
    be._buffer.clear()  # drop the unwritable write so close() can commit nothing
    be.close()
    be = open_backend("lmdb", str(tmp_path / "db"), batch_interval=0, max_size=8 << 20)
    with be.read_tx() as rt:
        assert len(rt.unsafe_range(KEY, b"", b"")) == written
    be.close()


def test_lmdb_defrag_shrinks_file_and_keeps_data(tmp_path):
    be = open_backend("lmdb", str(tmp_path / "db"), batch_interval=0)
    for i in range(2000):
        with be.batch_tx() as tx:
            tx.unsafe_put(KEY, b"%06d" % i, b"x" * 1000)
    be.force_commit()
    with be.batch_tx() as tx:
        for i in range(1990):
            tx.unsafe_delete(KEY, b"%06d" % i)
    be.force_commit()
    before = be.size()
    be.defrag()
    assert be.size() < before / 4
    with be.read_tx() as rt:
        assert [k for k, _ in rt.unsafe_range(KEY, b"", b"")] == [b"%06d" % i for i in range(1990, 2000)]
    be.close()
