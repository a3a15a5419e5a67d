"""Snapshot files: one raft snapshot (metadata + the application's opaque `data`, e.g. a reference
to the backend state) per file, written atomically with its own CRC-32C.

File name `<term>-<index>.snap` (16 hex digits each, etcd's naming: names sort oldest first). Layout:

    magic b"FKVSNAP1" | crc u32 | metadata length u32 | data length u64 | metadata | data

where metadata is raftpb's encode_snapshot_metadata() bytes and crc is CRC-32C of everything after
the crc field. A file is written under `<name>.tmp`, fsynced, renamed, and the directory fsynced,
so a crash leaves either the old set of snapshots or the new one, never a half file under a real
name. load() returns the newest snapshot that checks out; a corrupt one is renamed `*.broken` with a
warning and the next older one is tried.

Order with the WAL (the server's job): Snapshotter.save(snap) first, then
wal.save_snapshot_marker(index, term), then wal.release_lock_to(index). On restart use
load(acceptable=WAL.snapshot_markers(waldir)) so a snapshot whose marker never reached the WAL
(crash between the two steps) is not chosen.
"""
from __future__ import annotations

import logging
import os
import re
import struct

from fastkv._native import load
from fastkv import failpoints
from fastkv.wal.errors import SnapshotError
from fastkv.wal.segment import BROKEN_SUFFIX, TMP_SUFFIX, fsync_dir, pwrite_all

log = logging.getLogger("fastkv.wal")
_crc = load("crc32c").crc32c
raftpb = load("raftpb")

MAGIC = b"FKVSNAP1"
_HEADER = struct.Struct("<8sIIQ")  # magic, crc, metadata length, data length
SNAP_SUFFIX = ".snap"
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


def snap_name(term: int, index: int) -> str:
    return f"{term:016x}-{index:016x}{SNAP_SUFFIX}"


def encode_snapshot_file(snap) -> bytes:
    md = raftpb.encode_snapshot_metadata(snap.metadata)
    data = bytes(snap.data)
    lengths = struct.pack("<IQ", len(md), len(data))
    crc = _crc(data, _crc(md, _crc(lengths)))
    return _HEADER.pack(MAGIC, crc, len(md), len(data)) + md + data


def decode_snapshot_file(buf: bytes):
    """Parse a snapshot file; raises SnapshotError saying what is wrong."""
    if len(buf) < _HEADER.size:
        raise SnapshotError(f"{len(buf)} bytes is shorter than the {_HEADER.size}-byte header")
    magic, crc, md_len, data_len = _HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise SnapshotError(f"bad magic {magic!r}")
    if len(buf) != _HEADER.size + md_len + data_len:
        raise SnapshotError(f"header says {md_len}+{data_len} bytes, file holds {len(buf) - _HEADER.size}")
    view = memoryview(buf)
    if _crc(view[12:]) != crc:
        raise SnapshotError("crc mismatch")
    md = bytes(view[_HEADER.size : _HEADER.size + md_len])
    try:
        metadata = raftpb.decode_snapshot_metadata(md)
    except ValueError as exc:
        raise SnapshotError(f"bad metadata: {exc}") from None
    return raftpb.Snapshot(metadata, bytes(view[_HEADER.size + md_len :]))


class Snapshotter:
    def __init__(self, dirpath: str):
        self.dirpath = os.path.abspath(dirpath)
        os.makedirs(self.dirpath, exist_ok=True)

    def names(self) -> list[str]:
        """Snapshot file names, oldest first."""
        return sorted(f for f in os.listdir(self.dirpath) if _NAME.match(f))

    def save(self, snap) -> str | None:
        """Write `snap` durably; returns its path (None for an empty snapshot, which is not saved)."""
        if snap.metadata.index == 0:
            return None
        name = snap_name(snap.metadata.term, snap.metadata.index)
        final = os.path.join(self.dirpath, name)
        tmp = final + TMP_SUFFIX
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            pwrite_all(fd, encode_snapshot_file(snap), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        failpoints.hit("snap.save.before_rename")
        os.rename(tmp, final)
        fsync_dir(self.dirpath)
        return final

    def load(self, acceptable: set | None = None):
        """The newest valid snapshot, or None. With `acceptable` (a set of (index, term)), only
        snapshots the WAL has markers for are considered. Corrupt files are renamed *.broken."""
        for name in reversed(self.names()):
            m = _NAME.match(name)
            term, index = int(m.group(1), 16), int(m.group(2), 16)
            if acceptable is not None and (index, term) not in acceptable:
                continue
            path = os.path.join(self.dirpath, name)
            try:
                with open(path, "rb") as f:
                    snap = decode_snapshot_file(f.read())
                if (snap.metadata.term, snap.metadata.index) != (term, index):
                    raise SnapshotError(f"contents are ({snap.metadata.term}, {snap.metadata.index}), name says otherwise")
            except SnapshotError as exc:
                log.warning("snapshot %s is corrupt (%s); renamed to %s%s, trying an older one",
                            path, exc, name, BROKEN_SUFFIX)
                os.rename(path, path + BROKEN_SUFFIX)
                fsync_dir(self.dirpath)
                continue
            return snap
        return None

    def purge(self, keep: int = 5) -> list[str]:
        """Delete all but the newest `keep` snapshot files; returns the deleted names."""
        names = self.names()
        doomed = names[: max(len(names) - keep, 0)]
        for name in doomed:
            os.unlink(os.path.join(self.dirpath, name))
        if doomed:
            fsync_dir(self.dirpath)
        return doomed
