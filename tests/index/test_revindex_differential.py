"""Differential property test: the compiled index against its pure-Python twin.

Random operation sequences (put / tombstone / restore / get / revisions with limit / count / range /
range_since / compact / keep, including invalid calls) on a tiny keyspace so keys collide, deletes
and re-creations interleave and sub-revisions share a main revision. After every call both must
return the same value or raise the same exception type, and both must hold the same state
(dump() compares every generation, created revision, version and revision).
"""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from fastkv._native import load

native = load("revindex", pure=False)  # ImportError if not built: the test fails, never skips
twin = load("revindex", pure=True)

KEYS = [b"", b"\x00", b"a", b"a\x00", b"ab", b"b", b"\xff", b"\xff\xff"]
ENDS = [None, b"", *KEYS]

key = st.sampled_from(KEYS)
step = st.sampled_from([0, 0, 1, 1, 1, 2, 7])  # 0: same main revision (next sub), else main += step
ops = st.one_of(
    st.tuples(st.just("put"), key, step),
    st.tuples(st.just("tombstone"), key, step),
    st.tuples(st.just("restore"), key, step, st.integers(0, 3), st.integers(1, 5)),
    st.tuples(st.just("stale_put"), key, st.integers(0, 3)),  # revision not above the last one
    st.tuples(st.just("get"), key, st.integers(-1, 3)),
    st.tuples(st.just("revisions"), key, st.sampled_from(ENDS), st.integers(-1, 3), st.integers(-1, 3)),
    st.tuples(st.just("count_revisions"), key, st.sampled_from(ENDS), st.integers(-1, 3)),
    st.tuples(st.just("range"), key, st.sampled_from(ENDS), st.integers(-1, 3)),
    st.tuples(st.just("range_since"), key, st.sampled_from(ENDS), st.integers(-1, 12)),
    st.tuples(st.just("compact"), st.integers(0, 12)),
    st.tuples(st.just("keep"), st.integers(0, 12)),
)


def call(idx, name, *args):
    try:
        return "ok", getattr(idx, name)(*args)
    except (KeyError, ValueError) as exc:
        return "raise", type(exc).__name__


@settings(max_examples=300, deadline=None)
@given(seq=st.lists(ops, max_size=80))
def test_native_matches_twin(seq):
    a, b = native.TreeIndex(), twin.TreeIndex()
    main, sub = 1, 0
    for op in seq:
        name = op[0]
        if name in ("put", "tombstone", "restore"):
            if op[2] == 0:
                sub += 1
            else:
                main, sub = main + op[2], 0
            args = (op[1], main, sub)
            if name == "restore":
                args = (op[1], max(1, main - op[3]), main, sub, op[4])
        elif name == "stale_put":
            name, args = "put", (op[1], max(1, main - op[2]), sub)
        elif name in ("get",):
            args = (op[1], main - op[2])
        elif name in ("revisions",):
            args = (op[1], op[2], main - op[3], op[4])
        elif name in ("count_revisions", "range"):
            args = (op[1], op[2], main - op[3])
        elif name == "range_since":
            args = (op[1], op[2], max(0, main - op[3]))
        else:  # compact / keep, at or below the current revision
            args = (max(0, main - op[1]),)
        got, want = call(a, name, *args), call(b, name, *args)
        assert got == want, (name, args)
        assert len(a) == len(b)
        assert a.dump() == b.dump(), (name, args)
