"""The write-ahead log: raft entries, hard state and snapshot markers, durable before anything is
sent or answered.

Contract for the server (the single Ready loop is the only writer; a WAL is not thread-safe):

    wal = WAL.create(dirpath, metadata)                   # new WAL; WALExistsError if one exists
    wal = WAL.open(dirpath, snapshot_marker=(i, t)|None)  # recover (repairs a torn tail)
    metadata, hard_state, entries = wal.read_all()        # entries after the marker, conflicts resolved
    wal.save(hard_state | None, entries)                  # one encode, one write, one fdatasync
                                                          # (or in steps: prepare, start/end_write)
    wal.save_snapshot_marker(index, term)                 # fsynced
    wal.release_lock_to(index)                            # delete segments a snapshot covers
    wal.close()

`save` returning means the batch is on disk; an OSError from it leaves the WAL closed, because after
a failed fsync the kernel may have dropped the dirty pages and nothing written since the last good
fsync can be trusted: reopen (recovery decides what survived) or stop the member. The failed batch
may or may not have survived (e.g. ENOSPC while cutting the next segment comes after the batch's
own fdatasync); raft tolerates either.

Metrics hooks: on_fsync(seconds) after every fdatasync of a save/marker, on_cut(seconds) after every
segment cut (feed etcd_disk_wal_fsync_duration_seconds and a cut-duration histogram).

Each segment opens with a CRC record carrying the checksum chain, then the metadata and (after a
cut) the latest hard state, so dropping older segments never loses either.
"""
from __future__ import annotations

import fcntl
import mmap
import os
import shutil
import struct
import time
from typing import Callable, NamedTuple

from fastkv._native import load
from fastkv import failpoints
from fastkv.wal import repair
from fastkv.wal.errors import (
    WALClosedError,
    WALCorruptError,
    WALError,
    WALExistsError,
    WALLockedError,
    WALNotFoundError,
    WALSnapshotNotFoundError,
)
from fastkv.wal.segment import (
    SEGMENT_SIZE,
    TMP_SUFFIX,
    SegmentName,
    fsync_dir,
    is_all_zero,
    list_segments,
    preallocate,
    pwrite_all,
)

codec = load("walcodec")
raftpb = load("raftpb")

_MARKER = struct.Struct("<QQ")  # snapshot marker record: index, term


class PreparedBatch(NamedTuple):
    """An encoded save (WAL.prepare), not yet written."""

    buf: bytes
    crc: int          # the checksum chain after it
    sync: bool        # fdatasync after the write (raft's MustSync)
    hard_state: object
    last_index: int   # of its last entry; 0 without entries


def _lock(fd: int, path: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WALLockedError(f"{path} is locked by another WAL (another fastkv process on this data dir?)") from None


class WAL:
    """An open WAL positioned at the end of its last segment, ready to append."""

    def __init__(self, dirpath: str, *, segment_size: int = SEGMENT_SIZE,
                 on_fsync: Callable[[float], None] | None = None,
                 on_cut: Callable[[float], None] | None = None):
        # use WAL.create / WAL.open
        self.dirpath = dirpath
        self.segment_size = segment_size
        self.on_fsync = on_fsync
        self.on_cut = on_cut
        self._segments: list[SegmentName] = []
        self._fd: int | None = None
        self._off = 0
        self._crc = 0
        self._last_index = 0
        self._metadata = b""
        self._hard_state = None
        self._recovered = None

    # --- creating and opening -----------------------------------------------------------------
    @classmethod
    def exists(cls, dirpath: str) -> bool:
        return os.path.isdir(dirpath) and bool(list_segments(dirpath))

    @classmethod
    def create(cls, dirpath: str, metadata: bytes, **kwargs) -> "WAL":
        """Create a WAL holding `metadata` (e.g. member and cluster id). The first segment is built
        in `<dirpath>.tmp` and renamed into place, so a crash never leaves a half-made WAL."""
        dirpath = os.path.abspath(dirpath)
        if cls.exists(dirpath):
            raise WALExistsError(f"a WAL already exists in {dirpath}")
        if os.path.isdir(dirpath) and os.listdir(dirpath):
            raise WALExistsError(f"{dirpath} is not empty; refusing to create a WAL in it")
        segment_size = kwargs.get("segment_size", SEGMENT_SIZE)
        tmpdir = dirpath + TMP_SUFFIX
        if os.path.exists(tmpdir):
            shutil.rmtree(tmpdir)
        os.makedirs(tmpdir)
        first = os.path.join(tmpdir, SegmentName(0, 0).filename)
        fd = os.open(first, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            preallocate(fd, segment_size)
            rec1, crc = codec.encode_record(codec.CRC_TYPE, b"", 0)
            rec2, crc = codec.encode_record(codec.METADATA_TYPE, bytes(metadata), crc)
            rec3, crc = codec.encode_record(codec.SNAPSHOT_TYPE, _MARKER.pack(0, 0), crc)
            pwrite_all(fd, rec1 + rec2 + rec3, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(tmpdir)
        if os.path.isdir(dirpath):
            os.rmdir(dirpath)  # empty (checked above); rename cannot replace a non-empty directory
        os.rename(tmpdir, dirpath)
        fsync_dir(os.path.dirname(dirpath))
        return cls.open(dirpath, None, **kwargs)

    @classmethod
    def open(cls, dirpath: str, snapshot_marker: tuple[int, int] | None = None, **kwargs) -> "WAL":
        """Open an existing WAL and recover it from `snapshot_marker` (index, term) onward; None
        means from the beginning (the (0, 0) marker every WAL starts with)."""
        dirpath = os.path.abspath(dirpath)
        wal = cls(dirpath, **kwargs)
        wal._recover(snapshot_marker or (0, 0))
        return wal

    @classmethod
    def snapshot_markers(cls, dirpath: str) -> set[tuple[int, int]]:
        """Every (index, term) snapshot marker readable in the WAL (read-only: no lock, no repair;
        decoding stops at the first bad record). Pass to Snapshotter.load(acceptable=...)."""
        markers = set()
        crc = 0
        for name in list_segments(dirpath):
            with open(os.path.join(dirpath, name.filename), "rb") as f:
                buf = f.read()
            records, _end, crc, err = codec.decode_records(buf, 0, crc)
            markers.update(_MARKER.unpack(v) for t, v in records if t == codec.SNAPSHOT_TYPE)
            if err is not None:
                break
        return markers

    def _path(self, name: SegmentName) -> str:
        return os.path.join(self.dirpath, name.filename)

    def _recover(self, marker: tuple[int, int]) -> None:
        if not os.path.isdir(self.dirpath):
            raise WALNotFoundError(f"no WAL directory {self.dirpath}")
        segments = list_segments(self.dirpath)
        if not segments:
            raise WALNotFoundError(f"no WAL segments in {self.dirpath}")
        for a, b in zip(segments, segments[1:]):
            if b.seq != a.seq + 1:
                raise WALCorruptError(self._path(b), None, f"segment sequence jumps from {a.seq} to {b.seq}")
        snap_index, snap_term = marker
        start = None
        for i, s in enumerate(segments):
            if s.index <= snap_index:
                start = i
        if start is None:
            raise WALSnapshotNotFoundError(
                f"snapshot index {snap_index} is older than the oldest WAL segment ({segments[0].filename})")
        self._segments = segments
        tail_path = self._path(segments[-1])
        fd = os.open(tail_path, os.O_RDWR | os.O_CLOEXEC)
        _lock(fd, tail_path)
        try:
            # under the lock: a .tmp segment is a cut that crashed before its rename
            for f in os.listdir(self.dirpath):
                if f.endswith(".wal" + TMP_SUFFIX):
                    os.unlink(os.path.join(self.dirpath, f))
            self._read_segments(segments[start:], snap_index, snap_term, fd)
            preallocate(fd, self.segment_size)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _read_segments(self, segments, snap_index: int, snap_term: int, tail_fd: int) -> None:
        entries: list = []
        metadata = None
        hard_state = None
        found_marker = False
        last_index = 0
        crc = 0
        STATE, META, SNAP = codec.STATE_TYPE, codec.METADATA_TYPE, codec.SNAPSHOT_TYPE
        for k, seg in enumerate(segments):
            path = self._path(seg)
            is_tail = k == len(segments) - 1
            records, end, crc, err, size, torn_reason = self._decode_file(path, crc, is_tail, tail_fd)
            # every segment opens with its CRC and metadata records, fsynced before the segment
            # was put in place: no torn write can reach them
            if len(records) < 2 or records[0][0] != codec.CRC_TYPE or records[1][0] != META:
                raise WALCorruptError(path, 0 if not records else end, "the segment's opening CRC and "
                                      "metadata records are damaged")
            # the first segment also opens with the (0, 0) snapshot marker, written in the same
            # fsynced file before it got its name (WAL.create): missing, it is damage, not a torn write
            if seg.seq == 0 and (len(records) < 3 or records[2] != (SNAP, _MARKER.pack(0, 0))):
                raise WALCorruptError(path, end if len(records) < 3 else None,
                                      "the first segment's opening snapshot marker is damaged")
            try:
                others, seen = codec.collect_entries(records, entries, snap_index + 1)
            except ValueError as exc:
                raise WALCorruptError(path, None, str(exc)) from None
            if seen is not None:
                last_index = seen
            for rtype, value in others:
                if rtype == STATE:
                    hard_state = raftpb.decode_hard_state(value)
                elif rtype == META:
                    if metadata is not None and metadata != value:
                        raise WALCorruptError(path, None, "segments disagree on the WAL metadata")
                    metadata = value
                elif rtype == SNAP:
                    index, term = _MARKER.unpack(value)
                    if index == snap_index:
                        if term != snap_term:
                            raise WALSnapshotNotFoundError(
                                f"snapshot marker mismatch at index {index}: WAL has term {term}, asked {snap_term}")
                        found_marker = True
                    if index > last_index:
                        last_index = index
            if is_tail:
                tail_repair = (path, end, torn_reason)
                self._off = end
        if not found_marker:
            raise WALSnapshotNotFoundError(f"snapshot marker ({snap_index}, {snap_term}) is not in the WAL")
        path, end, torn_reason = tail_repair
        if torn_reason is not None:  # only once everything else checked out
            repair.truncate_tail(path, end, self.segment_size, torn_reason)
        self._crc = crc
        self._last_index = last_index
        self._metadata = metadata if metadata is not None else b""
        self._hard_state = hard_state if hard_state is not None else raftpb.HardState()
        self._recovered = (self._metadata, self._hard_state, entries)

    def _decode_file(self, path: str, crc: int, is_tail: bool, tail_fd: int):
        """Decode one segment. Returns (records, end, crc, err, size, torn_reason); raises
        WALCorruptError for anything a torn write cannot explain."""
        fd = tail_fd if is_tail else os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                raise WALCorruptError(path, 0, "empty segment file")
            with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as buf:
                records, end, crc, err = codec.decode_records(buf, 0, crc, raftpb.Entry)
                torn_reason = None
                if err is not None:
                    if not is_tail:
                        raise WALCorruptError(path, err.offset, f"{err.kind} record: {err.detail}")
                    if not repair.is_torn(buf, size, err):
                        raise WALCorruptError(path, err.offset, f"{err.kind} record: {err.detail}")
                    torn_reason = f"torn write at byte offset {err.offset} ({err.kind}: {err.detail})"
                elif not is_all_zero(buf, end, size):
                    if not is_tail:
                        raise WALCorruptError(path, end, "unexpected bytes after the last record of a closed segment")
                    if not repair.is_unwritten_after_end(buf, size, end):
                        raise WALCorruptError(path, end, "zero length word inside written data")
                    torn_reason = f"stray bytes after the last record at byte offset {end}"
            return records, end, crc, err, size, torn_reason
        finally:
            if not is_tail:
                os.close(fd)

    # --- reading ---------------------------------------------------------------------------
    def read_all(self):
        """(metadata, hard_state, entries) recovered by open(); entries are those after the
        snapshot marker, with overwritten suffixes resolved. Call once (it hands over the list)."""
        if self._recovered is None:
            raise WALError("read_all() returns the recovered state once, after WAL.open()")
        out, self._recovered = self._recovered, None
        return out

    @property
    def last_index(self) -> int:
        """Index of the last entry (or snapshot marker) written."""
        return self._last_index

    @property
    def metadata(self) -> bytes:
        return self._metadata

    @property
    def tail_offset(self) -> int:
        """Byte offset in the tail segment where the next record will be written."""
        return self._off

    @property
    def tail_path(self) -> str:
        return self._path(self._segments[-1])

    def segment_names(self) -> list[str]:
        return [s.filename for s in self._segments]

    # --- writing ---------------------------------------------------------------------------
    def _fd_or_raise(self) -> int:
        if self._fd is None:
            raise WALClosedError("the WAL is closed")
        return self._fd

    def _write_synced(self, buf: bytes, sync: bool = True) -> None:
        fd = self._fd_or_raise()
        try:
            if failpoints.ACTIVE:
                failpoints.hit("wal.save.before_write")
                # a batch inside one or two sectors cannot tear (sector writes are atomic): count
                # only batches spanning three or more
                if len(buf) > 1024 and failpoints.fires("wal.save.torn_write"):
                    self._write_with_a_hole(fd, buf)
                    failpoints.trigger("wal.save.torn_write")
            pwrite_all(fd, buf, self._off)
            if not sync:
                self._off += len(buf)
                return
            if failpoints.ACTIVE:
                failpoints.hit("wal.save.before_fsync")
            t0 = time.perf_counter()
            os.fdatasync(fd)
            elapsed = time.perf_counter() - t0
            if failpoints.ACTIVE:
                failpoints.hit("wal.save.after_fsync")
        except OSError:
            self._abandon()
            raise
        self._off += len(buf)
        if self.on_fsync is not None:
            self.on_fsync(elapsed)

    def _write_with_a_hole(self, fd: int, buf: bytes) -> None:
        """Failpoint helper: write `buf` except the batch's part of its middle 512-byte sector,
        which is what a crash leaves when the disk persisted the other sectors of an unsynced
        write."""
        start, end = self._off, self._off + len(buf)
        hole = (start // 512 + (end - 1) // 512) // 2
        lo, hi = max(start, hole * 512), min(end, (hole + 1) * 512)
        pwrite_all(fd, buf[: lo - start], start)
        pwrite_all(fd, buf[hi - start :], hi)

    def save(self, hard_state, entries) -> None:
        """Append `entries` then `hard_state` (either may be empty/None) with one write and one
        fdatasync; durable when this returns.

        As etcd does (raft's MustSync), a save that carries no entries and changes neither term
        nor vote is written without the fdatasync: the commit index is volatile in raft and is
        re-learned from the leader, and followers update it on every heartbeat. An unchanged hard
        state with no entries writes nothing."""
        batch = self.prepare(hard_state, entries)
        if batch is not None:
            self.write(batch)

    # A save in three steps, so that the write and fdatasync can run on a writer thread while the
    # caller's thread goes on (the server's Ready loop):
    #     batch = wal.prepare(hard_state, entries)    encode; None when there is nothing to write
    #     wal.start_write(batch, writer)              hand it to a DurableWriter (_native.walwrite)
    #     ... writer.result() once its eventfd is readable: the fsync seconds, or an OSError ...
    #     wal.end_write(batch, outcome)               durable now (or the WAL is closed and it raises)
    # or wal.write(batch) on this thread (failpoints apply there only). Nothing else may be written
    # between prepare() and the end of its write, and a batch that cut_due() says fills the segment
    # cuts it in end_write()/write(): run those off the loop.
    def prepare(self, hard_state, entries) -> PreparedBatch | None:
        if type(entries) is not list:
            entries = list(entries)
        if not entries:
            if hard_state is None or hard_state == self._hard_state:
                return None
        must_sync = bool(entries) or hard_state is None or (
            hard_state.term != self._hard_state.term or hard_state.vote != self._hard_state.vote)
        buf, crc = codec.encode_batch(hard_state, entries, self._crc)
        return PreparedBatch(buf, crc, must_sync, hard_state, entries[-1].index if entries else 0)

    def cut_due(self, batch: PreparedBatch) -> bool:
        return self._off + len(batch.buf) >= self.segment_size

    def write(self, batch: PreparedBatch) -> None:
        self._write_synced(batch.buf, batch.sync)
        self._written(batch)

    def start_write(self, batch: PreparedBatch, writer) -> None:
        writer.submit(self._fd_or_raise(), batch.buf, self._off, batch.sync)

    def end_write(self, batch: PreparedBatch, outcome) -> None:
        if isinstance(outcome, BaseException):
            self._abandon()
            raise outcome
        self._off += len(batch.buf)
        if batch.sync and self.on_fsync is not None:
            self.on_fsync(outcome)
        self._written(batch)

    def _written(self, batch: PreparedBatch) -> None:
        self._crc = batch.crc
        if batch.last_index:
            self._last_index = batch.last_index
        if batch.hard_state is not None:
            self._hard_state = batch.hard_state
        if self._off >= self.segment_size:
            self._cut()

    def save_snapshot_marker(self, index: int, term: int) -> None:
        """Record (fsynced) that a snapshot at (index, term) exists; open() can start there."""
        buf, crc = codec.encode_record(codec.SNAPSHOT_TYPE, _MARKER.pack(index, term), self._crc)
        self._write_synced(buf)
        self._crc = crc
        if index > self._last_index:
            self._last_index = index
        if self._off >= self.segment_size:
            self._cut()

    def _cut(self) -> None:
        """Close the tail at its last record and continue in a new segment: built under a
        temporary name, fsynced, renamed, directory fsynced."""
        t0 = time.perf_counter()
        fd = self._fd_or_raise()
        try:
            os.ftruncate(fd, self._off)
            os.fsync(fd)
            name = SegmentName(self._segments[-1].seq + 1, self._last_index + 1)
            final = self._path(name)
            tmp = final + TMP_SUFFIX
            nfd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                preallocate(nfd, self.segment_size)
                rec1, crc = codec.encode_record(codec.CRC_TYPE, b"", self._crc)
                rec2, crc = codec.encode_record(codec.METADATA_TYPE, self._metadata, crc)
                rec3, crc = codec.encode_batch(self._hard_state, [], crc)
                header = rec1 + rec2 + rec3
                pwrite_all(nfd, header, 0)
                os.fsync(nfd)
                failpoints.hit("wal.cut.before_rename")
                os.rename(tmp, final)
                failpoints.hit("wal.cut.after_rename")
                fsync_dir(self.dirpath)
                fcntl.flock(nfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BaseException:
                os.close(nfd)
                raise
        except OSError:
            self._abandon()
            raise
        os.close(fd)
        self._fd = nfd
        self._off = len(header)
        self._crc = crc
        self._segments.append(name)
        if self.on_cut is not None:
            self.on_cut(time.perf_counter() - t0)

    def release_lock_to(self, index: int, keep: int = 0) -> None:
        """Delete segments a snapshot at `index` makes unnecessary: those before the last one whose
        first index is <= index (that one is kept: open() starts there), oldest first, while more
        than `keep` segments remain (etcd's --max-wals; 0 deletes every segment the snapshot covers)."""
        covered = 0
        for i, s in enumerate(self._segments):
            if s.index <= index:
                covered = i
        covered = min(covered, len(self._segments) - 1)
        if keep > 0:
            covered = min(covered, max(len(self._segments) - keep, 0))
        if covered == 0:
            return
        for s in self._segments[:covered]:
            os.unlink(self._path(s))
        fsync_dir(self.dirpath)
        del self._segments[:covered]

    def _abandon(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Release the tail segment (and its lock). Everything saved is already durable."""
        self._abandon()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
