"""Blocking etcd v3 client (grpc sync stubs). Thread-safe: gRPC channels and stubs are."""
from __future__ import annotations

import queue

import grpc

from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc
from fastkv.client import ops
from fastkv.client._channel import CHANNEL_OPTIONS, parse_endpoint

_CLOSE = object()


class Watch:
    """One Watch stream. Iterate to get WatchResponses; `send` more create/cancel/progress
    requests on the same stream; `close` ends it. The first response answers the create request."""

    def __init__(self, stub, first: rpc_pb2.WatchRequest, timeout: float | None):
        self._outbox: queue.Queue = queue.Queue()
        self._outbox.put(first)
        self._call = stub.Watch(iter(self._outbox.get, _CLOSE), timeout=timeout)

    def send(self, request: rpc_pb2.WatchRequest) -> None:
        self._outbox.put(request)

    def __iter__(self):
        return self._call

    def __next__(self) -> rpc_pb2.WatchResponse:
        return next(self._call)

    def close(self) -> None:
        self._outbox.put(_CLOSE)
        self._call.cancel()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class EtcdClient:
    def __init__(self, endpoint: str = "127.0.0.1:2379", *, timeout: float | None = 10.0):
        self.target = parse_endpoint(endpoint)
        self.timeout = timeout
        self.channel = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.watch_stub = rpc_pb2_grpc.WatchStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(self.channel)
        self.cluster = rpc_pb2_grpc.ClusterStub(self.channel)
        self.auth = rpc_pb2_grpc.AuthStub(self.channel)  # raw stub: no helpers yet

    # -- KV ------------------------------------------------------------------------------------
    def get(self, key: bytes, range_end: bytes | None = None, **flags) -> rpc_pb2.RangeResponse:
        """Range over [key, range_end); flags as in fastkv.client.ops.range_ (prefix=, limit=, ...)."""
        return self.kv.Range(ops.range_(key, range_end, **flags), timeout=self.timeout)

    def put(self, key: bytes, value: bytes, **flags) -> rpc_pb2.PutResponse:
        return self.kv.Put(ops.put(key, value, **flags), timeout=self.timeout)

    def delete(self, key: bytes, range_end: bytes | None = None, **flags) -> rpc_pb2.DeleteRangeResponse:
        return self.kv.DeleteRange(ops.delete(key, range_end, **flags), timeout=self.timeout)

    def txn(self, compare=(), success=(), failure=()) -> rpc_pb2.TxnResponse:
        return self.kv.Txn(ops.txn(compare, success, failure), timeout=self.timeout)

    def compact(self, revision: int, physical: bool = False) -> rpc_pb2.CompactionResponse:
        return self.kv.Compact(rpc_pb2.CompactionRequest(revision=revision, physical=physical),
                               timeout=self.timeout)

    # -- Watch ---------------------------------------------------------------------------------
    def watch(self, key: bytes, range_end: bytes | None = None, *, timeout: float | None = None,
              **flags) -> Watch:
        """Open a Watch stream with one watcher; flags as in fastkv.client.ops.watch_create."""
        return Watch(self.watch_stub, ops.watch_create(key, range_end, **flags), timeout)

    # -- Lease ---------------------------------------------------------------------------------
    def lease_grant(self, ttl: int, lease_id: int = 0) -> rpc_pb2.LeaseGrantResponse:
        return self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=lease_id), timeout=self.timeout)

    def lease_revoke(self, lease_id: int) -> rpc_pb2.LeaseRevokeResponse:
        return self.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lease_id), timeout=self.timeout)

    def lease_keepalive_once(self, lease_id: int) -> rpc_pb2.LeaseKeepAliveResponse:
        stream = self.lease.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)]),
                                           timeout=self.timeout)
        try:
            return next(stream)
        finally:
            stream.cancel()

    def lease_time_to_live(self, lease_id: int, keys: bool = False) -> rpc_pb2.LeaseTimeToLiveResponse:
        return self.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys),
                                          timeout=self.timeout)

    def lease_leases(self) -> rpc_pb2.LeaseLeasesResponse:
        return self.lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=self.timeout)

    # -- Maintenance / Cluster -----------------------------------------------------------------
    def status(self) -> rpc_pb2.StatusResponse:
        return self.maintenance.Status(rpc_pb2.StatusRequest(), timeout=self.timeout)

    def member_list(self) -> rpc_pb2.MemberListResponse:
        return self.cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=self.timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
