"""batchbuf: the write buffer, compiled and twin, against a model and a real LMDB txn."""
import lmdb
from hypothesis import given, settings, strategies as st

from fastkv._native import load
from tests.conftest import native_and_twin

impl = native_and_twin("batchbuf")


def test_get_put_delete_range(impl):
    b = impl.WriteBuffer(2)
    miss = b.missing()
    assert b.get(0, b"a", miss) is miss
    b.put(0, b"b", b"2")
    b.put(0, b"a", b"1")
    b.delete(0, b"c")
    b.put(1, b"a", b"other")
    assert len(b) == 4
    assert b.get(0, b"c", miss) is None and b.get(0, b"a") == b"1"
    assert b.range(0, b"a", b"") == [(b"a", b"1"), (b"b", b"2"), (b"c", None)]
    assert b.range(0, b"a", b"b") == [(b"a", b"1")]
    assert b.range(0, b"b", None) == [(b"b", b"2")]
    assert b.bucket_items(0) == [(b"a", b"1"), (b"b", b"2"), (b"c", None)]
    b.clear()
    assert len(b) == 0 and b.range(0, b"", b"") == []


def test_write_to_lmdb_appends_and_deletes(impl, tmp_path):
    env = lmdb.open(str(tmp_path), max_dbs=2)
    dbs = [env.open_db(b"x"), env.open_db(b"y")]
    with env.begin(write=True) as txn:
        txn.put(b"m", b"old", db=dbs[0])
        txn.put(b"z", b"gone", db=dbs[0])
    b = impl.WriteBuffer(2)
    b.put(0, b"n", b"1")      # sorts after existing "m": but "z" exists, so no append
    b.delete(0, b"z")
    b.put(1, b"q", b"2")      # empty bucket: append path
    with env.begin(write=True) as txn:
        assert b.write_to_lmdb(txn, dbs) == 3
    with env.begin() as txn:
        assert list(txn.cursor(db=dbs[0])) == [(b"m", b"old"), (b"n", b"1")]
        assert list(txn.cursor(db=dbs[1])) == [(b"q", b"2")]
    env.close()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "del"]), st.binary(min_size=1, max_size=3), st.binary(max_size=3)),
                max_size=60))
def test_native_matches_twin(ops):
    n, t = load("batchbuf", pure=False).WriteBuffer(1), load("batchbuf", pure=True).WriteBuffer(1)
    for op, k, v in ops:
        for b in (n, t):
            b.put(0, k, v) if op == "put" else b.delete(0, k)
    assert n.bucket_items(0) == t.bucket_items(0)
    assert n.range(0, b"\x01", b"\x80") == t.range(0, b"\x01", b"\x80")
    assert len(n) == len(t)
