"""The proposal codec: what a raft entry of a client request carries (etcd's InternalRaftRequest).

Layout: request id u64 | kind u8 | the request's protobuf bytes. The id is the key of the wait
registry on the member that proposed it (0 = nobody waits, e.g. a lease expiry). Every member
decodes and applies the same bytes, so applying stays deterministic.
"""
from __future__ import annotations

import struct

from fastkv.api.etcdpb import rpc_pb2

_HDR = struct.Struct("<QB")
HEADER_SIZE = _HDR.size

PUT, DELETE_RANGE, TXN, COMPACT, LEASE_GRANT, LEASE_REVOKE, LEASE_CHECKPOINT, ALARM = range(1, 9)
MEMBER_ATTRIBUTES = 32  # a member publishes its name and client URLs (etcd's publish)

MESSAGES = {
    PUT: rpc_pb2.PutRequest,
    DELETE_RANGE: rpc_pb2.DeleteRangeRequest,
    TXN: rpc_pb2.TxnRequest,
    COMPACT: rpc_pb2.CompactionRequest,
    LEASE_GRANT: rpc_pb2.LeaseGrantRequest,
    LEASE_REVOKE: rpc_pb2.LeaseRevokeRequest,
    LEASE_CHECKPOINT: rpc_pb2.LeaseCheckpointRequest,
    ALARM: rpc_pb2.AlarmRequest,
    MEMBER_ATTRIBUTES: rpc_pb2.Member,
}


def encode(request_id: int, kind: int, message) -> bytes:
    return _HDR.pack(request_id, kind) + message.SerializeToString()


def decode(data: bytes):
    """-> (request_id, kind, message). Raises ValueError on bytes that are not a request."""
    if len(data) < HEADER_SIZE:
        raise ValueError("proposal shorter than its header")
    request_id, kind = _HDR.unpack_from(data, 0)
    cls = MESSAGES.get(kind)
    if cls is None:
        raise ValueError(f"unknown proposal kind {kind}")
    msg = cls()
    msg.ParseFromString(data[HEADER_SIZE:])
    return request_id, kind, msg
