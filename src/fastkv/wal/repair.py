"""Torn-tail detection and repair for the last WAL segment.

A crash can leave the last batch half on disk: the kernel writes the sectors of one unsynced
write in any order, so the tail may hold a record whose sectors are partly zero (never written) or a
record cut short by the end of the file. Everything fsynced lies before such a record, so cutting
the segment there loses nothing that was acknowledged. Anything else that fails a check (a flipped
bit, garbage in a length word, a bad record followed by intact ones) is corruption, and the WAL
refuses to start rather than guess.

Rule (etcd's, tightened): a failing record in the last segment is torn when decoding ran off the end
of the file, or when one of the 512-byte sectors holding its header and data is entirely zero. Nonzero bytes
after a zero length word in the last segment are the remains of a torn batch whose first sector was
never written; they are zeroed too (appending over them would leave stale bytes after new records).
"""
from __future__ import annotations

import logging
import os
import shutil
import struct

from fastkv.wal.segment import BROKEN_SUFFIX, fsync_dir, is_all_zero, preallocate

log = logging.getLogger("fastkv.wal")

SECTOR_SIZE = 512
_U64 = struct.Struct("<Q")
_LEN_MASK = (1 << 56) - 1


def record_extent(buf, size: int, offset: int) -> int:
    """End of the header and data (padding excluded) of the record whose length word is at
    `offset`, clipped to the file."""
    if size - offset < 8:
        return size
    (word,) = _U64.unpack_from(buf, offset)
    return min(size, offset + 8 + (word & _LEN_MASK))


def is_torn(buf, size: int, err) -> bool:
    """True when the decode failure `err` in the last segment looks like an interrupted write:
    the record runs off the end of the file, or one of the sectors it occupies is entirely zero
    (never written). Whole sectors are checked, not just the record's piece of them, so zero
    padding or zero-valued data in a record cannot pass for an unwritten sector."""
    if err.kind == "truncated":
        return True
    if err.kind != "crc":
        return False  # a checksum-valid record that makes no sense, or a garbage length word
    end = record_extent(buf, size, err.offset)
    sector = (err.offset // SECTOR_SIZE) * SECTOR_SIZE
    while sector < end:
        if is_all_zero(buf, sector, min(size, sector + SECTOR_SIZE)):
            return True
        sector += SECTOR_SIZE
    return False


def truncate_tail(path: str, good_end: int, segment_size: int, reason: str) -> str:
    """Keep a copy of `path` as `<path>.broken`, cut it at `good_end` and zero the rest.

    Returns the path of the copy. Everything is fsynced (file, copy, directory) before returning."""
    broken = path + BROKEN_SUFFIX
    shutil.copyfile(path, broken)
    with open(broken, "rb+") as f:
        os.fsync(f.fileno())
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, good_end)  # drops the torn bytes; the extension below reads as zeros
        preallocate(fd, max(segment_size, good_end))
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(os.path.dirname(path) or ".")
    log.warning("WAL: repaired %s: %s; truncated to %d bytes, original kept as %s", path, reason, good_end, broken)
    return broken
