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


def test_order_note_sorts_only_when_keys_arrived_out_of_order(impl):
    b = impl.WriteBuffer(2)
    for k in (b"a", b"b", b"b", b"c"):      # an overwrite keeps its place: still in order
        b.put(0, k, k)
    assert b.bucket_items(0) == [(b"a", b"a"), (b"b", b"b"), (b"c", b"c")]
    b.put(1, b"z", b"1")
    b.put(1, b"y", b"2")                    # new key below the previous one
    assert b.bucket_items(1) == [(b"y", b"2"), (b"z", b"1")]
    assert b.range(1, b"", b"") == [(b"y", b"2"), (b"z", b"1")]
    b.clear()                               # clear forgets the note
    b.put(1, b"m", b"3")
    b.put(1, b"n", b"4")
    assert b.bucket_items(1) == [(b"m", b"3"), (b"n", b"4")]


def test_bucket_index_is_checked(impl):
    import pytest

    b = impl.WriteBuffer(2)
    with pytest.raises(IndexError):
        b.put(2, b"k", b"v")


_keys = st.binary(min_size=1, max_size=2)


@settings(max_examples=60, deadline=None)
@given(stored=st.dictionaries(_keys, st.binary(max_size=3), max_size=8),
       ops=st.lists(st.tuples(st.sampled_from(["put", "put", "del"]), _keys, st.binary(max_size=3)), max_size=30),
       ascending=st.booleans())
def test_write_to_lmdb_matches_a_model(tmp_path_factory, stored, ops, ascending):
    """Whatever the order of the buffered keys (ascending runs take the no-copy path), with or without
    deletes, over stored rows before or after them, LMDB ends up as the model says."""
    if ascending:  # the shape of the revision bucket: strictly increasing new keys, puts only
        ops = [("put", k, v) for k, v in sorted({k: v for _, k, v in ops}.items())]
    for pure in (False, True):
        env = lmdb.open(str(tmp_path_factory.mktemp("wl")), max_dbs=1)
        db = env.open_db(b"x")
        with env.begin(write=True) as txn:
            for k, v in stored.items():
                txn.put(k, v, db=db)
        model = dict(stored)
        b = load("batchbuf", pure=pure).WriteBuffer(1)
        for op, k, v in ops:
            if op == "put":
                b.put(0, k, v)
                model[k] = v
            else:
                b.delete(0, k)
                model.pop(k, None)
        with env.begin(write=True) as txn:
            assert b.write_to_lmdb(txn, [db]) == len({k for _, k, _ in ops})
        with env.begin() as txn:
            assert list(txn.cursor(db=db)) == sorted(model.items())
        env.close()
