"""The intended use by the server, end to end: WAL + Snapshotter + MemoryStorage through a
snapshot/compaction cycle and a restart. Doubles as the example for the server room."""
import os

from fastkv._native import load
from fastkv.wal import WAL, Snapshotter

from .helpers import entries, pb

raftlog = load("raftlog")
SEG = 16 * 1024


def _restart(waldir, snapdir):
    """What a member does on start: newest snapshot the WAL knows, WAL from its marker, rebuild
    the raft log storage from both."""
    snapshotter = Snapshotter(snapdir)
    snap = snapshotter.load(acceptable=WAL.snapshot_markers(waldir))
    marker = (snap.metadata.index, snap.metadata.term) if snap else None
    wal = WAL.open(waldir, marker, segment_size=SEG)
    metadata, hard_state, ents = wal.read_all()
    storage = raftlog.MemoryStorage()
    if snap:
        storage.apply_snapshot(snap)
    storage.set_hard_state(hard_state)
    storage.append(ents)
    return wal, storage, metadata


def test_snapshot_compaction_and_restart(tmp_path):
    waldir, snapdir = str(tmp_path / "member" / "wal"), str(tmp_path / "member" / "snap")
    wal = WAL.create(waldir, b"member=1;cluster=9", segment_size=SEG)
    storage = raftlog.MemoryStorage()
    snapshotter = Snapshotter(snapdir)
    # the Ready loop: WAL first (fsynced), then the in-memory storage raft reads from
    for b in range(60):
        batch = entries(b * 10 + 1, b * 10 + 10, term=1 + b // 20)
        hs = pb.HardState(1 + b // 20, 1, b * 10 + 10)
        wal.save(hs, batch)
        storage.set_hard_state(hs)
        storage.append(batch)
        if b == 39:  # the applier reached 400: snapshot, mark it, release and compact
            snap = storage.create_snapshot(400, pb.ConfState([1, 2, 3]), b"backend@400")
            snapshotter.save(snap)
            wal.save_snapshot_marker(snap.metadata.index, snap.metadata.term)
            wal.release_lock_to(snap.metadata.index)
            storage.compact(snap.metadata.index)
    segments_before = wal.segment_names()
    wal.close()
    assert len(os.listdir(waldir)) == len(segments_before) and segments_before[0] != "0000000000000000-0000000000000000.wal"

    wal, restored, metadata = _restart(waldir, snapdir)
    with wal:
        assert metadata == b"member=1;cluster=9"
        assert restored.snapshot().metadata == pb.SnapshotMetadata(400, 2, pb.ConfState([1, 2, 3]))
        assert restored.snapshot().data == b"backend@400"
        assert (restored.first_index(), restored.last_index()) == (401, 600)
        assert restored.entries(401, 601) == storage.entries(401, 601)
        assert restored.term(400) == 2 and restored.term(600) == 3
        assert restored.hard_state() == pb.HardState(3, 1, 600)
        assert restored.initial_state()[1] == pb.ConfState([1, 2, 3])
        # and the member keeps going where it stopped
        wal.save(pb.HardState(3, 1, 610), entries(601, 610, term=3))
    wal, restored, _ = _restart(waldir, snapdir)
    with wal:
        assert restored.last_index() == 610
