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
