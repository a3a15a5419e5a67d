"""WAL behaviour: create/open/read_all, conflicting suffixes, segment cuts, snapshot markers,
releasing segments, locking, metrics hooks, failed-fsync handling."""
import os

import pytest
from hypothesis import given, settings, strategies as st

from fastkv.wal import (
    WAL,
    WALClosedError,
    WALExistsError,
    WALLockedError,
    WALNotFoundError,
    WALSnapshotNotFoundError,
)
from fastkv.wal.segment import list_segments, parse_name
from .helpers import entries, entry, pb

SMALL = 16 * 1024  # segment size that makes cuts frequent


def test_create_then_open_round_trip(tmp_path):
    d = str(tmp_path / "wal")
    with WAL.create(d, b"member=1,cluster=7") as w:
        w.save(pb.HardState(1, 1, 0), entries(1, 10))
        w.save(pb.HardState(1, 1, 5), [])
        w.save(None, entries(11, 12))
    with WAL.open(d) as w:
        meta, hs, ents = w.read_all()
        assert meta == b"member=1,cluster=7"
        assert hs == pb.HardState(1, 1, 5)
        assert ents == entries(1, 12)
        assert w.last_index == 12
        with pytest.raises(Exception):
            w.read_all()  # handed over once
    # the first segment is preallocated and named 0-0
    assert os.listdir(d) == ["0000000000000000-0000000000000000.wal"]
    assert os.path.getsize(os.path.join(d, os.listdir(d)[0])) == 64 * 1024 * 1024


def test_create_refuses_existing_and_open_refuses_missing(tmp_path):
    d = str(tmp_path / "wal")
    WAL.create(d, b"m").close()
    with pytest.raises(WALExistsError):
        WAL.create(d, b"m")
    with pytest.raises(WALNotFoundError):
        WAL.open(str(tmp_path / "nothing"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(WALNotFoundError):
        WAL.open(str(tmp_path / "empty"))
    WAL.create(str(tmp_path / "empty"), b"m").close()  # an empty directory is fine to create in


def test_later_entries_replace_conflicting_suffix(tmp_path):
    d = str(tmp_path / "wal")
    with WAL.create(d, b"m") as w:
        w.save(pb.HardState(1, 1, 0), entries(1, 10, term=1))
        w.save(pb.HardState(2, 2, 0), entries(5, 7, term=2))  # new leader truncates 5..10
        w.save(None, entries(8, 8, term=2))
    with WAL.open(d) as w:
        _, hs, ents = w.read_all()
    assert ents == entries(1, 4, term=1) + entries(5, 8, term=2)
    assert hs.term == 2


@settings(max_examples=25, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 6), st.integers(1, 8)), min_size=1, max_size=25))
def test_recovered_log_matches_model(tmp_path_factory, ops):
    """Random appends, each possibly rewinding over earlier entries with a higher term, across
    segment cuts: read_all equals a simple model of the raft log."""
    d = str(tmp_path_factory.mktemp("w") / "wal")
    model: list = []
    term = 1
    with WAL.create(d, b"m", segment_size=2048) as w:
        for back, count in ops:
            start = max(1, len(model) + 1 - back)
            if back:
                term += 1
            batch = entries(start, start + count - 1, term)
            w.save(pb.HardState(term, 0, 0), batch)
            model = model[: start - 1] + batch
    with WAL.open(d, segment_size=2048) as w:
        _, hs, ents = w.read_all()
    assert ents == model and hs.term == term


def test_segments_cut_and_carry_state(tmp_path):
    d = str(tmp_path / "wal")
    cuts, syncs = [], []
    w = WAL.create(d, b"meta", segment_size=SMALL, on_cut=cuts.append, on_fsync=syncs.append)
    for b in range(80):
        w.save(pb.HardState(3, 1, b), entries(b * 10 + 1, b * 10 + 10))
    names = list_segments(d)
    assert len(names) == len(cuts) + 1 > 3
    assert [n.seq for n in names] == list(range(len(names)))
    assert len(syncs) == 80 and all(s >= 0 for s in syncs) and all(c > 0 for c in cuts)
    # each segment is named after the first index it will hold, and closed segments end at their
    # last record (no preallocated slack left behind)
    for a, b in zip(names, names[1:]):
        assert b.index > a.index
        assert os.path.getsize(os.path.join(d, a.filename)) <= SMALL + 2000
    assert not [f for f in os.listdir(d) if f.endswith(".tmp")]
    w.close()
    with WAL.open(d, segment_size=SMALL) as w:
        meta, hs, ents = w.read_all()
    assert meta == b"meta" and hs == pb.HardState(3, 1, 79) and ents == entries(1, 800)


def test_snapshot_marker_and_release(tmp_path):
    d = str(tmp_path / "wal")
    w = WAL.create(d, b"meta", segment_size=SMALL)
    for b in range(40):
        w.save(pb.HardState(1, 1, b * 10 + 10), entries(b * 10 + 1, b * 10 + 10))
    w.save_snapshot_marker(250, 1)
    before = list_segments(d)
    w.release_lock_to(250)
    after = list_segments(d)
    assert after[0].index <= 250 < after[1].index  # the segment holding index 250 is kept
    assert len(after) < len(before) and after[-1] == before[-1]
    w.save(None, entries(401, 405))
    w.close()
    with WAL.open(d, (250, 1), segment_size=SMALL) as w:
        meta, hs, ents = w.read_all()
    assert meta == b"meta" and hs.commit == 400 and ents == entries(251, 405)
    with pytest.raises(WALSnapshotNotFoundError):
        WAL.open(d, (250, 2), segment_size=SMALL)  # wrong term
    with pytest.raises(WALSnapshotNotFoundError):
        WAL.open(d, (251, 1), segment_size=SMALL)  # no such marker
    with pytest.raises(WALSnapshotNotFoundError):
        WAL.open(d, None, segment_size=SMALL)  # the beginning was released


def test_release_keeps_max_wals_segments(tmp_path):
    d = str(tmp_path / "wal")
    w = WAL.create(d, b"meta", segment_size=SMALL)
    for b in range(100):
        w.save(pb.HardState(1, 1, b * 10 + 10), entries(b * 10 + 1, b * 10 + 10))
    w.save_snapshot_marker(990, 1)
    before = list_segments(d)
    assert len(before) > 4
    w.release_lock_to(990, keep=3)   # etcd's --max-wals 3: the newest three stay
    assert list_segments(d) == before[-3:]
    w.release_lock_to(990, keep=10)  # fewer than keep: nothing to do
    assert list_segments(d) == before[-3:]
    w.close()
    with WAL.open(d, (990, 1), segment_size=SMALL) as w:
        assert w.read_all()[2] == entries(991, 1000)


def test_release_never_drops_the_tail(tmp_path):
    d = str(tmp_path / "wal")
    with WAL.create(d, b"m", segment_size=SMALL) as w:
        for b in range(10):
            w.save(None, entries(b * 20 + 1, b * 20 + 20))
        w.save_snapshot_marker(200, 1)
        w.release_lock_to(10**9)
        assert len(list_segments(d)) == 1
        w.save(None, entries(201, 201))
    with WAL.open(d, (200, 1), segment_size=SMALL) as w:
        assert w.read_all()[2] == entries(201, 201)


def test_second_open_is_locked_out(tmp_path):
    d = str(tmp_path / "wal")
    w = WAL.create(d, b"m")
    with pytest.raises(WALLockedError):
        WAL.open(d)
    w.close()
    WAL.open(d).close()


def test_closed_wal_refuses_writes(tmp_path):
    w = WAL.create(str(tmp_path / "wal"), b"m")
    w.close()
    with pytest.raises(WALClosedError):
        w.save(None, [entry(1)])


def test_failed_fsync_closes_the_wal(tmp_path, monkeypatch):
    d = str(tmp_path / "wal")
    w = WAL.create(d, b"m")
    w.save(None, entries(1, 3))

    def broken_fdatasync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken_fdatasync)
    with pytest.raises(OSError):
        w.save(None, entries(4, 5))
    monkeypatch.undo()
    with pytest.raises(WALClosedError):
        w.save(None, entries(4, 5))
    with WAL.open(d) as w2:  # recovery decides what survived: at least the fsynced batch
        assert w2.read_all()[2][:3] == entries(1, 3)


def test_stale_tmp_segment_is_ignored(tmp_path):
    d = str(tmp_path / "wal")
    with WAL.create(d, b"m") as w:
        w.save(None, entries(1, 5))
    stale = os.path.join(d, "0000000000000001-0000000000000006.wal.tmp")
    with open(stale, "wb") as f:
        f.write(b"half-made segment")
    with WAL.open(d) as w:
        assert w.read_all()[2] == entries(1, 5)
    assert not os.path.exists(stale)


def test_segment_names():
    n = parse_name("000000000000000a-00000000000000ff.wal")
    assert (n.seq, n.index) == (10, 255) and n.filename == "000000000000000a-00000000000000ff.wal"
    assert parse_name("0-0.wal") is None and parse_name("000000000000000a-00000000000000ff.wal.tmp") is None


def test_fsync_only_when_raft_needs_it(tmp_path):
    """etcd's MustSync: entries, or a new term or vote, are fsynced; a commit-only hard state is
    written without a flush; an unchanged one writes nothing."""
    d = str(tmp_path / "wal")
    syncs = []
    w = WAL.create(d, b"m", on_fsync=syncs.append)
    w.save(pb.HardState(1, 1, 0), entries(1, 3))
    assert len(syncs) == 1
    off = w.tail_offset
    w.save(pb.HardState(1, 1, 3), [])  # commit only
    assert len(syncs) == 1 and w.tail_offset > off
    off = w.tail_offset
    w.save(pb.HardState(1, 1, 3), [])  # unchanged
    w.save(None, [])
    assert len(syncs) == 1 and w.tail_offset == off
    w.save(pb.HardState(2, 0, 3), [])  # new term
    w.save(pb.HardState(2, 3, 3), [])  # new vote
    assert len(syncs) == 3
    w.close()
    with WAL.open(d) as w:
        _, hs, ents = w.read_all()
    assert hs == pb.HardState(2, 3, 3) and ents == entries(1, 3)


def test_disk_full_during_a_cut_keeps_every_acknowledged_batch(tmp_path, monkeypatch):
    """ENOSPC while preallocating the next segment: save() raises, the WAL closes itself, and
    reopening recovers every batch that save() acknowledged (the half-made .tmp is discarded)."""
    import errno

    import fastkv.wal.segment as segment

    d = str(tmp_path / "wal")
    w = WAL.create(d, b"m", segment_size=SMALL)
    acked = 0
    real = os.posix_fallocate
    calls = {"n": 0}

    def full_disk(fd, off, size):
        calls["n"] += 1
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        for b in range(200):
            if b == 5:
                monkeypatch.setattr(segment.os, "posix_fallocate", full_disk)
            w.save(pb.HardState(1, 1, b), entries(b * 10 + 1, b * 10 + 10))
            acked = b * 10 + 10
    monkeypatch.setattr(segment.os, "posix_fallocate", real)
    assert calls["n"] == 1 and acked >= 50
    with pytest.raises(WALClosedError):
        w.save(None, [entry(acked + 1)])
    with WAL.open(d, segment_size=SMALL) as w2:
        ents = w2.read_all()[2]
    assert ents[:acked] == entries(1, acked) and ents == entries(1, len(ents))
    assert not [f for f in os.listdir(d) if f.endswith(".tmp")]


@pytest.mark.parametrize("pure", [False, True], ids=["native-writer", "twin-writer"])
def test_writes_through_the_writer_thread_recover_like_save(tmp_path, pure):
    """prepare / start_write / end_write (the Ready loop's path under load) leave the same WAL as
    save(): entries, hard states, segment cuts and the fsync metric."""
    from fastkv._native import load

    writer = load("walwrite", pure=pure).DurableWriter()
    d = str(tmp_path / "wal")
    syncs = []
    w = WAL.create(d, b"m", segment_size=SMALL, on_fsync=syncs.append)
    try:
        for i in range(1, 200, 4):
            for hs, ents in ((pb.HardState(1, 1, max(0, i - 1)), entries(i, i + 3)),
                             (pb.HardState(1, 1, i + 3), [])):  # then a commit-only, unsynced
                batch = w.prepare(hs, ents)
                if w.cut_due(batch):
                    w.write(batch)
                    continue
                w.start_write(batch, writer)
                w.end_write(batch, writer.wait())
        assert w.prepare(pb.HardState(1, 1, 200), []) is None  # unchanged: nothing to write
        assert len(syncs) == 50 and len(list_segments(d)) >= 2
    finally:
        w.close()
        writer.close()
    with WAL.open(d) as w:
        _, hs, ents = w.read_all()
    assert hs == pb.HardState(1, 1, 200) and ents == entries(1, 200)


def test_failed_write_through_the_writer_closes_the_wal(tmp_path):
    from fastkv._native import load

    writer = load("walwrite").DurableWriter()
    d = str(tmp_path / "wal")
    w = WAL.create(d, b"m")
    try:
        w.save(None, entries(1, 3))
        batch = w.prepare(None, entries(4, 5))
        w.start_write(batch, writer)
        writer.wait()
        with pytest.raises(OSError):
            w.end_write(batch, OSError(5, "Input/output error"))  # as result() would raise it
        with pytest.raises(WALClosedError):
            w.save(None, entries(4, 5))
    finally:
        writer.close()
    with WAL.open(d) as w2:
        assert w2.read_all()[2][:3] == entries(1, 3)
