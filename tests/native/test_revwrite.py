"""revwrite: the MVCC put path, compiled and twin, against the codec, a real backend and each other.

Every test runs over both writers (`impl`) and, where it matters, over both kinds of index and
buffer underneath (the compiled writer has a C path for the compiled ones and a generic path for
the twins)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from fastkv._native import load
from fastkv.backend import KEY, open_backend
from tests.conftest import native_and_twin

impl = native_and_twin("revwrite")
codec = load("mvcccodec", pure=True)


class EmptyKey(Exception):
    pass


class NoSpace(Exception):
    pass


@pytest.fixture(params=["compiled-parts", "twin-parts"])
def parts(request):
    pure = request.param == "twin-parts"
    return load("revindex", pure=pure), load("batchbuf", pure=pure)


@pytest.fixture
def backend(tmp_path):
    be = open_backend("lmdb", str(tmp_path / "db"), batch_limit=4, batch_interval=0)
    yield be
    be.close()


def _writer(impl, backend, index, quota=None):
    return impl.RevisionWriter(index, backend._buffer, KEY, lock=backend._lock, tx=backend.batch_tx(),
                               batch_limit=backend.batch_limit, batch_full=backend.batch_full, empty_key_error=EmptyKey, no_space_error=NoSpace,
                               quota_bytes=quota)


def test_put_stores_the_codec_bytes_and_returns_create_and_version(impl, parts):
    revindex, batchbuf = parts
    idx, buf = revindex.TreeIndex(), batchbuf.WriteBuffer(2)
    w = impl.RevisionWriter(idx, buf, 1, lock=_Lock(), tx=None, batch_limit=None, batch_full=None,
                            empty_key_error=EmptyKey, no_space_error=NoSpace)
    assert w.put(b"a", b"v1", 2, 0, 0) == (2, 1)
    assert w.put(b"b", b"x", 3, 0, 0) == (3, 1)
    assert w.put(b"a", b"v2", 4, 1, 9) == (2, 2)
    idx.tombstone(b"a", 5, 0)
    assert w.put(b"a", b"v3", 6, 0, 0) == (6, 1)  # a new generation after the delete
    assert buf.bucket_items(1) == [
        (codec.rev_key(2, 0), codec.encode_record(b"a", b"v1", 2, 2, 1, 0)),
        (codec.rev_key(3, 0), codec.encode_record(b"b", b"x", 3, 3, 1, 0)),
        (codec.rev_key(4, 1), codec.encode_record(b"a", b"v2", 2, 4, 2, 9)),
        (codec.rev_key(6, 0), codec.encode_record(b"a", b"v3", 6, 6, 1, 0)),
    ]
    assert buf.bucket_items(0) == []


def test_put_refused_by_the_index_leaves_the_buffer_alone(impl, parts):
    revindex, batchbuf = parts
    idx, buf = revindex.TreeIndex(), batchbuf.WriteBuffer(1)
    w = impl.RevisionWriter(idx, buf, 0, lock=_Lock(), tx=None, batch_limit=None, batch_full=None,
                            empty_key_error=EmptyKey, no_space_error=NoSpace)
    w.put(b"k", b"v", 5, 0, 0)
    with pytest.raises(ValueError):
        w.put(b"k", b"v", 4, 0, 0)  # not above the key's last revision
    assert len(buf) == 1


class _Lock:
    """Stand-in lock for the tests of put() alone, which never take it; counts any use."""

    def __init__(self):
        self.used = 0

    def acquire(self):
        self.used += 1

    def release(self):
        self.used += 1


def test_put_value_counts_revisions_and_bytes_and_reports(impl, backend):
    idx = load("revindex").TreeIndex()
    w = _writer(impl, backend, idx)
    seen = []
    w.on_put = lambda *a: seen.append(a)
    assert w.put_value(b"a", b"1") == 2
    assert w.put_value(b"a", b"22", 7) == 3
    assert w.revision == 3
    assert w.bytes_since_commit == (1 + 1 + impl.PUT_OVERHEAD) + (1 + 2 + impl.PUT_OVERHEAD)
    assert seen == [(b"a", b"1", 2, 2, 1, 0), (b"a", b"22", 2, 3, 2, 7)]
    assert backend._buffer.get(KEY, codec.rev_key(3, 0)) == codec.encode_record(b"a", b"22", 2, 3, 2, 7)
    w.on_put = None
    assert w.put_value(b"b", b"") == 4 and len(seen) == 2


def test_put_value_refusals_change_nothing(impl, backend):
    idx = load("revindex").TreeIndex()
    w = _writer(impl, backend, idx, quota=200)
    w.size_at_commit = 100
    with pytest.raises(EmptyKey):
        w.put_value(b"", b"v")
    w.put_value(b"k", b"v" * 30)          # 100 + 1 + 30 + 64 = 195 <= 200
    with pytest.raises(NoSpace):
        w.put_value(b"k2", b"")           # 195 + 2 + 64 > 200
    assert (w.revision, len(backend._buffer), len(idx)) == (2, 1, 1)
    w.quota_bytes = None
    assert w.quota_bytes is None and w.put_value(b"k2", b"") == 3
    w.quota_bytes = 10
    assert w.quota_bytes == 10


def test_put_value_commits_at_the_batch_limit_only_outside_tx_blocks(impl, backend):
    w = _writer(impl, backend, load("revindex").TreeIndex())
    tx = backend.batch_tx()
    for i in range(3):
        w.put_value(b"k%d" % i, b"v")
    assert backend.commits == 0
    w.put_value(b"k3", b"v")               # 4 = batch_limit, no block open: commits now
    assert backend.commits == 1 and len(backend._buffer) == 0
    with tx:                                # a caller's block: everything inside lands together
        for i in range(6):
            w.put_value(b"j%d" % i, b"v")
        assert backend.commits == 1 and len(backend._buffer) == 6
    assert backend.commits == 2 and len(backend._buffer) == 0
    with backend.read_tx() as rtx:
        assert len(rtx.unsafe_range(KEY, b"", b"")) == 10


def test_put_value_holds_the_backend_lock(impl, backend):
    """Another thread's `with tx:` block keeps put_value out until the block ends."""
    import threading

    w = _writer(impl, backend, load("revindex").TreeIndex())
    tx = backend.batch_tx()
    inside, release, done = threading.Event(), threading.Event(), threading.Event()

    def holder():
        with tx:
            inside.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    inside.wait(5)
    putter = threading.Thread(target=lambda: (w.put_value(b"k", b"v"), done.set()))
    putter.start()
    assert not done.wait(0.2)              # blocked on the lock
    release.set()
    assert done.wait(5) and w.revision == 2
    t.join()
    putter.join()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=1, max_size=3), st.binary(max_size=40), st.integers(0, 3)),
                max_size=40))
def test_compiled_and_twin_writers_buffer_the_same_bytes(ops):
    results = []
    for pure in (False, True):
        buf = load("batchbuf", pure=pure).WriteBuffer(1)
        idx = load("revindex", pure=pure).TreeIndex()
        w = load("revwrite", pure=pure).RevisionWriter(idx, buf, 0, lock=_Lock(), tx=None, batch_limit=None, batch_full=None,
                                                      empty_key_error=EmptyKey, no_space_error=NoSpace)
        out = [w.put(k, v, i + 2, 0, lease) for i, (k, v, lease) in enumerate(ops)]
        results.append((out, buf.bucket_items(0)))
    assert results[0] == results[1]


def test_put_result_behaves_like_the_dataclass_it_replaces(impl):
    import pickle

    r = impl.PutResult(5)
    assert (r.revision, r.prev_kv) == (5, None)
    assert impl.PutResult(revision=5, prev_kv=None) == r != impl.PutResult(6)
    kv = load("mvcccodec").KeyValue(b"k", 2, 3, 1, b"v", 0)
    r.prev_kv = kv
    assert r == impl.PutResult(5, load("mvcccodec").KeyValue(b"k", 2, 3, 1, b"v", 0))
    assert repr(impl.PutResult(7)) == "PutResult(revision=7, prev_kv=None)"
    assert pickle.loads(pickle.dumps(r)) == r
    with pytest.raises(TypeError):
        hash(r)


def test_put_entry_takes_the_lean_path_only_when_lean_and_plain(impl):
    calls = []

    def put_value(key, value, lease):
        calls.append(("lean", key, value, lease))
        return 42

    def slow(key, value, **options):
        calls.append(("slow", key, value, options))
        return "slow result"

    entry = impl.PutEntry(put_value, slow)
    put = entry.put
    plain = {"lease": 0, "prev_kv": False, "ignore_value": False, "ignore_lease": False}
    assert put(b"k", b"v") == "slow result"                      # not lean yet
    entry.lean = True
    r = put(b"k", b"v", lease=3)
    assert type(r) is impl.PutResult and (r.revision, r.prev_kv) == (42, None)
    assert put(b"k", b"v", prev_kv=True) == "slow result"        # an option: the full path
    assert put(b"k", b"v", ignore_lease=True) == "slow result"
    assert calls == [("slow", b"k", b"v", plain), ("lean", b"k", b"v", 3),
                     ("slow", b"k", b"v", {**plain, "prev_kv": True}),
                     ("slow", b"k", b"v", {**plain, "ignore_lease": True})]
