"""Builders for etcd requests, shared by the sync/asyncio clients and the load generator.

Each returns a plain generated message (fastkv.api.etcdpb.rpc_pb2), so callers can also serialize
it once and reuse the bytes (the load generator does).
"""
from __future__ import annotations

from fastkv.api.etcdpb import rpc_pb2
from fastkv.client._channel import prefix_range_end

_SORT_ORDER = {"none": 0, "ascend": 1, "descend": 2}
_SORT_TARGET = {"key": 0, "version": 1, "create": 2, "mod": 3, "value": 4}
_RESULT = {"=": rpc_pb2.Compare.EQUAL, "==": rpc_pb2.Compare.EQUAL, ">": rpc_pb2.Compare.GREATER,
           "<": rpc_pb2.Compare.LESS, "!=": rpc_pb2.Compare.NOT_EQUAL}


def _end(key: bytes, range_end: bytes | None, prefix: bool, from_key: bool) -> bytes:
    if prefix:
        return prefix_range_end(key)
    if from_key:
        return b"\0"
    return range_end or b""


def range_(key: bytes, range_end: bytes | None = None, *, prefix: bool = False, from_key: bool = False,
           limit: int = 0, revision: int = 0, sort_order: str = "none", sort_target: str = "key",
           serializable: bool = False, keys_only: bool = False, count_only: bool = False,
           min_mod_revision: int = 0, max_mod_revision: int = 0, min_create_revision: int = 0,
           max_create_revision: int = 0) -> rpc_pb2.RangeRequest:
    return rpc_pb2.RangeRequest(
        key=key, range_end=_end(key, range_end, prefix, from_key), limit=limit, revision=revision,
        sort_order=_SORT_ORDER[sort_order], sort_target=_SORT_TARGET[sort_target],
        serializable=serializable, keys_only=keys_only, count_only=count_only,
        min_mod_revision=min_mod_revision, max_mod_revision=max_mod_revision,
        min_create_revision=min_create_revision, max_create_revision=max_create_revision)


def put(key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False, ignore_value: bool = False,
        ignore_lease: bool = False) -> rpc_pb2.PutRequest:
    return rpc_pb2.PutRequest(key=key, value=value, lease=lease, prev_kv=prev_kv,
                              ignore_value=ignore_value, ignore_lease=ignore_lease)


def delete(key: bytes, range_end: bytes | None = None, *, prefix: bool = False, from_key: bool = False,
           prev_kv: bool = False) -> rpc_pb2.DeleteRangeRequest:
    return rpc_pb2.DeleteRangeRequest(key=key, range_end=_end(key, range_end, prefix, from_key), prev_kv=prev_kv)


def txn(compare=(), success=(), failure=()) -> rpc_pb2.TxnRequest:
    """success/failure items: RangeRequest, PutRequest, DeleteRangeRequest or TxnRequest (nested)."""
    return rpc_pb2.TxnRequest(compare=list(compare), success=[request_op(o) for o in success],
                              failure=[request_op(o) for o in failure])


def request_op(req) -> rpc_pb2.RequestOp:
    if isinstance(req, rpc_pb2.RequestOp):
        return req
    if isinstance(req, rpc_pb2.RangeRequest):
        return rpc_pb2.RequestOp(request_range=req)
    if isinstance(req, rpc_pb2.PutRequest):
        return rpc_pb2.RequestOp(request_put=req)
    if isinstance(req, rpc_pb2.DeleteRangeRequest):
        return rpc_pb2.RequestOp(request_delete_range=req)
    if isinstance(req, rpc_pb2.TxnRequest):
        return rpc_pb2.RequestOp(request_txn=req)
    raise TypeError(f"not a txn operation: {type(req).__name__}")


def _cmp(key, op, target, field, value, range_end):
    c = rpc_pb2.Compare(result=_RESULT[op], target=target, key=key, range_end=range_end or b"")
    setattr(c, field, value)
    return c


def cmp_version(key: bytes, op: str, version: int, range_end: bytes | None = None):
    return _cmp(key, op, rpc_pb2.Compare.VERSION, "version", version, range_end)


def cmp_create(key: bytes, op: str, revision: int, range_end: bytes | None = None):
    return _cmp(key, op, rpc_pb2.Compare.CREATE, "create_revision", revision, range_end)


def cmp_mod(key: bytes, op: str, revision: int, range_end: bytes | None = None):
    return _cmp(key, op, rpc_pb2.Compare.MOD, "mod_revision", revision, range_end)


def cmp_value(key: bytes, op: str, value: bytes, range_end: bytes | None = None):
    return _cmp(key, op, rpc_pb2.Compare.VALUE, "value", value, range_end)


def cmp_lease(key: bytes, op: str, lease: int, range_end: bytes | None = None):
    return _cmp(key, op, rpc_pb2.Compare.LEASE, "lease", lease, range_end)


def watch_create(key: bytes, range_end: bytes | None = None, *, prefix: bool = False, from_key: bool = False,
                 start_revision: int = 0, prev_kv: bool = False, progress_notify: bool = False,
                 no_put: bool = False, no_delete: bool = False, watch_id: int = 0,
                 fragment: bool = False) -> rpc_pb2.WatchRequest:
    filters = ([rpc_pb2.WatchCreateRequest.NOPUT] if no_put else []) + \
              ([rpc_pb2.WatchCreateRequest.NODELETE] if no_delete else [])
    return rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
        key=key, range_end=_end(key, range_end, prefix, from_key), start_revision=start_revision,
        prev_kv=prev_kv, progress_notify=progress_notify, filters=filters, watch_id=watch_id,
        fragment=fragment))


def watch_cancel(watch_id: int) -> rpc_pb2.WatchRequest:
    return rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=watch_id))


def watch_progress() -> rpc_pb2.WatchRequest:
    return rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())
