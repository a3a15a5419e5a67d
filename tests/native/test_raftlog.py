"""Raft log storage (MemoryStorage): etcd's storage semantics, over the compiled module and its
twin, plus a differential property test of random operation sequences against a plain model."""
import pytest
from hypothesis import given, settings, strategies as st

from fastkv._native import load
from fastkv._native import raftpb_py as pb
from tests.conftest import native_and_twin

impl = native_and_twin("raftlog")


def E(index, term, data=b""):
    return pb.Entry(term, index, 0, data)


def storage(impl, ents):
    """A storage whose dummy entry is ents[0] (like etcd's tests: MemoryStorage{ents: ...})."""
    s = impl.MemoryStorage()
    first = ents[0]
    if first.index:
        s.apply_snapshot(pb.Snapshot(pb.SnapshotMetadata(first.index, first.term)))
    s.append(ents[1:])
    return s


BASE = [E(3, 3), E(4, 4), E(5, 5)]


@pytest.mark.parametrize("i,want", [(2, "compacted"), (3, 3), (4, 4), (5, 5), (6, "unavailable")])
def test_term(impl, i, want):
    s = storage(impl, BASE)
    if want == "compacted":
        with pytest.raises(impl.CompactedError):
            s.term(i)
    elif want == "unavailable":
        with pytest.raises(impl.UnavailableError):
            s.term(i)
    else:
        assert s.term(i) == want


def test_first_last_index(impl):
    s = storage(impl, BASE)
    assert (s.first_index(), s.last_index()) == (4, 5)
    s.append([E(6, 5)])
    assert s.last_index() == 6
    s.compact(4)
    assert (s.first_index(), s.last_index()) == (5, 6)
    fresh = impl.MemoryStorage()
    assert (fresh.first_index(), fresh.last_index()) == (1, 0)


def _size(e):
    return pb.ENTRY_HEADER_SIZE + len(e.data)


def test_entries_and_byte_budget(impl):
    ents = [E(3, 3), E(4, 4, b"a" * 10), E(5, 5, b"b" * 10), E(6, 6, b"c" * 10)]
    s = storage(impl, ents)
    sz = _size(ents[1])
    with pytest.raises(impl.CompactedError):
        s.entries(2, 6)
    with pytest.raises(impl.CompactedError):
        s.entries(3, 4)
    with pytest.raises(impl.UnavailableError):
        s.entries(4, 8)
    assert s.entries(4, 5) == ents[1:2]
    assert s.entries(4, 7) == ents[1:4]
    assert s.entries(4, 7, None) == ents[1:4]
    assert s.entries(4, 7, 0) == ents[1:2]  # always at least one entry
    assert s.entries(4, 7, sz) == ents[1:2]
    assert s.entries(4, 7, 2 * sz - 1) == ents[1:2]
    assert s.entries(4, 7, 2 * sz) == ents[1:3]
    assert s.entries(4, 7, 3 * sz) == ents[1:4]
    assert s.entries(5, 5) == []


def test_compact(impl):
    for index, want_err, want_first_term in [(2, True, 3), (3, True, 3), (4, False, 4), (5, False, 5)]:
        s = storage(impl, BASE)
        if want_err:
            with pytest.raises(impl.CompactedError):
                s.compact(index)
        else:
            s.compact(index)
            assert s.first_index() == index + 1 and s.term(index) == want_first_term
            with pytest.raises(impl.CompactedError):
                s.term(index - 1)
    with pytest.raises(ValueError):
        storage(impl, BASE).compact(6)


def test_create_snapshot(impl):
    cs = pb.ConfState([1, 2, 3])
    s = storage(impl, BASE)
    snap = s.create_snapshot(4, cs, b"data")
    assert snap.metadata == pb.SnapshotMetadata(4, 4, cs) and snap.data == b"data"
    assert s.snapshot() is snap
    snap = s.create_snapshot(5, None, b"d2")  # conf state carried over
    assert snap.metadata == pb.SnapshotMetadata(5, 5, cs)
    with pytest.raises(impl.SnapshotOutOfDateError):
        s.create_snapshot(5, cs, b"")
    with pytest.raises(ValueError):
        s.create_snapshot(6, cs, b"")
    assert s.initial_state() == (pb.HardState(), cs)


def test_create_snapshot_below_compaction_is_refused(impl):
    # twin bug fixed: after compact(5), index 4's term is gone; it used to read a wrong entry
    s = storage(impl, [E(0, 0)] + [E(i, i) for i in range(1, 8)])
    s.compact(5)
    with pytest.raises(impl.CompactedError):
        s.create_snapshot(4, None, b"")


@pytest.mark.parametrize(
    "append,want",
    [
        ([E(1, 1), E(2, 2)], BASE),  # all compacted: ignored
        ([E(3, 3), E(4, 4), E(5, 5)], BASE),
        ([E(3, 3), E(4, 6), E(5, 6)], [E(3, 3), E(4, 6), E(5, 6)]),
        ([E(3, 3), E(4, 4), E(5, 5), E(6, 5)], [E(3, 3), E(4, 4), E(5, 5), E(6, 5)]),
        ([E(2, 3), E(3, 3), E(4, 5)], [E(3, 3), E(4, 5)]),  # truncate incoming, then conflict
        ([E(4, 5)], [E(3, 3), E(4, 5)]),  # truncate the existing suffix
        ([E(6, 5)], [E(3, 3), E(4, 4), E(5, 5), E(6, 5)]),  # plain append
    ],
)
def test_append(impl, append, want):
    s = storage(impl, BASE)
    s.append(append)
    got = [E(s.first_index() - 1, s.term(s.first_index() - 1))] + s.entries(s.first_index(), s.last_index() + 1)
    assert got == want


def test_append_with_a_gap_is_refused(impl):
    s = storage(impl, BASE)
    with pytest.raises(ValueError):
        s.append([E(7, 5)])


def test_apply_snapshot(impl):
    s = impl.MemoryStorage()
    s.apply_snapshot(pb.Snapshot(pb.SnapshotMetadata(4, 4, pb.ConfState([1])), b"x"))
    assert (s.first_index(), s.last_index(), s.term(4)) == (5, 4, 4)
    s.append([E(5, 4), E(6, 4)])
    with pytest.raises(impl.SnapshotOutOfDateError):
        s.apply_snapshot(pb.Snapshot(pb.SnapshotMetadata(3, 3)))
    # twin bug fixed (etcd semantics): the same index again is out of date, it would drop 5..6
    with pytest.raises(impl.SnapshotOutOfDateError):
        s.apply_snapshot(pb.Snapshot(pb.SnapshotMetadata(4, 4)))
    assert s.last_index() == 6


def test_hard_state(impl):
    s = impl.MemoryStorage()
    s.set_hard_state(pb.HardState(2, 1, 5))
    assert s.hard_state() == pb.HardState(2, 1, 5)
    assert s.initial_state()[0] == pb.HardState(2, 1, 5)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(-3, 2), st.integers(0, 6), st.integers(1, 3)),
        st.tuples(st.just("compact"), st.integers(-2, 8)),
        st.tuples(st.just("snap"), st.integers(-2, 8)),
        st.tuples(st.just("apply"), st.integers(0, 30)),
        st.tuples(st.just("entries"), st.integers(-2, 10), st.integers(0, 12), st.none() | st.integers(0, 120)),
        st.tuples(st.just("term"), st.integers(-2, 10)),
    ),
    max_size=40,
)


def _run(mod, script):
    """Apply the script; return every observable result (values or error class names)."""
    s = mod.MemoryStorage()
    out = []
    term = 1
    for op in script:
        try:
            if op[0] == "append":
                _, back, count, dterm = op
                term += dterm - 1
                start = max(0, s.last_index() + 1 + back)
                s.append([E(i, term, b"x" * (i % 7)) for i in range(start, start + count) if i > 0])
                r = None
            elif op[0] == "compact":
                r = s.compact(s.first_index() - 1 + op[1])
            elif op[0] == "snap":
                r = s.create_snapshot(s.first_index() - 1 + op[1], None, b"s").metadata
            elif op[0] == "apply":
                idx = s.last_index() + op[1]
                r = s.apply_snapshot(pb.Snapshot(pb.SnapshotMetadata(idx, term)))
            elif op[0] == "entries":
                lo = s.first_index() + op[1]
                r = s.entries(lo, lo + op[2], op[3])
            else:
                r = s.term(s.first_index() + op[1])
        except (ValueError, Exception) as exc:  # noqa: B014 - record the class name either way
            r = type(exc).__name__
        out.append((r, s.first_index(), s.last_index()))
    return out


@settings(max_examples=200, deadline=None)
@given(script=ops)
def test_native_behaves_like_twin(script):
    native, twin = load("raftlog", pure=False), load("raftlog", pure=True)
    assert _run(native, script) == _run(twin, script)
