"""The workload: concurrent clients over a small key space, plus watchers, recording everything.

Each client owns one gRPC connection to one member (client i -> member i mod M) and loops over
linearizable get, put of a unique value, delete (prev_kv), compare-and-swap txn (compare the value
it last saw, put on success, read on failure), and puts of fresh keys whose presence at the end
proves durability. A write whose answer never came (timeout, broken connection, server error) is
recorded with an unknown outcome; a read that failed is recorded too and has no effect.

Each watcher watches the whole workload prefix from the run's start revision on one member; when
its stream breaks it resumes on the next member from its last revision + 1, so a correct cluster
gives it one gap-free sequence.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import grpc

from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc
from fastkv.chaos.history import CAS, DELETE, GET, PUT, Op
from fastkv.chaos.watchcheck import DELETE_EVENT, PUT_EVENT, WatchRecord
from fastkv.client._channel import CHANNEL_OPTIONS, prefix_range_end


@dataclass
class WorkloadConfig:
    clients: int = 8
    keys: int = 4
    watchers: int = 2
    prefix: str = "chaos/"
    op_timeout: float = 2.0
    # relative weights of get, put, delete, cas, durability put
    mix: tuple[float, float, float, float, float] = (0.35, 0.25, 0.08, 0.22, 0.10)


@dataclass
class Recorder:
    ops: list[Op] = field(default_factory=list)
    durable_keys: dict[str, str] = field(default_factory=dict)  # acknowledged fresh keys -> value
    maybe_keys: dict[str, str] = field(default_factory=dict)    # fresh keys with unknown outcome

    def add(self, op: Op) -> None:
        op.id = len(self.ops)
        self.ops.append(op)


def channel(endpoint: str):
    return grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS)


def _err(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


class Client:
    def __init__(self, idx: int, endpoint: str, cfg: WorkloadConfig, rec: Recorder, rng: random.Random):
        self.idx, self.cfg, self.rec, self.rng = idx, cfg, rec, rng
        self.ch = channel(endpoint)
        self.kv = rpc_pb2_grpc.KVStub(self.ch)
        self.seq = 0
        self.last_seen: dict[str, str | None] = {}

    def _value(self) -> str:
        self.seq += 1
        return f"c{self.idx}-{self.seq}"

    async def run(self, stop: asyncio.Event) -> None:
        keys = [f"{self.cfg.prefix}k{i}" for i in range(self.cfg.keys)]
        kinds = ("get", "put", "delete", "cas", "fresh")
        while not stop.is_set():
            kind = self.rng.choices(kinds, weights=self.cfg.mix)[0]
            key = self.rng.choice(keys)
            await getattr(self, "_" + kind)(key)

    async def _call(self, op: Op, rpc, request):
        """Send one request, stamp call/return, return the response or None (and mark unknown)."""
        op.call = time.monotonic()
        try:
            resp = await rpc(request, timeout=self.cfg.op_timeout)
        except (grpc.aio.AioRpcError, asyncio.TimeoutError, OSError) as exc:
            op.ret = None
            op.error = _err(exc)
            self.rec.add(op)
            # an unanswered request costs a little pause, so a dead member is not hammered
            await asyncio.sleep(0.05 + self.rng.random() * 0.1)
            return None
        op.ret = time.monotonic()
        op.revision = resp.header.revision
        return resp

    async def _get(self, key):
        op = Op(GET, key, 0.0, None, self.idx)
        resp = await self._call(op, self.kv.Range, rpc_pb2.RangeRequest(key=key.encode()))
        if resp is not None:
            op.out = resp.kvs[0].value.decode() if resp.kvs else None
            self.last_seen[key] = op.out
            self.rec.add(op)

    async def _put(self, key):
        value = self._value()
        op = Op(PUT, key, 0.0, None, self.idx, value=value)
        resp = await self._call(op, self.kv.Put, rpc_pb2.PutRequest(key=key.encode(), value=value.encode()))
        if resp is not None:
            self.last_seen[key] = value
            self.rec.add(op)

    async def _delete(self, key):
        op = Op(DELETE, key, 0.0, None, self.idx)
        resp = await self._call(op, self.kv.DeleteRange, rpc_pb2.DeleteRangeRequest(key=key.encode(), prev_kv=True))
        if resp is not None:
            op.out = resp.deleted
            op.prev = resp.prev_kvs[0].value.decode() if resp.prev_kvs else None
            self.last_seen[key] = None
            self.rec.add(op)

    async def _cas(self, key):
        expected = self.last_seen.get(key)
        value = self._value()
        kb = key.encode()
        if expected is None:
            cmp = rpc_pb2.Compare(key=kb, target=rpc_pb2.Compare.CREATE, result=rpc_pb2.Compare.EQUAL,
                                  create_revision=0)
        else:
            cmp = rpc_pb2.Compare(key=kb, target=rpc_pb2.Compare.VALUE, result=rpc_pb2.Compare.EQUAL,
                                  value=expected.encode())
        req = rpc_pb2.TxnRequest(
            compare=[cmp],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=kb, value=value.encode()))],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=kb))])
        op = Op(CAS, key, 0.0, None, self.idx, value=value, expected=expected)
        resp = await self._call(op, self.kv.Txn, req)
        if resp is not None:
            op.out = bool(resp.succeeded)
            if op.out:
                self.last_seen[key] = value
            else:
                kvs = resp.responses[0].response_range.kvs
                op.read = kvs[0].value.decode() if kvs else None
                self.last_seen[key] = op.read
            self.rec.add(op)

    async def _fresh(self, _key):
        value = self._value()
        key = f"{self.cfg.prefix}d/{value}"
        op = Op(PUT, key, 0.0, None, self.idx, value=value)
        resp = await self._call(op, self.kv.Put, rpc_pb2.PutRequest(key=key.encode(), value=value.encode()))
        if resp is not None:
            self.rec.add(op)
            self.rec.durable_keys[key] = value
        else:
            self.rec.maybe_keys[key] = value

    async def close(self):
        await self.ch.close()


class Watcher:
    def __init__(self, idx: int, endpoints: list[str], prefix: str, start_revision: int):
        self.endpoints = endpoints
        self.member = idx % len(endpoints)
        self.record = WatchRecord(idx, prefix, start_revision, endpoint=endpoints[self.member])
        self.next_revision = start_revision
        self._call = None
        self._ch = None
        self.progress: asyncio.Queue = asyncio.Queue()
        self.connected = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        prefix = self.record.prefix.encode()
        first = True
        while not stop.is_set():
            self._ch = channel(self.endpoints[self.member])
            try:
                self._call = rpc_pb2_grpc.WatchStub(self._ch).Watch()
                await self._call.write(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
                    key=prefix, range_end=prefix_range_end(prefix), start_revision=self.next_revision)))
                async for resp in self._call:
                    if resp.canceled:
                        raise RuntimeError(f"watch canceled: {resp.cancel_reason} "
                                           f"(compact revision {resp.compact_revision})")
                    if resp.created:
                        self.connected.set()
                        continue
                    if not resp.events:
                        await self.progress.put(resp.header.revision)
                        continue
                    for ev in resp.events:
                        typ = DELETE_EVENT if ev.type == 1 else PUT_EVENT
                        value = ev.kv.value.decode() if typ == PUT_EVENT else None
                        self.record.events.append((ev.kv.mod_revision, ev.kv.key.decode(), typ, value))
                        self.next_revision = ev.kv.mod_revision + 1
                raise RuntimeError("watch stream ended")
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - any break of the stream means: resume elsewhere
                if stop.is_set():
                    break
                self.connected.clear()
                self.record.resumes += 0 if first and not self.record.events else 1
                self.member = (self.member + 1) % len(self.endpoints)
                self.record.endpoint = self.endpoints[self.member]
                await asyncio.sleep(0.2)
            finally:
                first = False
                await self._ch.close()

    async def catch_up(self, revision: int, deadline: float) -> bool:
        """Ask for progress notifications until one says every event up to `revision` was sent."""
        while time.monotonic() < deadline:
            if self.connected.is_set() and self._call is not None:
                try:
                    await self._call.write(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))
                    rev = await asyncio.wait_for(self.progress.get(), 1.0)
                    if rev >= revision:
                        self.record.caught_up_to = rev
                        return True
                except (asyncio.TimeoutError, grpc.aio.AioRpcError, asyncio.InvalidStateError, Exception):  # noqa: BLE001
                    pass
            await asyncio.sleep(0.2)
        return False
