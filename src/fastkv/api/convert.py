"""Conversion between etcd's protobuf messages and the MVCC store's requests and results.

Headers follow etcd 3.4's apply layer exactly, because clients can see them: a top-level response
header gets cluster/member/term filled in by the server (`fill_header`); responses nested in a txn
keep only the revision the apply step gave them (range/put/delete), and a nested txn's header is
present but empty.
"""
from __future__ import annotations

from fastkv.api.etcdpb import kv_pb2, rpc_pb2
from fastkv.mvcc.ops import (
    Compare, DeleteOp, DeleteResult, PutOp, PutResult, RangeOp, RangeResult, TxnOp, TxnResult,
)

_Header = rpc_pb2.ResponseHeader
_KV = kv_pb2.KeyValue


# --- requests ------------------------------------------------------------------------------------
def range_op(r) -> RangeOp:
    return RangeOp(r.key, r.range_end, r.limit, r.revision, r.sort_order, r.sort_target, r.serializable,
                   r.keys_only, r.count_only, r.min_mod_revision, r.max_mod_revision, r.min_create_revision,
                   r.max_create_revision)


def put_op(r) -> PutOp:
    return PutOp(r.key, r.value, r.lease, r.prev_kv, r.ignore_value, r.ignore_lease)


def delete_op(r) -> DeleteOp:
    return DeleteOp(r.key, r.range_end, r.prev_kv)


_COMPARE_FIELD = {0: "version", 1: "create_revision", 2: "mod_revision", 3: "value", 4: "lease"}


def compare(c) -> Compare:
    field = _COMPARE_FIELD.get(c.target)
    value = getattr(c, field) if field else 0
    return Compare(c.key, c.target, c.result, value, c.range_end)


def request_op(op):
    which = op.WhichOneof("request")
    if which == "request_range":
        return range_op(op.request_range)
    if which == "request_put":
        return put_op(op.request_put)
    if which == "request_delete_range":
        return delete_op(op.request_delete_range)
    if which == "request_txn":
        return txn_op(op.request_txn)
    raise ValueError("empty RequestOp")


def txn_op(t) -> TxnOp:
    return TxnOp([compare(c) for c in t.compare], [request_op(o) for o in t.success],
                 [request_op(o) for o in t.failure])


# --- results -------------------------------------------------------------------------------------
def kv(k) -> kv_pb2.KeyValue:
    return _KV(key=k.key, create_revision=k.create_revision, mod_revision=k.mod_revision, version=k.version,
               value=k.value, lease=k.lease)


def range_response(res: RangeResult, header=None) -> rpc_pb2.RangeResponse:
    return rpc_pb2.RangeResponse(header=header if header is not None else _Header(revision=res.revision), kvs=[kv(k) for k in res.kvs],
                                 more=res.more, count=res.count)


def put_response(res: PutResult, header=None) -> rpc_pb2.PutResponse:
    resp = rpc_pb2.PutResponse(header=header if header is not None else _Header(revision=res.revision))
    if res.prev_kv is not None:
        resp.prev_kv.CopyFrom(kv(res.prev_kv))
    return resp


def delete_response(res: DeleteResult, header=None) -> rpc_pb2.DeleteRangeResponse:
    return rpc_pb2.DeleteRangeResponse(header=header if header is not None else _Header(revision=res.revision), deleted=res.deleted,
                                       prev_kvs=[kv(k) for k in res.prev_kvs])


def txn_response(res: TxnResult, header=None) -> rpc_pb2.TxnResponse:
    out = []
    for r in res.responses:
        if isinstance(r, RangeResult):
            out.append(rpc_pb2.ResponseOp(response_range=range_response(r)))
        elif isinstance(r, PutResult):
            out.append(rpc_pb2.ResponseOp(response_put=put_response(r)))
        elif isinstance(r, DeleteResult):
            out.append(rpc_pb2.ResponseOp(response_delete_range=delete_response(r)))
        else:
            out.append(rpc_pb2.ResponseOp(response_txn=txn_response(r, _Header())))
    return rpc_pb2.TxnResponse(header=header if header is not None else _Header(revision=res.revision),
                               succeeded=res.succeeded, responses=out)


def fill_header(h, *, cluster_id: int, member_id: int, raft_term: int, revision: int):
    """Complete a top-level header as etcd's v3rpc does (revision only if the apply left it 0)."""
    h.cluster_id = cluster_id
    h.member_id = member_id
    h.raft_term = raft_term
    if h.revision == 0:
        h.revision = revision
    return h
