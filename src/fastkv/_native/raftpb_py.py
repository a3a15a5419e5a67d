"""Raft data model shared by the raft core, the WAL and (later) the transport: pure-Python twin.

This module is the contract. `raftpb.pyx` must expose the same names with the same behaviour and
byte layout; tests run over both (see tests/conftest.py `impl` fixtures).

Binary layouts (all little-endian, fixed so that the WAL and the wire share one codec):
  Entry      : term u64 | index u64 | type u8 | data_len u32 | data
  HardState  : term u64 | vote u64 | commit u64
  ConfState  : n_voters u32 | n_learners u32 | voters u64* | learners u64*
  SnapshotMetadata : index u64 | term u64 | ConfState
  Snapshot   : meta_len u32 | SnapshotMetadata | data_len u32 | data
  ConfChange : type u8 | node_id u64 | context_len u32 | context
  Message    : type u8 | to u64 | frm u64 | term u64 | log_term u64 | index u64 | commit u64 |
               reject u8 | reject_hint u64 | n_entries u32 | (entry_len u32 | Entry)* |
               has_snapshot u8 | [Snapshot] | context_len u32 | context
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

# Message types: the numbering of etcd-io/raft's raftpb.MessageType, so traces read alike.
MSG_HUP = 0                 # local: start an election (campaign)
MSG_BEAT = 1                # local: leader, send heartbeats now
MSG_PROP = 2                # proposal (local, or forwarded by a follower to its leader)
MSG_APP = 3                 # leader -> follower: append entries
MSG_APP_RESP = 4
MSG_VOTE = 5
MSG_VOTE_RESP = 6
MSG_SNAP = 7                # leader -> follower: install a snapshot
MSG_HEARTBEAT = 8
MSG_HEARTBEAT_RESP = 9
MSG_UNREACHABLE = 10        # local: transport could not reach `frm`
MSG_SNAP_STATUS = 11        # local: transport reports whether a snapshot reached `frm`
MSG_CHECK_QUORUM = 12       # local: leader, check that a quorum was recently active
MSG_TRANSFER_LEADER = 13
MSG_TIMEOUT_NOW = 14        # leader -> transferee: campaign now, ignoring the election timer
MSG_READ_INDEX = 15
MSG_READ_INDEX_RESP = 16
MSG_PRE_VOTE = 17
MSG_PRE_VOTE_RESP = 18

MESSAGE_TYPE_NAMES = (
    "MsgHup", "MsgBeat", "MsgProp", "MsgApp", "MsgAppResp", "MsgVote", "MsgVoteResp", "MsgSnap",
    "MsgHeartbeat", "MsgHeartbeatResp", "MsgUnreachable", "MsgSnapStatus", "MsgCheckQuorum",
    "MsgTransferLeader", "MsgTimeoutNow", "MsgReadIndex", "MsgReadIndexResp", "MsgPreVote",
    "MsgPreVoteResp",
)

# Conf change types (etcd numbering; 2 was UpdateNode, which raft itself ignores).
CONF_CHANGE_ADD_NODE = 0          # add a voter, or promote a learner to voter
CONF_CHANGE_REMOVE_NODE = 1
CONF_CHANGE_UPDATE_NODE = 2      # a member's peer URLs changed: nothing for raft, the application applies it
CONF_CHANGE_ADD_LEARNER_NODE = 3


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


def encode_snapshot(snap: Snapshot) -> bytes:
    meta = encode_snapshot_metadata(snap.metadata)
    return _U32.pack(len(meta)) + meta + _U32.pack(len(snap.data)) + bytes(snap.data)


def _decode_snapshot_at(mv, off: int):
    if len(mv) < off + 4:
        raise CodecError("snapshot: truncated")
    (n,) = _U32.unpack_from(mv, off)
    off += 4
    if len(mv) < off + n:
        raise CodecError("snapshot: truncated metadata")
    meta = decode_snapshot_metadata(mv[off : off + n])
    off += n
    if len(mv) < off + 4:
        raise CodecError("snapshot: truncated")
    (n,) = _U32.unpack_from(mv, off)
    off += 4
    if len(mv) < off + n:
        raise CodecError("snapshot: truncated data")
    return Snapshot(meta, bytes(mv[off : off + n])), off + n


def decode_snapshot(buf) -> Snapshot:
    mv = memoryview(buf)
    snap, end = _decode_snapshot_at(mv, 0)
    if end != len(mv):
        raise CodecError("snapshot: trailing bytes")
    return snap


# --- conf change and message ---------------------------------------------------------------------

_U32 = struct.Struct("<I")
_CC_HDR = struct.Struct("<BQI")
_MSG_HDR = struct.Struct("<BQQQQQQBQI")


class ConfChange:
    """One membership change; carried as the data of an ENTRY_CONF_CHANGE entry."""

    __slots__ = ("type", "node_id", "context")

    def __init__(self, type: int = CONF_CHANGE_ADD_NODE, node_id: int = 0, context: bytes = b""):
        self.type = type
        self.node_id = node_id
        self.context = context

    def __eq__(self, other):
        if not hasattr(other, "node_id") or not hasattr(other, "context"):
            return NotImplemented
        return (self.type, self.node_id, self.context) == (other.type, other.node_id, other.context)

    def __repr__(self):
        return f"ConfChange(type={self.type}, node_id={self.node_id}, context={self.context!r})"


def encode_conf_change(cc: ConfChange) -> bytes:
    return _CC_HDR.pack(cc.type, cc.node_id, len(cc.context)) + bytes(cc.context)


def decode_conf_change(buf) -> ConfChange:
    mv = memoryview(buf)
    if len(mv) < _CC_HDR.size:
        raise CodecError("conf change: truncated header")
    typ, node_id, n = _CC_HDR.unpack_from(mv, 0)
    if len(mv) != _CC_HDR.size + n:
        raise CodecError("conf change: length mismatch")
    return ConfChange(typ, node_id, bytes(mv[_CC_HDR.size :]))


class Message:
    """A raft message. `frm` is the sender (`from` is a Python keyword). `entries` is a list."""

    __slots__ = ("type", "to", "frm", "term", "log_term", "index", "entries", "commit", "reject",
                 "reject_hint", "snapshot", "context")

    def __init__(self, type: int = 0, to: int = 0, frm: int = 0, term: int = 0, log_term: int = 0,
                 index: int = 0, entries=None, commit: int = 0, reject: bool = False,
                 reject_hint: int = 0, snapshot: Snapshot | None = None, context: bytes = b""):
        self.type = type
        self.to = to
        self.frm = frm
        self.term = term
        self.log_term = log_term
        self.index = index
        self.entries = entries if entries is not None else []
        self.commit = commit
        self.reject = reject
        self.reject_hint = reject_hint
        self.snapshot = snapshot
        self.context = context

    def _key(self):
        return (self.type, self.to, self.frm, self.term, self.log_term, self.index,
                list(self.entries), self.commit, bool(self.reject), self.reject_hint,
                self.snapshot, self.context)

    def __eq__(self, other):
        if not hasattr(other, "reject_hint"):
            return NotImplemented
        return self._key() == other._key()

    def __repr__(self):
        name = MESSAGE_TYPE_NAMES[self.type] if 0 <= self.type < len(MESSAGE_TYPE_NAMES) else self.type
        return (f"Message({name} {self.frm}->{self.to} term={self.term} log_term={self.log_term} "
                f"index={self.index} commit={self.commit} entries={len(self.entries)} "
                f"reject={bool(self.reject)} hint={self.reject_hint} "
                f"snap={'yes' if self.snapshot is not None else 'no'} ctx={self.context!r})")


def encode_message(m: Message) -> bytes:
    parts = [_MSG_HDR.pack(m.type, m.to, m.frm, m.term, m.log_term, m.index, m.commit,
                           1 if m.reject else 0, m.reject_hint, len(m.entries))]
    for e in m.entries:
        enc = encode_entry(e)
        parts.append(_U32.pack(len(enc)))
        parts.append(enc)
    if m.snapshot is None:
        parts.append(b"\x00")
    else:
        parts.append(b"\x01")
        parts.append(encode_snapshot(m.snapshot))
    parts.append(_U32.pack(len(m.context)))
    parts.append(bytes(m.context))
    return b"".join(parts)


def decode_message(buf) -> Message:
    mv = memoryview(buf)
    if len(mv) < _MSG_HDR.size:
        raise CodecError("message: truncated header")
    (typ, to, frm, term, log_term, index, commit, reject, hint, n) = _MSG_HDR.unpack_from(mv, 0)
    if reject > 1:
        raise CodecError("message: bad reject flag")
    off = _MSG_HDR.size
    ents = []
    for _ in range(n):
        if len(mv) < off + 4:
            raise CodecError("message: truncated entry length")
        (k,) = _U32.unpack_from(mv, off)
        off += 4
        if len(mv) < off + k:
            raise CodecError("message: truncated entry")
        ents.append(decode_entry(mv[off : off + k]))
        off += k
    if len(mv) < off + 1:
        raise CodecError("message: truncated snapshot flag")
    flag = mv[off]
    off += 1
    snap = None
    if flag == 1:
        snap, off = _decode_snapshot_at(mv, off)
    elif flag != 0:
        raise CodecError("message: bad snapshot flag")
    if len(mv) < off + 4:
        raise CodecError("message: truncated context length")
    (k,) = _U32.unpack_from(mv, off)
    off += 4
    if len(mv) != off + k:
        raise CodecError("message: context length mismatch")
    return Message(typ, to, frm, term, log_term, index, ents, commit, bool(reject), hint, snap,
                   bytes(mv[off:]))
