"""asyncio etcd v3 client (grpc.aio). Create and use it inside one running event loop."""
from __future__ import annotations

import grpc

from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc
from fastkv.client import ops
from fastkv.client._channel import CHANNEL_OPTIONS, parse_endpoint


class AsyncWatch:
    """One Watch stream: `async for resp in w`, `await w.send(req)`, `w.close()`."""

    def __init__(self, stub, timeout: float | None):
        self._call = stub.Watch(timeout=timeout)

    async def send(self, request: rpc_pb2.WatchRequest) -> None:
        await self._call.write(request)

    async def recv(self) -> rpc_pb2.WatchResponse:
        resp = await self._call.read()
        if resp is grpc.aio.EOF:
            raise EOFError("watch stream closed by the server")
        return resp

    def __aiter__(self):
        return self._call.__aiter__()

    def close(self) -> None:
        self._call.cancel()


class AsyncKeepAlive:
    """One LeaseKeepAlive stream: `await ka.keepalive(lease_id)` sends one and awaits its answer."""

    def __init__(self, stub, timeout: float | None):
        self._call = stub.LeaseKeepAlive(timeout=timeout)

    async def keepalive(self, lease_id: int) -> rpc_pb2.LeaseKeepAliveResponse:
        await self._call.write(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id))
        resp = await self._call.read()
        if resp is grpc.aio.EOF:
            raise EOFError("keepalive stream closed by the server")
        return resp

    def close(self) -> None:
        self._call.cancel()


class AsyncEtcdClient:
    def __init__(self, endpoint: str = "127.0.0.1:2379", *, timeout: float | None = 10.0):
        self.target = parse_endpoint(endpoint)
        self.timeout = timeout
        self.channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.watch_stub = rpc_pb2_grpc.WatchStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(self.channel)
        self.cluster = rpc_pb2_grpc.ClusterStub(self.channel)
        self.auth = rpc_pb2_grpc.AuthStub(self.channel)  # raw stub: no helpers yet

    async def get(self, key: bytes, range_end: bytes | None = None, **flags) -> rpc_pb2.RangeResponse:
        return await self.kv.Range(ops.range_(key, range_end, **flags), timeout=self.timeout)

    async def put(self, key: bytes, value: bytes, **flags) -> rpc_pb2.PutResponse:
        return await self.kv.Put(ops.put(key, value, **flags), timeout=self.timeout)

    async def delete(self, key: bytes, range_end: bytes | None = None, **flags) -> rpc_pb2.DeleteRangeResponse:
        return await self.kv.DeleteRange(ops.delete(key, range_end, **flags), timeout=self.timeout)

    async def txn(self, compare=(), success=(), failure=()) -> rpc_pb2.TxnResponse:
        return await self.kv.Txn(ops.txn(compare, success, failure), timeout=self.timeout)

    async def compact(self, revision: int, physical: bool = False) -> rpc_pb2.CompactionResponse:
        return await self.kv.Compact(rpc_pb2.CompactionRequest(revision=revision, physical=physical),
                                     timeout=self.timeout)

    async def watch(self, key: bytes, range_end: bytes | None = None, *, timeout: float | None = None,
                    **flags) -> AsyncWatch:
        """Open a stream, create one watcher on it and return once the server confirmed it."""
        w = AsyncWatch(self.watch_stub, timeout)
        await w.send(ops.watch_create(key, range_end, **flags))
        return w

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> rpc_pb2.LeaseGrantResponse:
        return await self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=lease_id), timeout=self.timeout)

    async def lease_revoke(self, lease_id: int) -> rpc_pb2.LeaseRevokeResponse:
        return await self.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lease_id), timeout=self.timeout)

    def keepalive_stream(self, timeout: float | None = None) -> AsyncKeepAlive:
        return AsyncKeepAlive(self.lease, timeout)

    async def lease_time_to_live(self, lease_id: int, keys: bool = False) -> rpc_pb2.LeaseTimeToLiveResponse:
        return await self.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys),
                                                timeout=self.timeout)

    async def status(self) -> rpc_pb2.StatusResponse:
        return await self.maintenance.Status(rpc_pb2.StatusRequest(), timeout=self.timeout)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
