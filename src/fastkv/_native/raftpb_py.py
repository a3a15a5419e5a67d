"""Raft data model shared by the raft core, the WAL and (later) the transport: pure-Python twin.

This module is the contract. `raftpb.pyx` must expose the same names with the same behaviour and
byte layout; tests run over both (see tests/conftest.py `impl` fixtures).

Binary layouts (all little-endian, fixed so that the WAL and the wire share one codec):
  Entry      : term u64 | index u64 | type u8 | data_len u32 | data
  HardState  : term u64 | vote u64 | commit u64
  ConfState  : n_voters u32 | n_learners u32 | voters u64* | learners u64*
  SnapshotMetadata : index u64 | term u64 | ConfState
"""
from __future__ import annotations

import struct

ENTRY_NORMAL = 0
ENTRY_CONF_CHANGE = 1

_ENTRY_HDR = struct.Struct("<QQBI")
_HARD_STATE = struct.Struct("<QQQ")
_CONF_HDR = struct.Struct("<II")
_SNAP_HDR = struct.Struct("<QQ")

ENTRY_HEADER_SIZE = _ENTRY_HDR.size


class CodecError(ValueError):
    """Raised for any byte string that is not a valid encoding (truncated, trailing bytes...)."""


class Entry:
    __slots__ = ("term", "index", "type", "data")

    def __init__(self, term: int = 0, index: int = 0, type: int = ENTRY_NORMAL, data: bytes = b""):
        self.term = term
        self.index = index
        self.type = type
        self.data = data

    def __eq__(self, other):
        if not isinstance(other, Entry) and type(other).__name__ != "Entry":
            return NotImplemented
        return (self.term, self.index, self.type, self.data) == (other.term, other.index, other.type, other.data)

    def __hash__(self):
        return hash((self.term, self.index, self.type, self.data))

    def __repr__(self):
        return f"Entry(term={self.term}, index={self.index}, type={self.type}, data={self.data!r})"

    def size(self) -> int:
        """Encoded size in bytes; raft limits append messages by this."""
        return ENTRY_HEADER_SIZE + len(self.data)


class HardState:
    __slots__ = ("term", "vote", "commit")

    def __init__(self, term: int = 0, vote: int = 0, commit: int = 0):
        self.term = term
        self.vote = vote
        self.commit = commit

    def __eq__(self, other):
        if not hasattr(other, "vote") or not hasattr(other, "commit"):
            return NotImplemented
        return (self.term, self.vote, self.commit) == (other.term, other.vote, other.commit)

    def __repr__(self):
        return f"HardState(term={self.term}, vote={self.vote}, commit={self.commit})"

    def is_empty(self) -> bool:
        return self.term == 0 and self.vote == 0 and self.commit == 0


class ConfState:
    __slots__ = ("voters", "learners")

    def __init__(self, voters=(), learners=()):
        self.voters = tuple(sorted(voters))
        self.learners = tuple(sorted(learners))

    def __eq__(self, other):
        if not hasattr(other, "voters") or not hasattr(other, "learners"):
            return NotImplemented
        return (self.voters, self.learners) == (tuple(other.voters), tuple(other.learners))

    def __repr__(self):
        return f"ConfState(voters={list(self.voters)}, learners={list(self.learners)})"


class SnapshotMetadata:
    __slots__ = ("index", "term", "conf_state")

    def __init__(self, index: int = 0, term: int = 0, conf_state: ConfState | None = None):
        self.index = index
        self.term = term
        self.conf_state = conf_state if conf_state is not None else ConfState()

    def __eq__(self, other):
        if not hasattr(other, "conf_state"):
            return NotImplemented
        return (self.index, self.term, self.conf_state) == (other.index, other.term, other.conf_state)

    def __repr__(self):
        return f"SnapshotMetadata(index={self.index}, term={self.term}, conf_state={self.conf_state!r})"


class Snapshot:
    """A raft snapshot: metadata plus the application's opaque state (`data`)."""

    __slots__ = ("metadata", "data")

    def __init__(self, metadata: SnapshotMetadata | None = None, data: bytes = b""):
        self.metadata = metadata if metadata is not None else SnapshotMetadata()
        self.data = data

    def __eq__(self, other):
        if not hasattr(other, "metadata"):
            return NotImplemented
        return (self.metadata, self.data) == (other.metadata, other.data)

    def __repr__(self):
        return f"Snapshot(metadata={self.metadata!r}, data=<{len(self.data)} bytes>)"

    def is_empty(self) -> bool:
        return self.metadata.index == 0


# --- codec ---------------------------------------------------------------------------------------

def encode_entry(e: Entry) -> bytes:
    return _ENTRY_HDR.pack(e.term, e.index, e.type, len(e.data)) + bytes(e.data)


def decode_entry(buf) -> Entry:
    mv = memoryview(buf)
    if len(mv) < ENTRY_HEADER_SIZE:
        raise CodecError(f"entry: {len(mv)} bytes is shorter than the {ENTRY_HEADER_SIZE}-byte header")
    term, index, typ, n = _ENTRY_HDR.unpack_from(mv, 0)
    if len(mv) != ENTRY_HEADER_SIZE + n:
        raise CodecError(f"entry: header says {n} data bytes, buffer holds {len(mv) - ENTRY_HEADER_SIZE}")
    return Entry(term, index, typ, bytes(mv[ENTRY_HEADER_SIZE:]))


def encode_hard_state(hs: HardState) -> bytes:
    return _HARD_STATE.pack(hs.term, hs.vote, hs.commit)


def decode_hard_state(buf) -> HardState:
    if len(buf) != _HARD_STATE.size:
        raise CodecError(f"hard state: expected {_HARD_STATE.size} bytes, got {len(buf)}")
    return HardState(*_HARD_STATE.unpack(bytes(buf)))


def encode_conf_state(cs: ConfState) -> bytes:
    v, l = tuple(cs.voters), tuple(cs.learners)
    return _CONF_HDR.pack(len(v), len(l)) + struct.pack(f"<{len(v) + len(l)}Q", *v, *l)


def _decode_conf_state_at(mv, off: int):
    if len(mv) < off + _CONF_HDR.size:
        raise CodecError("conf state: truncated header")
    nv, nl = _CONF_HDR.unpack_from(mv, off)
    off += _CONF_HDR.size
    end = off + 8 * (nv + nl)
    if len(mv) < end:
        raise CodecError("conf state: truncated member list")
    ids = struct.unpack_from(f"<{nv + nl}Q", mv, off)
    return ConfState(ids[:nv], ids[nv:]), end


def decode_conf_state(buf) -> ConfState:
    mv = memoryview(buf)
    cs, end = _decode_conf_state_at(mv, 0)
    if end != len(mv):
        raise CodecError("conf state: trailing bytes")
    return cs


def encode_snapshot_metadata(m: SnapshotMetadata) -> bytes:
    return _SNAP_HDR.pack(m.index, m.term) + encode_conf_state(m.conf_state)


def decode_snapshot_metadata(buf) -> SnapshotMetadata:
    mv = memoryview(buf)
    if len(mv) < _SNAP_HDR.size:
        raise CodecError("snapshot metadata: truncated")
    index, term = _SNAP_HDR.unpack_from(mv, 0)
    cs, end = _decode_conf_state_at(mv, _SNAP_HDR.size)
    if end != len(mv):
        raise CodecError("snapshot metadata: trailing bytes")
    return SnapshotMetadata(index, term, cs)
