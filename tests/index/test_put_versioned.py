"""put_versioned == put, plus the (created_main, version) that get() would give right after it."""
from hypothesis import given, settings, strategies as st

from tests.conftest import native_and_twin

impl = native_and_twin("revindex")

ops = st.lists(st.tuples(st.sampled_from(["put", "tomb", "restore"]), st.sampled_from([b"a", b"b", b"c"]),
                         st.integers(1, 4)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_put_versioned_matches_get_after_put(impl, seq):
    fused, plain = impl.TreeIndex(), impl.TreeIndex()
    main = 1
    for op, key, v in seq:
        main += 1
        if op == "put":
            created, version = fused.put_versioned(key, main, 0)
            plain.put(key, main, 0)
            _mod, c, ver = plain.get(key, main)
            assert (created, version) == (c[0], ver)
        elif op == "tomb":
            for idx in (fused, plain):
                try:
                    idx.tombstone(key, main, 0)
                except impl.RevisionNotFoundError:
                    pass
        else:
            for idx in (fused, plain):
                try:
                    idx.restore(key, max(1, main - 1), main, 0, v)
                except ValueError:
                    pass  # restore over a live generation
    assert fused.range(b"a", b"", main) == plain.range(b"a", b"", main)


def test_keys_arriving_in_order_then_below_and_between(impl):
    """Fresh keys in key order take the index's append shortcut (one compare against the last key);
    keys below or between must still land in order, across many chunk splits."""
    idx = impl.TreeIndex()
    rev = 1
    ordered = [b"k%06d" % i for i in range(0, 6000, 2)]
    for k in ordered:
        rev += 1
        assert idx.put_versioned(k, rev, 0) == (rev, 1)
    others = [b"k%06d" % i for i in range(5999, 0, -2)] + [b"a", b"k", b"k000000\x00", b"z"]
    for k in others:
        rev += 1
        idx.put(k, rev, 0)
    rev += 1
    assert idx.put_versioned(b"z", rev, 0)[1] == 2           # an existing last key: an update
    keys, _revs = idx.range(b"", b"", rev)
    assert keys == sorted(ordered + others)
    assert len(idx) == len(keys)
