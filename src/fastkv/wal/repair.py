"""Torn-tail detection and repair for the last WAL segment.

A crash can leave the last batch half on disk: the kernel writes the sectors of one unsynced
write in any order, so the tail may hold a record whose sectors are partly zero (never written) or a
record cut short by the end of the file. Everything fsynced lies before such a record, so cutting
the segment there loses nothing that was acknowledged. Anything else that fails a check (a flipped
bit, garbage in a length word, a bad record followed by intact ones) is corruption, and the WAL
refuses to start rather than guess.

Rule (etcd's, tightened): a failing record in the last segment is torn when decoding ran off the end
of the file, or when one of the 512-byte sectors holding its header and data is entirely zero --
provided no intact, correctly chained records start inside the failing record's claimed extent
(that would be a corrupted length word swallowing good records). Nonzero bytes after a zero length
word in the last segment are the remains of a torn batch whose first sector never reached the disk
when the rest of that sector is zero; they are zeroed (appending over them would leave stale bytes
after new records). Otherwise they are corruption.
"""
from __future__ import annotations

import logging
import os
import shutil
import struct

from fastkv._native import load
from fastkv import failpoints
from fastkv.wal.segment import BROKEN_SUFFIX, fsync_dir, is_all_zero, preallocate

log = logging.getLogger("fastkv.wal")
codec = load("walcodec")

SECTOR_SIZE = 512
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_ZERO_PAGE = bytes(4096)
_LEN_MASK = (1 << 56) - 1


def record_extent(buf, size: int, offset: int) -> int:
    """End of the header and data (padding excluded) of the record whose length word is at
    `offset`, clipped to the file."""
    if size - offset < 8:
        return size
    (word,) = _U64.unpack_from(buf, offset)
    return min(size, offset + 8 + (word & _LEN_MASK))


def has_intact_records(buf, size: int, lo: int, hi: int, seed: int) -> bool:
    """True when a correctly chained record starts somewhere in [lo, hi): either one that
    continues from `seed` (the failing record's stored crc, i.e. its true successor) or two
    consecutive records where the second continues from the first's stored crc. A torn write
    leaves only the remains of one record there; intact records mean the failing record is
    misframed corruption, e.g. a flipped bit in a length word that makes it swallow successors."""
    p = lo + (-lo & 7)
    while p < hi and size - p >= 16:
        if not p & 4095 and buf[p : p + 4096] == _ZERO_PAGE[: min(4096, size - p)]:
            p += 4096  # preallocated zeros: nothing can start here (keeps a 64 MB scan ~10 ms)
            continue
        (word,) = _U64.unpack_from(buf, p)
        body, top = word & _LEN_MASK, word >> 56
        pad = top & 0x7F
        sane = (top == 0 or (top & 0x80 and 0 < pad < 8)) and 8 <= body <= size and (body + pad) & 7 == 0
        if sane:
            records, _end, _crc, _err = codec.decode_records(buf, p, seed)
            if records:
                return True
            q = p + 8 + body + pad
            if q <= size - 16:
                (stored_crc,) = _U32.unpack_from(buf, p + 8)
                records, _end, _crc, _err = codec.decode_records(buf, q, stored_crc)
                if records:
                    return True
        p += 8
    return False


def is_torn(buf, size: int, err) -> bool:
    """True when the decode failure `err` in the last segment looks like an interrupted write:
    the record runs off the end of the file, or one of the sectors it occupies is entirely zero
    (never written) -- and in both cases no intact records hide inside its claimed extent.
    Whole sectors are checked, not just the record's piece of them, so zero padding or
    zero-valued data in a record cannot pass for an unwritten sector."""
    (seed,) = _U32.unpack_from(buf, err.offset + 8) if size - err.offset >= 12 else (0,)
    if err.kind == "truncated":
        return not has_intact_records(buf, size, err.offset + 8, size, seed)
    if err.kind != "crc":
        return False  # a checksum-valid record that makes no sense, or a garbage length word
    end = record_extent(buf, size, err.offset)
    sector = (err.offset // SECTOR_SIZE) * SECTOR_SIZE
    while sector < end:
        if is_all_zero(buf, sector, min(size, sector + SECTOR_SIZE)):
            return not has_intact_records(buf, size, err.offset + 8, end, seed)
        sector += SECTOR_SIZE
    return False


def is_unwritten_after_end(buf, size: int, end: int) -> bool:
    """Decoding stopped cleanly at a zero length word at `end` but nonzero bytes follow. That is a
    torn batch when the rest of `end`'s sector is zero too (its first sector never reached the
    disk); a zero length word inside otherwise written bytes is corruption (e.g. a flipped bit in
    the length word 8 of a CRC record)."""
    sector_end = min(size, (end // SECTOR_SIZE + 1) * SECTOR_SIZE)
    return is_all_zero(buf, end, sector_end)


def truncate_tail(path: str, good_end: int, segment_size: int, reason: str) -> str:
    """Keep a copy of `path` as `<path>.broken`, cut it at `good_end` and zero the rest.

    Returns the path of the copy. Everything is fsynced (file, copy, directory) before returning."""
    broken = path + BROKEN_SUFFIX
    shutil.copyfile(path, broken)
    with open(broken, "rb+") as f:
        os.fsync(f.fileno())
    failpoints.hit("wal.repair.before_truncate")
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
