"""The unstable log tail, compiled and twin (same cases over both)."""
from __future__ import annotations

import pytest

from fastkv._native import load

from tests.conftest import native_and_twin  # tests/conftest.py (the shared fixtures)

impl = native_and_twin("unstable")


@pytest.fixture(scope="module")
def pb(impl):
    return load("raftpb", pure=not impl.__name__.endswith("unstable"))


def ents(pb, *pairs):
    return [pb.Entry(t, i) for i, t in pairs]


def test_indexes_and_terms(impl, pb):
    u = impl.Unstable(5)
    assert u.maybe_first_index() == 0 and u.maybe_last_index() == 0 and u.maybe_term(5) == -1
    u.truncate_and_append(ents(pb, (5, 1), (6, 1), (7, 2)))
    assert u.maybe_last_index() == 7 and u.maybe_term(7) == 2 and u.maybe_term(8) == -1
    assert u.maybe_term(4) == -1
    snap = pb.Snapshot(pb.SnapshotMetadata(4, 1))
    u2 = impl.Unstable(0)
    u2.restore(snap)
    assert (u2.offset, u2.maybe_first_index(), u2.maybe_last_index(), u2.maybe_term(4)) == (5, 5, 4, 1)
    u2.stable_snap_to(3)
    assert u2.snapshot is not None
    u2.stable_snap_to(4)
    assert u2.snapshot is None


def test_truncate_and_append(impl, pb):
    u = impl.Unstable(5)
    u.truncate_and_append(ents(pb, (5, 1), (6, 1), (7, 1)))
    u.truncate_and_append(ents(pb, (7, 2), (8, 2)))   # conflicting suffix replaced
    assert [(e.index, e.term) for e in u.entries] == [(5, 1), (6, 1), (7, 2), (8, 2)]
    u.truncate_and_append(ents(pb, (4, 3)))           # before the offset: everything replaced
    assert u.offset == 4 and [(e.index, e.term) for e in u.entries] == [(4, 3)]


def test_stable_to_only_on_matching_term(impl, pb):
    u = impl.Unstable(5)
    u.truncate_and_append(ents(pb, (5, 1), (6, 1), (7, 2)))
    u.stable_to(6, 2)      # term mismatch: a newer append replaced it; keep
    assert u.offset == 5
    u.stable_to(6, 1)
    assert u.offset == 7 and [(e.index, e.term) for e in u.entries] == [(7, 2)]
    u.stable_to(9, 2)      # unknown index: ignored
    assert u.offset == 7


def test_append_proposals_and_slice(impl, pb):
    u = impl.Unstable(3)
    fresh = [pb.Entry(data=b"a"), pb.Entry(data=b"b")]
    assert u.append_proposals(4, 3, fresh) == 4
    assert [(e.index, e.term, e.data) for e in u.entries] == [(3, 4, b"a"), (4, 4, b"b")]
    assert [e.data for e in u.slice(4, 5)] == [b"b"]
    with pytest.raises(ValueError):
        u.slice(2, 4)
    with pytest.raises(ValueError):
        u.slice(3, 6)


def test_size_helpers(impl, pb):
    es = [pb.Entry(1, i, 0, b"x" * 10) for i in range(1, 6)]   # 31 bytes each
    assert impl.entries_size(es) == 155
    assert len(impl.limit_size(es, 62)) == 2
    assert len(impl.limit_size(es, 61)) == 1
    assert len(impl.limit_size(es, 0)) == 1       # at least one entry
    assert impl.limit_size(es, None) is es
