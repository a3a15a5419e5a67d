"""Requests and results of the MVCC KV, mirroring etcd's RangeRequest/PutRequest/... messages.

Enum values equal etcd's protobuf enum numbers, so the gRPC layer converts by value.
Range ends follow the etcd API: b"" (or None) = the single key, b"\\0" = every key >= key,
otherwise the half-open interval [key, range_end).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from fastkv._native import load

KeyValue = load("mvcccodec").KeyValue


class SortOrder(IntEnum):
    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(IntEnum):
    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


class CompareTarget(IntEnum):
    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class CompareResult(IntEnum):
    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


class EventType(IntEnum):
    PUT = 0
    DELETE = 1


@dataclass(slots=True)
class RangeOp:
    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    sort_order: int = SortOrder.NONE
    sort_target: int = SortTarget.KEY
    serializable: bool = False
    keys_only: bool = False
    count_only: bool = False
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0


@dataclass(slots=True)
class PutOp:
    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False


@dataclass(slots=True)
class DeleteOp:
    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False


@dataclass(slots=True)
class Compare:
    """compare `target` of the key (or every key in [key, range_end)) against the given value."""

    key: bytes
    target: int
    result: int
    value: object = 0  # bytes for VALUE, int otherwise
    range_end: bytes = b""


@dataclass(slots=True)
class TxnOp:
    compare: list = field(default_factory=list)
    success: list = field(default_factory=list)
    failure: list = field(default_factory=list)


@dataclass(slots=True)
class RangeResult:
    kvs: list
    count: int
    more: bool
    revision: int


# PutResult(revision, prev_kv=None): compiled (one is made per put on the hottest path); same
# constructor, attributes, equality and repr as the dataclasses here (see _native/revwrite_py.py).
PutResult = load("revwrite").PutResult


@dataclass(slots=True)
class DeleteResult:
    revision: int
    deleted: int
    prev_kvs: list = field(default_factory=list)


@dataclass(slots=True)
class TxnResult:
    revision: int
    succeeded: bool
    responses: list = field(default_factory=list)


@dataclass(slots=True)
class Event:
    type: int
    kv: object
    prev_kv: object = None


def txn_has_writes(t: TxnOp) -> bool:
    """Whether any branch, at any depth, puts or deletes (a txn without writes needs no proposal)."""
    return any(isinstance(o, (PutOp, DeleteOp)) or (isinstance(o, TxnOp) and txn_has_writes(o))
               for o in (*t.success, *t.failure))


def txn_has_puts(t: TxnOp) -> bool:
    """Whether any branch, at any depth, puts (what a space quota refuses)."""
    return any(isinstance(o, PutOp) or (isinstance(o, TxnOp) and txn_has_puts(o)) for o in (*t.success, *t.failure))


def txn_serializable(t: TxnOp) -> bool:
    """Whether every range in the txn, at any depth, asked for a serializable read."""
    return all(o.serializable if isinstance(o, RangeOp) else (not isinstance(o, TxnOp) or txn_serializable(o))
               for o in (*t.success, *t.failure))


def index_end(range_end: bytes | None):
    """Translate an API range_end to the index convention (None single key, b"" unbounded)."""
    if not range_end:
        return None
    if range_end == b"\x00":
        return b""
    return range_end
