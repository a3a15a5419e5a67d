# cython: language_level=3
# distutils: extra_compile_args = -O3
"""Raft data model and codec, compiled. The contract (names, behaviour, byte layout) is
raftpb_py.py; tests run every case over both and compare encodings byte for byte.

Integers are stored little-endian whatever the host (explicit shifts; compilers turn them into
plain moves on little-endian machines).
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

ENTRY_NORMAL = 0
ENTRY_CONF_CHANGE = 1
ENTRY_HEADER_SIZE = 21

MSG_HUP = 0
MSG_BEAT = 1
MSG_PROP = 2
MSG_APP = 3
MSG_APP_RESP = 4
MSG_VOTE = 5
MSG_VOTE_RESP = 6
MSG_SNAP = 7
MSG_HEARTBEAT = 8
MSG_HEARTBEAT_RESP = 9
MSG_UNREACHABLE = 10
MSG_SNAP_STATUS = 11
MSG_CHECK_QUORUM = 12
MSG_TRANSFER_LEADER = 13
MSG_TIMEOUT_NOW = 14
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

CONF_CHANGE_ADD_NODE = 0
CONF_CHANGE_REMOVE_NODE = 1
CONF_CHANGE_UPDATE_NODE = 2      # a member's peer URLs changed: nothing for raft, the application applies it
CONF_CHANGE_ADD_LEARNER_NODE = 3

cdef enum:
    ENTRY_HDR = 21   # term u64 | index u64 | type u8 | data_len u32
    MSG_HDR = 62     # type u8 | to..commit 6 x u64 | reject u8 | reject_hint u64 | n_entries u32


class CodecError(ValueError):
    """Raised for any byte string that is not a valid encoding (truncated, trailing bytes...)."""


cdef inline bytes _as_bytes(object b):
    return b if type(b) is bytes else bytes(b)


# --- little-endian helpers -------------------------------------------------------------------------
cdef inline void _put_u64(unsigned char* p, uint64_t v) noexcept nogil:
    cdef int k
    for k in range(8):
        p[k] = <unsigned char>(v >> (8 * k))

cdef inline void _put_u32(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = <unsigned char>v
    p[1] = <unsigned char>(v >> 8)
    p[2] = <unsigned char>(v >> 16)
    p[3] = <unsigned char>(v >> 24)

cdef inline uint64_t _get_u64(const unsigned char* p) noexcept nogil:
    cdef uint64_t v = 0
    cdef int k
    for k in range(8):
        v |= (<uint64_t>p[k]) << (8 * k)
    return v

cdef inline uint32_t _get_u32(const unsigned char* p) noexcept nogil:
    return (<uint32_t>p[0]) | ((<uint32_t>p[1]) << 8) | ((<uint32_t>p[2]) << 16) | ((<uint32_t>p[3]) << 24)


# --- types -----------------------------------------------------------------------------------------
cdef class Entry:
    def __init__(self, uint64_t term=0, uint64_t index=0, int type=ENTRY_NORMAL, data=b""):
        self.term = term
        self.index = index
        self.type = type
        self.data = _as_bytes(data)

    cpdef Py_ssize_t size(self):
        """Encoded size in bytes; raft limits append messages by this."""
        return ENTRY_HDR + PyBytes_GET_SIZE(self.data)

    def __eq__(self, other):
        if not isinstance(other, Entry) and type(other).__name__ != "Entry":
            return NotImplemented
        return (self.term, self.index, self.type, self.data) == (other.term, other.index, other.type, other.data)

    def __hash__(self):
        return hash((self.term, self.index, self.type, self.data))

    def __repr__(self):
        return f"Entry(term={self.term}, index={self.index}, type={self.type}, data={self.data!r})"

    def __reduce__(self):
        return (Entry, (self.term, self.index, self.type, self.data))


cdef class HardState:
    def __init__(self, uint64_t term=0, uint64_t vote=0, uint64_t commit=0):
        self.term = term
        self.vote = vote
        self.commit = commit

    def __eq__(self, other):
        if not hasattr(other, "vote") or not hasattr(other, "commit"):
            return NotImplemented
        return (self.term, self.vote, self.commit) == (other.term, other.vote, other.commit)

    def __repr__(self):
        return f"HardState(term={self.term}, vote={self.vote}, commit={self.commit})"

    def is_empty(self):
        return self.term == 0 and self.vote == 0 and self.commit == 0


cdef class ConfState:
    def __init__(self, voters=(), learners=()):
        self.voters = tuple(sorted(voters))
        self.learners = tuple(sorted(learners))

    def __eq__(self, other):
        if not hasattr(other, "voters") or not hasattr(other, "learners"):
            return NotImplemented
        return (self.voters, self.learners) == (tuple(other.voters), tuple(other.learners))

    def __repr__(self):
        return f"ConfState(voters={list(self.voters)}, learners={list(self.learners)})"


cdef class SnapshotMetadata:
    def __init__(self, uint64_t index=0, uint64_t term=0, conf_state=None):
        self.index = index
        self.term = term
        self.conf_state = conf_state if conf_state is not None else ConfState()

    def __eq__(self, other):
        if not hasattr(other, "conf_state"):
            return NotImplemented
        return (self.index, self.term, self.conf_state) == (other.index, other.term, other.conf_state)

    def __repr__(self):
        return f"SnapshotMetadata(index={self.index}, term={self.term}, conf_state={self.conf_state!r})"


cdef class Snapshot:
    """A raft snapshot: metadata plus the application's opaque state (`data`)."""

    def __init__(self, metadata=None, data=b""):
        self.metadata = metadata if metadata is not None else SnapshotMetadata()
        self.data = _as_bytes(data)

    def __eq__(self, other):
        if not hasattr(other, "metadata"):
            return NotImplemented
        return (self.metadata, self.data) == (other.metadata, other.data)

    def __repr__(self):
        return f"Snapshot(metadata={self.metadata!r}, data=<{len(self.data)} bytes>)"

    def is_empty(self):
        return self.metadata.index == 0


cdef class ConfChange:
    """One membership change; carried as the data of an ENTRY_CONF_CHANGE entry."""

    def __init__(self, int type=CONF_CHANGE_ADD_NODE, uint64_t node_id=0, context=b""):
        self.type = type
        self.node_id = node_id
        self.context = _as_bytes(context)

    def __eq__(self, other):
        if not hasattr(other, "node_id") or not hasattr(other, "context"):
            return NotImplemented
        return (self.type, self.node_id, self.context) == (other.type, other.node_id, other.context)

    def __repr__(self):
        return f"ConfChange(type={self.type}, node_id={self.node_id}, context={self.context!r})"


cdef class Message:
    """A raft message. `frm` is the sender (`from` is a Python keyword). `entries` is a list."""

    def __init__(self, int type=0, uint64_t to=0, uint64_t frm=0, uint64_t term=0,
                 uint64_t log_term=0, uint64_t index=0, entries=None, uint64_t commit=0,
                 bint reject=False, uint64_t reject_hint=0, snapshot=None, context=b""):
        self.type = type
        self.to = to
        self.frm = frm
        self.term = term
        self.log_term = log_term
        self.index = index
        self.entries = list(entries) if entries is not None else []
        self.commit = commit
        self.reject = reject
        self.reject_hint = reject_hint
        self.snapshot = snapshot
        self.context = _as_bytes(context)

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


# --- codec -----------------------------------------------------------------------------------------
cdef inline void _write_entry(unsigned char* p, uint64_t term, uint64_t index, int typ, bytes data):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    _put_u64(p, term)
    _put_u64(p + 8, index)
    p[16] = <unsigned char>typ
    _put_u32(p + 17, <uint32_t>n)
    memcpy(p + ENTRY_HDR, PyBytes_AS_STRING(data), n)


def encode_entry(e):
    cdef bytes data = _as_bytes(e.data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, ENTRY_HDR + n)
    _write_entry(<unsigned char*>PyBytes_AS_STRING(out), e.term, e.index, e.type, data)
    return out


cdef Entry _read_entry(const unsigned char* p, Py_ssize_t n):
    if n < ENTRY_HDR:
        raise CodecError(f"entry: {n} bytes is shorter than the {ENTRY_HDR}-byte header")
    cdef uint32_t k = _get_u32(p + 17)
    if n != ENTRY_HDR + k:
        raise CodecError(f"entry: header says {k} data bytes, buffer holds {n - ENTRY_HDR}")
    cdef Entry e = Entry.__new__(Entry)
    e.term = _get_u64(p)
    e.index = _get_u64(p + 8)
    e.type = p[16]
    e.data = PyBytes_FromStringAndSize(<const char*>p + ENTRY_HDR, k)
    return e


def decode_entry(buf):
    cdef bytes b = _as_bytes(buf)
    return _read_entry(<const unsigned char*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))


def encode_hard_state(hs):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 24)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    _put_u64(p, hs.term)
    _put_u64(p + 8, hs.vote)
    _put_u64(p + 16, hs.commit)
    return out


def decode_hard_state(buf):
    cdef bytes b = _as_bytes(buf)
    if PyBytes_GET_SIZE(b) != 24:
        raise CodecError(f"hard state: expected 24 bytes, got {PyBytes_GET_SIZE(b)}")
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(b)
    cdef HardState hs = HardState.__new__(HardState)
    hs.term = _get_u64(p)
    hs.vote = _get_u64(p + 8)
    hs.commit = _get_u64(p + 16)
    return hs


def encode_conf_state(cs):
    cdef tuple v = tuple(cs.voters), l = tuple(cs.learners)
    cdef Py_ssize_t nv = len(v), nl = len(l), k
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 8 + 8 * (nv + nl))
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    _put_u32(p, <uint32_t>nv)
    _put_u32(p + 4, <uint32_t>nl)
    p += 8
    for k in range(nv):
        _put_u64(p, v[k])
        p += 8
    for k in range(nl):
        _put_u64(p, l[k])
        p += 8
    return out


cdef object _read_conf_state(const unsigned char* p, Py_ssize_t n, Py_ssize_t* used):
    if n < 8:
        raise CodecError("conf state: truncated header")
    cdef uint32_t nv = _get_u32(p), nl = _get_u32(p + 4)
    cdef Py_ssize_t need = 8 + 8 * (<Py_ssize_t>nv + <Py_ssize_t>nl), k
    if n < need:
        raise CodecError("conf state: truncated member list")
    cdef ConfState cs = ConfState.__new__(ConfState)
    cs.voters = tuple([_get_u64(p + 8 + 8 * k) for k in range(nv)])
    cs.learners = tuple([_get_u64(p + 8 + 8 * (nv + k)) for k in range(nl)])
    used[0] = need
    return cs


def decode_conf_state(buf):
    cdef bytes b = _as_bytes(buf)
    cdef Py_ssize_t used = 0
    cs = _read_conf_state(<const unsigned char*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), &used)
    if used != PyBytes_GET_SIZE(b):
        raise CodecError("conf state: trailing bytes")
    return cs


def encode_snapshot_metadata(m):
    cdef bytes cs = encode_conf_state(m.conf_state)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 16 + PyBytes_GET_SIZE(cs))
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    _put_u64(p, m.index)
    _put_u64(p + 8, m.term)
    memcpy(p + 16, PyBytes_AS_STRING(cs), PyBytes_GET_SIZE(cs))
    return out


cdef object _read_snapshot_metadata(const unsigned char* p, Py_ssize_t n):
    if n < 16:
        raise CodecError("snapshot metadata: truncated")
    cdef Py_ssize_t used = 0
    cdef SnapshotMetadata m = SnapshotMetadata.__new__(SnapshotMetadata)
    m.index = _get_u64(p)
    m.term = _get_u64(p + 8)
    m.conf_state = _read_conf_state(p + 16, n - 16, &used)
    if 16 + used != n:
        raise CodecError("snapshot metadata: trailing bytes")
    return m


def decode_snapshot_metadata(buf):
    cdef bytes b = _as_bytes(buf)
    return _read_snapshot_metadata(<const unsigned char*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))


def encode_snapshot(snap):
    cdef bytes meta = encode_snapshot_metadata(snap.metadata)
    cdef bytes data = _as_bytes(snap.data)
    cdef Py_ssize_t nm = PyBytes_GET_SIZE(meta), nd = PyBytes_GET_SIZE(data)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 8 + nm + nd)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    _put_u32(p, <uint32_t>nm)
    memcpy(p + 4, PyBytes_AS_STRING(meta), nm)
    _put_u32(p + 4 + nm, <uint32_t>nd)
    memcpy(p + 8 + nm, PyBytes_AS_STRING(data), nd)
    return out


cdef object _read_snapshot(const unsigned char* p, Py_ssize_t n, Py_ssize_t* used):
    if n < 4:
        raise CodecError("snapshot: truncated")
    cdef Py_ssize_t nm = _get_u32(p)
    if n < 4 + nm:
        raise CodecError("snapshot: truncated metadata")
    meta = _read_snapshot_metadata(p + 4, nm)
    if n < 8 + nm:
        raise CodecError("snapshot: truncated")
    cdef Py_ssize_t nd = _get_u32(p + 4 + nm)
    if n < 8 + nm + nd:
        raise CodecError("snapshot: truncated data")
    cdef Snapshot s = Snapshot.__new__(Snapshot)
    s.metadata = meta
    s.data = PyBytes_FromStringAndSize(<const char*>p + 8 + nm, nd)
    used[0] = 8 + nm + nd
    return s


def decode_snapshot(buf):
    cdef bytes b = _as_bytes(buf)
    cdef Py_ssize_t used = 0
    s = _read_snapshot(<const unsigned char*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), &used)
    if used != PyBytes_GET_SIZE(b):
        raise CodecError("snapshot: trailing bytes")
    return s


def encode_conf_change(cc):
    cdef bytes ctx = _as_bytes(cc.context)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(ctx)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 13 + n)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    p[0] = <unsigned char>(<int>cc.type)
    _put_u64(p + 1, cc.node_id)
    _put_u32(p + 9, <uint32_t>n)
    memcpy(p + 13, PyBytes_AS_STRING(ctx), n)
    return out


def decode_conf_change(buf):
    cdef bytes b = _as_bytes(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(b)
    if n < 13:
        raise CodecError("conf change: truncated header")
    cdef uint32_t k = _get_u32(p + 9)
    if n != 13 + <Py_ssize_t>k:
        raise CodecError("conf change: length mismatch")
    cdef ConfChange cc = ConfChange.__new__(ConfChange)
    cc.type = p[0]
    cc.node_id = _get_u64(p + 1)
    cc.context = PyBytes_FromStringAndSize(<const char*>p + 13, k)
    return cc


def encode_message(m):
    cdef list ents = list(m.entries)
    cdef Py_ssize_t total = MSG_HDR + 1 + 4, k, n_ents = len(ents)
    cdef bytes snap_enc = None
    cdef bytes ctx = _as_bytes(m.context)
    cdef bytes data
    cdef Entry ce
    datas = []
    for e in ents:
        data = _as_bytes(e.data)
        datas.append(data)
        total += 4 + ENTRY_HDR + PyBytes_GET_SIZE(data)
    if m.snapshot is not None:
        snap_enc = encode_snapshot(m.snapshot)
        total += PyBytes_GET_SIZE(snap_enc)
    total += PyBytes_GET_SIZE(ctx)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    p[0] = <unsigned char>(<int>m.type)
    _put_u64(p + 1, m.to)
    _put_u64(p + 9, m.frm)
    _put_u64(p + 17, m.term)
    _put_u64(p + 25, m.log_term)
    _put_u64(p + 33, m.index)
    _put_u64(p + 41, m.commit)
    p[49] = 1 if m.reject else 0
    _put_u64(p + 50, m.reject_hint)
    _put_u32(p + 58, <uint32_t>n_ents)
    p += MSG_HDR
    for k in range(n_ents):
        e = ents[k]
        data = <bytes>datas[k]
        _put_u32(p, <uint32_t>(ENTRY_HDR + PyBytes_GET_SIZE(data)))
        if type(e) is Entry:
            ce = <Entry>e
            _write_entry(p + 4, ce.term, ce.index, ce.type, data)
        else:
            _write_entry(p + 4, e.term, e.index, e.type, data)
        p += 4 + ENTRY_HDR + PyBytes_GET_SIZE(data)
    if snap_enc is None:
        p[0] = 0
        p += 1
    else:
        p[0] = 1
        memcpy(p + 1, PyBytes_AS_STRING(snap_enc), PyBytes_GET_SIZE(snap_enc))
        p += 1 + PyBytes_GET_SIZE(snap_enc)
    _put_u32(p, <uint32_t>PyBytes_GET_SIZE(ctx))
    memcpy(p + 4, PyBytes_AS_STRING(ctx), PyBytes_GET_SIZE(ctx))
    return out


def decode_message(buf):
    cdef bytes b = _as_bytes(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b), off, k, used = 0
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(b)
    cdef uint32_t n_ents, ln
    if n < MSG_HDR:
        raise CodecError("message: truncated header")
    if p[49] > 1:
        raise CodecError("message: bad reject flag")
    cdef Message m = Message.__new__(Message)
    m.type = p[0]
    m.to = _get_u64(p + 1)
    m.frm = _get_u64(p + 9)
    m.term = _get_u64(p + 17)
    m.log_term = _get_u64(p + 25)
    m.index = _get_u64(p + 33)
    m.commit = _get_u64(p + 41)
    m.reject = p[49]
    m.reject_hint = _get_u64(p + 50)
    n_ents = _get_u32(p + 58)
    off = MSG_HDR
    cdef list ents = []
    for k in range(n_ents):
        if n < off + 4:
            raise CodecError("message: truncated entry length")
        ln = _get_u32(p + off)
        off += 4
        if n < off + <Py_ssize_t>ln:
            raise CodecError("message: truncated entry")
        ents.append(_read_entry(p + off, ln))
        off += ln
    m.entries = ents
    if n < off + 1:
        raise CodecError("message: truncated snapshot flag")
    flag = p[off]
    off += 1
    m.snapshot = None
    if flag == 1:
        m.snapshot = _read_snapshot(p + off, n - off, &used)
        off += used
    elif flag != 0:
        raise CodecError("message: bad snapshot flag")
    if n < off + 4:
        raise CodecError("message: truncated context length")
    ln = _get_u32(p + off)
    off += 4
    if n != off + <Py_ssize_t>ln:
        raise CodecError("message: context length mismatch")
    m.context = PyBytes_FromStringAndSize(<const char*>p + off, ln)
    return m
