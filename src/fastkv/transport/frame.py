"""The peer wire format: a preamble, then length-prefixed frames.

A connection to the peer port that speaks this protocol opens with the 4-byte PREAMBLE (`FKV`
plus the protocol version), so the listener can tell it from HTTP/1.1 by its first bytes. After it
every frame is

    length u32 (little-endian, counts the kind byte and the payload) | kind u8 | payload

The first frame from the dialer is HELLO; the listener answers ACCEPT or REFUSE (reason code and
text), and closes after a refusal. On a *stream* connection the dialer then sends MSG frames (one
raft message each, the native raftpb codec) and PING frames the listener echoes as PONG. On a
*pipeline* connection the dialer sends SNAP_META, SNAP_CHUNK..., SNAP_END and the listener answers
one SNAP_STATUS.

Every kind has its own size cap, checked on the length word before a byte of payload is buffered:
a hostile or broken peer can make us drop the connection, never allocate more than the cap.
"""
from __future__ import annotations

import struct

import xxhash

PROTOCOL_VERSION = 1
PREAMBLE = b"FKV" + bytes([PROTOCOL_VERSION])
MAGIC = PREAMBLE[:3]

# Frame kinds
HELLO = 1
ACCEPT = 2
REFUSE = 3
MSG = 4
PING = 5
PONG = 6
SNAP_META = 7
SNAP_CHUNK = 8
SNAP_END = 9
SNAP_STATUS = 10

KIND_NAMES = {HELLO: "HELLO", ACCEPT: "ACCEPT", REFUSE: "REFUSE", MSG: "MSG", PING: "PING",
              PONG: "PONG", SNAP_META: "SNAP_META", SNAP_CHUNK: "SNAP_CHUNK", SNAP_END: "SNAP_END",
              SNAP_STATUS: "SNAP_STATUS"}

# Channels named in HELLO
CHANNEL_STREAM = 1
CHANNEL_PIPELINE = 2

# Refusal codes (the reason text travels too; the codes are what the dialer acts on)
REFUSE_VERSION = 1          # protocol version not spoken here
REFUSE_CLUSTER = 2          # cluster id mismatch (etcd: 412 Precondition Failed)
REFUSE_TO = 3               # the dialer meant another member (etcd: "to field mismatch")
REFUSE_UNKNOWN = 4          # sender not a member we know (etcd: 404 "error sender not found")
REFUSE_REMOVED = 5          # sender was removed from the cluster (etcd: 410 "removed member")
REFUSE_NOT_READY = 6        # this member's raft side is not attached yet; retry later
REFUSE_BAD_CHANNEL = 7

HEADER = struct.Struct("<IB")
HEADER_SIZE = HEADER.size
_HELLO = struct.Struct("<BBQQQ")           # version, channel, cluster id, from, to
_REFUSE = struct.Struct("<B")
_SNAP_META = struct.Struct("<Q")           # total size of the backend file, then the MsgSnap
_STATUS = struct.Struct("<B")               # 0 = installed-ready (verified), 1 = failed; then text

# SNAP_END carries the XXH3-128 of the whole backend file. It guards against corruption, not
# against an adversary (peer TLS does that), and costs far less CPU than sha256, which matters
# on a busy leader whose heartbeats share the CPU with the transfer.
DIGEST_SIZE = 16


def snapshot_digest():
    """A fresh hasher for the SNAP_END digest (update() / digest())."""
    return xxhash.xxh3_128()
SNAP_CHUNK_MAX = 1 << 20                    # senders cut the backend in chunks up to this size
CONTROL_MAX = 4096                          # HELLO, ACCEPT, REFUSE, PING, PONG, STATUS, END

# etcd lets one raft message be as large as the biggest request plus the append batch it rides
# in (1.5 MiB request, 1 MiB per MsgApp); we keep a margin above both and make it configurable.
DEFAULT_MAX_MESSAGE_BYTES = 4 << 20


class FrameError(ValueError):
    """The peer sent bytes that are not a frame we accept: the connection must be closed."""


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(len(payload) + 1, kind) + payload


def frame_header(kind: int, payload_len: int) -> bytes:
    return HEADER.pack(payload_len + 1, kind)


def hello(channel: int, cluster_id: int, frm: int, to: int, version: int = PROTOCOL_VERSION) -> bytes:
    return frame(HELLO, _HELLO.pack(version, channel, cluster_id, frm, to))


def parse_hello(payload: bytes) -> tuple[int, int, int, int, int]:
    """(version, channel, cluster_id, from, to); FrameError if malformed."""
    if len(payload) != _HELLO.size:
        raise FrameError(f"HELLO of {len(payload)} bytes, want {_HELLO.size}")
    return _HELLO.unpack(payload)


def refuse(code: int, reason: str) -> bytes:
    return frame(REFUSE, _REFUSE.pack(code) + reason.encode()[:CONTROL_MAX - 8])


def parse_refuse(payload: bytes) -> tuple[int, str]:
    if not payload:
        raise FrameError("empty REFUSE")
    return payload[0], bytes(payload[1:]).decode("utf-8", "replace")


def snap_meta(total_size: int, encoded_msg: bytes) -> bytes:
    return frame(SNAP_META, _SNAP_META.pack(total_size) + encoded_msg)


def parse_snap_meta(payload) -> tuple[int, bytes]:
    if len(payload) < _SNAP_META.size:
        raise FrameError("SNAP_META too short")
    (size,) = _SNAP_META.unpack_from(payload)
    return size, bytes(payload[_SNAP_META.size:])


def snap_status(failed: bool, reason: str = "") -> bytes:
    return frame(SNAP_STATUS, _STATUS.pack(1 if failed else 0) + reason.encode()[:CONTROL_MAX - 8])


def parse_snap_status(payload) -> tuple[bool, str]:
    if not payload:
        raise FrameError("empty SNAP_STATUS")
    return payload[0] != 0, bytes(payload[1:]).decode("utf-8", "replace")


class FrameDecoder:
    """Incremental frame parser with per-kind size caps.

    Two ways to read: `feed(data)` then `next_frame()` until None, for states where a frame may
    change the caps of the next (HELLO accepted, SNAP_META seen); or `feed_all(data)`, all
    frames of a read at once, where the caps stay fixed (the stream). Both raise FrameError on an
    unknown kind, a zero length or a length over the kind's cap (`caps`: kind -> max payload),
    checked on the header before the payload is buffered; the buffer never holds more than one
    frame's cap plus one read.
    """

    __slots__ = ("_buf", "caps")

    def __init__(self, caps: dict[int, int]):
        self._buf = bytearray()
        self.caps = caps

    def buffered(self) -> int:
        return len(self._buf)

    def take_buffered(self) -> bytes:
        """Hand over the unparsed bytes (a state change moves them to another parser)."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest

    def feed(self, data) -> None:
        """Buffer `data`; take frames out one at a time with next_frame()."""
        self._buf += data

    def next_frame(self) -> tuple[int, bytes] | None:
        """The next complete frame, checked against the caps as they are now, or None."""
        buf = self._buf
        if len(buf) < HEADER_SIZE:
            return None
        length, kind = HEADER.unpack_from(buf, 0)
        self._check(length, kind)
        end = 4 + length
        if end > len(buf):
            return None
        payload = bytes(buf[HEADER_SIZE:end])
        del buf[:end]
        return kind, payload

    def _check(self, length: int, kind: int) -> None:
        cap = self.caps.get(kind)
        if cap is None:
            raise FrameError(f"unexpected frame kind {kind}")
        if length == 0 or length - 1 > cap:
            raise FrameError(f"{KIND_NAMES.get(kind, kind)} frame of {length - 1} bytes "
                             f"exceeds the limit of {cap}")

    def feed_all(self, data) -> list[tuple[int, bytes]]:
        """All complete frames in the buffer plus `data`, for states whose caps do not change
        from one frame to the next (the stream). Parses straight out of `data` when nothing is
        buffered, which is the common case: one copy per payload."""
        buf = self._buf
        if buf:
            buf += data
            src = bytes(buf)
            buf.clear()
        else:
            src = data
        out = []
        pos = 0
        n = len(src)
        caps = self.caps
        unpack = HEADER.unpack_from
        while n - pos >= HEADER_SIZE:
            length, kind = unpack(src, pos)
            cap = caps.get(kind)
            if cap is None or length == 0 or length - 1 > cap:
                self._check(length, kind)
            end = pos + 4 + length
            if end > n:
                break
            out.append((kind, src[pos + HEADER_SIZE:end]))
            pos = end
        if pos < n:
            buf += src[pos:]
        return out
