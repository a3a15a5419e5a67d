"""WAL segment files: names, listing, preallocation and the fsync helpers every rename needs.

A segment is named `<seq>-<index>.wal` (16 hex digits each, as etcd does): `seq` counts segments
from 0 without gaps and `index` is the raft index the first entry in it will have (last written
index + 1 at the time of the cut). Names sort in write order, and `index` lets a reader that starts
from a snapshot skip every segment before the one that can hold the snapshot's index.
"""
from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass

SEGMENT_SIZE = 64 * 1024 * 1024
WAL_SUFFIX = ".wal"
TMP_SUFFIX = ".tmp"
BROKEN_SUFFIX = ".broken"
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")


@dataclass(frozen=True, order=True)
class SegmentName:
    seq: int
    index: int

    @property
    def filename(self) -> str:
        return f"{self.seq:016x}-{self.index:016x}{WAL_SUFFIX}"


def parse_name(filename: str) -> SegmentName | None:
    m = _NAME.match(filename)
    if m is None:
        return None
    return SegmentName(int(m.group(1), 16), int(m.group(2), 16))


def list_segments(dirpath: str) -> list[SegmentName]:
    """Every segment in `dirpath`, in sequence order; other files are ignored."""
    names = [n for n in (parse_name(f) for f in os.listdir(dirpath)) if n is not None]
    names.sort()
    return names


def fsync_dir(dirpath: str) -> None:
    """Make a create/rename/unlink inside `dirpath` durable."""
    fd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def preallocate(fd: int, size: int) -> None:
    """Reserve `size` bytes (reading as zeros) so appends do not grow the file's metadata on every
    fdatasync; falls back to a sparse extension where the filesystem cannot allocate."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)


def pwrite_all(fd: int, data, offset: int) -> None:
    """pwrite until every byte is written (a regular file may accept a short write)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def is_all_zero(buf, start: int, end: int, chunk: int = 1 << 20) -> bool:
    zeros = bytes(min(chunk, max(end - start, 0)))
    while start < end:
        n = min(chunk, end - start)
        if buf[start : start + n] != zeros[:n]:
            return False
        start += n
    return True
