"""WAL record framing: pure-Python twin of walcodec.pyx (same API and bytes; see that module's
docstring for the format and its reasons)."""
from __future__ import annotations

import gc
import struct

from fastkv._native.crc32c_py import crc32c

METADATA_TYPE = 1
ENTRY_TYPE = 2
STATE_TYPE = 3
CRC_TYPE = 4
SNAPSHOT_TYPE = 5
RECORD_HEADER_SIZE = 16
ENTRY_HEADER_SIZE = 21

_HEADER = struct.Struct("<QII")  # length word, crc, type
_TYPE = struct.Struct("<I")
_ENTRY_HDR = struct.Struct("<QQBI")
_STATE = struct.Struct("<QQQ")
_U64 = struct.Struct("<Q")
_LEN_MASK = (1 << 56) - 1


class RecordError(ValueError):
    """Why decoding stopped early: kind is "truncated", "crc" or "malformed"; offset is where the
    failing record's length word starts."""

    def __init__(self, kind, offset, detail):
        super().__init__(f"{kind} record at byte offset {offset}: {detail}")
        self.kind = kind
        self.offset = offset
        self.detail = detail


def _frame(rtype: int, data: bytes, crc: int) -> tuple[bytes, int]:
    n = len(data)
    pad = -n & 7
    word = 8 + n
    if pad:
        word |= (0x80 | pad) << 56
    crc = crc32c(data, crc32c(_TYPE.pack(rtype), crc))
    return _HEADER.pack(word, crc, rtype) + data + bytes(pad), crc


def encode_record(rtype: int, data, crc: int) -> tuple[bytes, int]:
    data = bytes(data)
    if not 1 <= rtype <= 5:
        raise ValueError(f"unknown WAL record type {rtype}")
    if not 0 <= crc <= 0xFFFFFFFF:
        raise OverflowError("crc must fit in 32 bits")
    if rtype == CRC_TYPE:
        if data:
            raise ValueError("a CRC record carries no data")
        return _HEADER.pack(8, crc, rtype), crc
    return _frame(rtype, data, crc)


def encode_batch(hard_state, entries: list, crc: int) -> tuple[bytes, int]:
    for e in entries:
        if type(e.data) is not bytes:
            raise TypeError(f"entry data must be bytes, got {type(e.data).__name__}")
    parts = []
    for e in entries:
        rec, crc = _frame(ENTRY_TYPE, _ENTRY_HDR.pack(e.term, e.index, e.type, len(e.data)) + e.data, crc)
        parts.append(rec)
    if hard_state is not None:
        rec, crc = _frame(STATE_TYPE, _STATE.pack(hard_state.term, hard_state.vote, hard_state.commit), crc)
        parts.append(rec)
    return b"".join(parts), crc


def decode_records(buf, offset: int = 0, crc: int = 0, entry_factory=None):
    """See walcodec.pyx: (records, end, crc, error). The cyclic GC is paused for the call (nothing
    made here forms a cycle, and collections walking a growing list cost 10x)."""
    enabled = gc.isenabled()
    if enabled:
        gc.disable()
    try:
        return _decode_records(buf, offset, crc, entry_factory)
    finally:
        if enabled:
            gc.enable()


def _decode_records(buf, offset, crc, entry_factory):
    mv = memoryview(buf).cast("B")
    size = len(mv)
    records: list = []
    if offset < 0 or offset > size:
        raise ValueError(f"offset {offset} outside a {size}-byte buffer")
    while True:
        if size - offset < 8:
            if any(mv[offset:]):
                return records, offset, crc, RecordError(
                    "truncated", offset, f"{size - offset} trailing bytes cannot hold a length word")
            return records, offset, crc, None
        (word,) = _U64.unpack_from(mv, offset)
        if word == 0:
            return records, offset, crc, None
        body, top = word & _LEN_MASK, word >> 56
        pad = 0
        if top:
            if not top & 0x80 or top & 0x7F >= 8 or top & 0x7F == 0:
                return records, offset, crc, RecordError("malformed", offset, f"bad length word {word:#018x}")
            pad = top & 0x7F
        if body < 8 or (body + pad) & 7:
            return records, offset, crc, RecordError("malformed", offset, f"bad length word {word:#018x}")
        if body + pad > size - offset - 8:
            return records, offset, crc, RecordError(
                "truncated", offset, f"record of {body + pad + 8} bytes runs past the end ({size - offset} left)")
        n = body - 8
        _, want, rtype = _HEADER.unpack_from(mv, offset)
        if rtype == CRC_TYPE:
            if n:
                return records, offset, crc, RecordError("malformed", offset, f"CRC record with {n} data bytes")
            if crc and want != crc:
                return records, offset, crc, RecordError(
                    "crc", offset, f"CRC record carries {want:#010x}, chain is at {crc:#010x}")
            crc = want
            value = b""
        else:
            got = crc32c(mv[offset + 12 : offset + 16 + n], crc)
            if got != want:
                return records, offset, crc, RecordError(
                    "crc", offset, f"stored crc {want:#010x} != computed {got:#010x}")
            if not 1 <= rtype <= 5:
                return records, offset, crc, RecordError("malformed", offset, f"unknown record type {rtype}")
            data = bytes(mv[offset + 16 : offset + 16 + n])
            if rtype == ENTRY_TYPE:
                if n < ENTRY_HEADER_SIZE:
                    return records, offset, crc, RecordError("malformed", offset, f"entry record of {n} bytes")
                term, index, etype, dlen = _ENTRY_HDR.unpack_from(data, 0)
                if dlen != n - ENTRY_HEADER_SIZE:
                    return records, offset, crc, RecordError(
                        "malformed", offset, f"entry says {dlen} data bytes, record holds {n - ENTRY_HEADER_SIZE}")
                value = entry_factory(term, index, etype, data[ENTRY_HEADER_SIZE:]) if entry_factory else data
            else:
                value = data
            crc = got
        records.append((rtype, value))
        offset += 8 + body + pad


def collect_entries(records: list, entries: list, first_index: int):
    """See walcodec.pyx: fold ENTRY records into `entries` (the log from first_index on, mutated)
    with later entries replacing a conflicting suffix; returns (others, last_index)."""
    others = []
    last = None
    for item in records:
        if item[0] != ENTRY_TYPE:
            others.append(item)
            continue
        value = item[1]
        index = last = value.index
        if index < first_index:
            continue
        pos = index - first_index
        if pos == len(entries):
            entries.append(value)
        elif pos < len(entries):
            del entries[pos:]
            entries.append(value)
        else:
            raise ValueError(f"entry {index} follows entry {first_index + len(entries) - 1}: the log has a gap")
    return others, last
