"""Snapshot files: atomic save, newest valid one loaded, corrupt ones skipped and renamed."""
import logging
import os

import pytest

from fastkv.wal import WAL, SnapshotError, Snapshotter
from fastkv.wal.snapshotter import decode_snapshot_file, encode_snapshot_file, snap_name
from .helpers import entries, pb


def snap(index, term, data=b"backend@", voters=(1, 2, 3)):
    return pb.Snapshot(pb.SnapshotMetadata(index, term, pb.ConfState(voters, [4])), data + str(index).encode())


def test_save_and_load_newest(tmp_path):
    s = Snapshotter(str(tmp_path / "snap"))
    assert s.load() is None
    assert s.save(pb.Snapshot()) is None  # empty snapshots are not written
    for index, term in [(10, 1), (20, 2), (15, 2)]:
        path = s.save(snap(index, term))
        assert os.path.basename(path) == snap_name(term, index)
    assert s.load() == snap(20, 2)
    assert not [f for f in os.listdir(s.dirpath) if f.endswith(".tmp")]


def test_corrupt_newest_is_skipped_with_a_warning(tmp_path, caplog):
    s = Snapshotter(str(tmp_path / "snap"))
    s.save(snap(10, 1))
    newest = s.save(snap(20, 1, data=b"x" * 1000))
    with open(newest, "r+b") as f:
        f.seek(500)
        b = f.read(1)
        f.seek(500)
        f.write(bytes([b[0] ^ 1]))
    with caplog.at_level(logging.WARNING, logger="fastkv.wal"):
        assert s.load() == snap(10, 1)
    assert "corrupt" in caplog.text and os.path.exists(newest + ".broken") and not os.path.exists(newest)


@pytest.mark.parametrize("damage", ["truncate", "empty", "magic", "name"])
def test_every_kind_of_damage_falls_back(tmp_path, damage):
    s = Snapshotter(str(tmp_path / "snap"))
    s.save(snap(10, 1))
    newest = s.save(snap(20, 1))
    if damage == "truncate":
        os.truncate(newest, os.path.getsize(newest) - 1)
    elif damage == "empty":
        os.truncate(newest, 0)
    elif damage == "magic":
        with open(newest, "r+b") as f:
            f.write(b"NOTASNAP")
    else:  # valid contents under the wrong name
        os.rename(newest, os.path.join(s.dirpath, snap_name(1, 30)))
        newest = os.path.join(s.dirpath, snap_name(1, 30))
    assert s.load() == snap(10, 1)
    assert os.path.exists(newest + ".broken")


def test_decode_errors_are_clean():
    good = encode_snapshot_file(snap(5, 1))
    assert decode_snapshot_file(good) == snap(5, 1)
    for cut in range(len(good)):
        with pytest.raises(SnapshotError):
            decode_snapshot_file(good[:cut])
    for pos in range(len(good)):
        bad = bytearray(good)
        bad[pos] ^= 0x40
        with pytest.raises(SnapshotError):
            decode_snapshot_file(bytes(bad))


def test_only_snapshots_the_wal_knows_are_loaded(tmp_path):
    waldir, snapdir = str(tmp_path / "wal"), str(tmp_path / "snap")
    s = Snapshotter(snapdir)
    with WAL.create(waldir, b"m") as w:
        w.save(pb.HardState(1, 1, 30), entries(1, 30))
        s.save(snap(10, 1))
        w.save_snapshot_marker(10, 1)
        s.save(snap(20, 1))  # crash before its marker reached the WAL
    markers = WAL.snapshot_markers(waldir)
    assert markers == {(0, 0), (10, 1)}
    chosen = s.load(acceptable=markers)
    assert chosen == snap(10, 1)
    with WAL.open(waldir, (chosen.metadata.index, chosen.metadata.term)) as w:
        assert w.read_all()[2] == entries(11, 30)


def test_purge_keeps_the_newest(tmp_path):
    s = Snapshotter(str(tmp_path / "snap"))
    for i in range(1, 8):
        s.save(snap(i * 10, 1))
    assert s.purge(keep=3) == [snap_name(1, i * 10) for i in range(1, 5)]
    assert s.names() == [snap_name(1, i * 10) for i in range(5, 8)]
