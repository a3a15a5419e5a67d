"""Revision keys and stored records of the MVCC key bucket. Pure-Python twin of mvcccodec.pyx.

On-disk key (the B+tree key in the "key" bucket) of a record written at revision (main, sub):
    main as 8-byte big-endian | b"_" | sub as 8-byte big-endian [| b"t" if it is a tombstone]
Big-endian makes byte order equal revision order, so a cursor walks history in revision order and
MDB_APPEND applies to fresh writes. A tombstone marks a deletion (the record keeps the key only).

Stored record (the value): a fixed little-endian header then the key and value bytes:
    key_len u32 | create_revision i64 | mod_revision i64 | version i64 | lease i64 | key | value
"""
from __future__ import annotations

import struct

REV_KEY_SIZE = 17
TOMBSTONE_MARK = b"t"

_REV = struct.Struct(">QcQ")
_HDR = struct.Struct("<Iqqqq")
HEADER_SIZE = _HDR.size


class KeyValue:
    """An etcd mvccpb.KeyValue. Plain attributes so callers can read them without copies."""

    __slots__ = ("key", "create_revision", "mod_revision", "version", "value", "lease")

    def __init__(self, key: bytes = b"", create_revision: int = 0, mod_revision: int = 0,
                 version: int = 0, value: bytes = b"", lease: int = 0):
        self.key = key
        self.create_revision = create_revision
        self.mod_revision = mod_revision
        self.version = version
        self.value = value
        self.lease = lease

    def __eq__(self, other):
        if not hasattr(other, "mod_revision"):
            return NotImplemented
        return (self.key, self.create_revision, self.mod_revision, self.version, self.value, self.lease) == (
            other.key, other.create_revision, other.mod_revision, other.version, other.value, other.lease)

    def __repr__(self):
        return (f"KeyValue(key={self.key!r}, create_revision={self.create_revision}, "
                f"mod_revision={self.mod_revision}, version={self.version}, value={self.value!r}, lease={self.lease})")


def rev_key(main: int, sub: int, tombstone: bool = False) -> bytes:
    k = _REV.pack(main, b"_", sub)
    return k + TOMBSTONE_MARK if tombstone else k


def parse_rev_key(b: bytes):
    """-> (main, sub, is_tombstone)."""
    if len(b) not in (REV_KEY_SIZE, REV_KEY_SIZE + 1):
        raise ValueError(f"revision key has {len(b)} bytes, expected 17 or 18")
    main, _, sub = _REV.unpack_from(b, 0)
    return main, sub, len(b) == REV_KEY_SIZE + 1


def encode_record(key: bytes, value: bytes, create_revision: int, mod_revision: int, version: int, lease: int) -> bytes:
    return _HDR.pack(len(key), create_revision, mod_revision, version, lease) + key + value


def decode_record(b: bytes) -> KeyValue:
    if len(b) < HEADER_SIZE:
        raise ValueError("stored record is shorter than its header")
    klen, create, mod, ver, lease = _HDR.unpack_from(b, 0)
    end = HEADER_SIZE + klen
    if end > len(b):
        raise ValueError("stored record key runs past its end")
    return KeyValue(bytes(b[HEADER_SIZE:end]), create, mod, ver, bytes(b[end:]), lease)


def record_key(b: bytes) -> bytes:
    """Just the user key of a stored record (cheaper than a full decode)."""
    klen = struct.unpack_from("<I", b, 0)[0]
    return bytes(b[HEADER_SIZE:HEADER_SIZE + klen])
