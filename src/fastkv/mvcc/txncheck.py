"""Validation of requests before they touch the store, with etcd's exact errors.

These are the checks etcd's gRPC layer runs before proposing (v3rpc/key.go): empty keys, value or
lease given with ignore_value / ignore_lease, txn op counts, and keys written twice in one txn.
Running them before any change is what keeps a rejected request from leaving partial state.
"""
from __future__ import annotations

from fastkv.errors import ErrDuplicateKey, ErrEmptyKey, ErrLeaseProvided, ErrTooManyOps, ErrValueProvided
from fastkv.mvcc.ops import DeleteOp, PutOp, RangeOp, TxnOp

DEFAULT_MAX_TXN_OPS = 128


def check_range(op: RangeOp) -> None:
    if not op.key:
        raise ErrEmptyKey()


def check_put(op: PutOp) -> None:
    if not op.key:
        raise ErrEmptyKey()
    if op.ignore_value and op.value:
        raise ErrValueProvided()
    if op.ignore_lease and op.lease:
        raise ErrLeaseProvided()


def check_delete(op: DeleteOp) -> None:
    if not op.key:
        raise ErrEmptyKey()


def check_txn(txn: TxnOp, max_txn_ops: int = DEFAULT_MAX_TXN_OPS) -> None:
    _check_txn_ops(txn, max_txn_ops)
    _check_intervals(txn.success)
    _check_intervals(txn.failure)


def _check_txn_ops(txn: TxnOp, max_txn_ops: int) -> None:
    opc = max(len(txn.compare), len(txn.success), len(txn.failure))
    if opc > max_txn_ops:
        raise ErrTooManyOps()
    for c in txn.compare:
        if not c.key:
            raise ErrEmptyKey()
    for op in (*txn.success, *txn.failure):
        if isinstance(op, RangeOp):
            check_range(op)
        elif isinstance(op, PutOp):
            check_put(op)
        elif isinstance(op, DeleteOp):
            check_delete(op)
        elif isinstance(op, TxnOp):
            _check_txn_ops(op, max_txn_ops)
        else:
            raise TypeError(f"not a txn operation: {op!r}")


class _Deletes:
    """Delete intervals collected from one level of a txn (etcd uses an interval tree; txns are
    at most a few hundred ops, so a list is as fast and obviously right)."""

    def __init__(self):
        self.spans: list = []  # (start, end) half-open, compared bytewise; point -> (k, k+b"\0")

    def add(self, key: bytes, range_end: bytes) -> None:
        # etcd compares the raw interval [key, range_end): a from-key end (b"\0") or an end below the
        # key makes an inverted interval that covers nothing, so such deletes never conflict.
        if range_end:
            self.spans.append((key, range_end))
        else:
            self.spans.append((key, key + b"\x00"))

    def covers(self, key: bytes) -> bool:
        return any(s <= key < e for s, e in self.spans)

    def union(self, other: "_Deletes") -> None:
        self.spans.extend(other.spans)


def _check_intervals(ops: list):
    """etcd's checkIntervals: a key may be put once per txn path, and never put and deleted.

    Puts in the success and failure branches of one nested txn may repeat each other (only one
    branch runs), but not a put of an enclosing level. Returns (puts, deletes) of this level.
    """
    dels = _Deletes()
    for op in ops:
        if isinstance(op, DeleteOp):
            dels.add(op.key, op.range_end)
    puts: set = set()
    for op in ops:
        if not isinstance(op, TxnOp):
            continue
        puts_then, dels_then = _check_intervals(op.success)
        puts_else, dels_else = _check_intervals(op.failure)
        for k in puts_then:
            if k in puts or dels.covers(k):
                raise ErrDuplicateKey()
            puts.add(k)
        for k in puts_else:
            if k in puts and k not in puts_then:
                raise ErrDuplicateKey()
            if dels.covers(k):
                raise ErrDuplicateKey()
            puts.add(k)
        dels.union(dels_then)
        dels.union(dels_else)
    for op in ops:
        if isinstance(op, PutOp):
            if op.key in puts or dels.covers(op.key):
                raise ErrDuplicateKey()
            puts.add(op.key)
    return puts, dels
