"""Multi-version concurrency control: the revisioned KV store over a revision index and a backend."""
from fastkv.mvcc.kvstore import KVStore  # noqa: F401
from fastkv.mvcc.ops import (  # noqa: F401
    Compare, CompareResult, CompareTarget, DeleteOp, DeleteResult, Event, EventType, KeyValue, PutOp, PutResult,
    RangeOp, RangeResult, SortOrder, SortTarget, TxnOp, TxnResult,
)
