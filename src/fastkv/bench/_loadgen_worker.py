"""One load-generator process: its share of clients, connections and requests, on one asyncio loop.

The parent (fastkv.bench._loadgen) starts several of these with the `spawn` method (gRPC must not
be forked), waits until each has connected and prepared its requests ("ready"), then releases them
all at once ("go"). Each reports one result message: raw latency samples, errors by gRPC code,
completions per 100 ms, and its own CPU time over the measured phase.

Per-request path (kept lean on purpose): requests are serialized before the clock starts (or, for
shares too large to hold, built from a pre-encoded value), sent as raw bytes through a multicallable
without a serializer, and the response bytes are not parsed; success is the gRPC status.
Latency in open loop (--rate) is measured from each request's *intended* send time, so a server
that stalls is charged for the queueing it causes (no coordinated omission).
"""
from __future__ import annotations

import asyncio
import os
import random
import resource
import struct
import time
from array import array

import grpc

from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc
from fastkv.client._channel import CHANNEL_OPTIONS, parse_endpoint

TIMELINE_S = 0.1          # width of one throughput-over-time bucket
PREBUILD_MAX = 200_000    # serialize at most this many requests ahead; build the rest on the fly
PROGRESS_EVERY = 32       # completions between updates of the shared progress counter
WATCH_KEY = b"fastkv-bench/watch"


def key_bytes(idx: int, key_size: int) -> bytes:
    """Key number idx as a zero-padded decimal of exactly key_size bytes (readable in etcdctl)."""
    return b"%0*d" % (key_size, idx)


class _Keys:
    """Which key the i-th request of this worker touches. Sequential keys interleave the workers
    so that, together, they walk the key space in order; random keys are seeded per worker."""

    def __init__(self, p: dict):
        self.space, self.size, self.seq = p["key_space"], p["key_size"], p["sequential"]
        self.worker, self.procs = p["worker"], p["procs"]
        self.rng = random.Random(p["seed"] * 7919 + p["worker"])

    def index(self, i: int) -> int:
        if self.seq:
            return (self.worker + i * self.procs) % self.space
        return self.rng.randrange(self.space)

    def key(self, i: int) -> bytes:
        return key_bytes(self.index(i), self.size)


def _request_factory(p: dict):
    """(grpc method path, i -> serialized request bytes) for the unary workloads."""
    keys = _Keys(p)
    value = os.urandom(p["val_size"] // 2 + 1).hex().encode()[: p["val_size"]]
    wl = p["workload"]
    if wl == "put":
        path = "/etcdserverpb.KV/Put"
        # PutRequest is field 1 (key) + field 2 (value): encode the value part once.
        tail = rpc_pb2.PutRequest(value=value).SerializeToString()

        def build(i):
            return rpc_pb2.PutRequest(key=keys.key(i)).SerializeToString() + tail
    elif wl == "range":
        path = "/etcdserverpb.KV/Range"
        serializable = p["consistency"] == "s"

        def build(i):
            return rpc_pb2.RangeRequest(key=keys.key(i), serializable=serializable).SerializeToString()
    elif wl == "txn-put":
        path = "/etcdserverpb.KV/Txn"
        n_ops = p["txn_ops"]

        def build(i):
            first = keys.index(i)
            ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
                key=key_bytes((first + j) % keys.space, keys.size), value=value)) for j in range(n_ops)]
            return rpc_pb2.TxnRequest(success=ops).SerializeToString()
    else:
        raise ValueError(f"not a unary workload: {wl}")

    n = p["total"]
    if n <= PREBUILD_MAX:
        built = [build(i) for i in range(n)]
        return path, built.__getitem__
    return path, build


class _Recorder:
    """Per-worker tallies; the only state touched on the per-request path."""

    def __init__(self, progress, worker: int):
        self.lat = array("d")
        self.errors: dict[str, int] = {}
        self.samples: dict[str, str] = {}
        self.timeline = array("l")
        self.ok = 0
        self.done = 0
        self.progress, self.worker = progress, worker
        self.t0 = 0.0

    def start(self) -> None:
        self.t0 = time.monotonic()

    def success(self, start: float, end: float) -> None:
        self.lat.append(end - start)
        self.ok += 1
        b = int((end - self.t0) / TIMELINE_S)  # throughput over time counts successes only
        tl = self.timeline
        while len(tl) <= b:
            tl.append(0)
        tl[b] += 1
        self._tick()

    def failure(self, exc: BaseException, end: float) -> None:
        if isinstance(exc, grpc.aio.AioRpcError):
            code, detail = exc.code().name, exc.details() or ""
        else:
            code, detail = f"CLIENT_{type(exc).__name__}", str(exc)
        self.errors[code] = self.errors.get(code, 0) + 1
        self.samples.setdefault(code, detail[:200])
        self._tick()

    def _tick(self) -> None:
        self.done += 1
        if self.done % PROGRESS_EVERY == 0:
            self.progress[self.worker] = self.done


class _Tickets:
    """Hands out request numbers and their start times. Closed loop: the next number, now.
    Open loop: one pacer coroutine wakes at most every PACE_S and releases every request whose
    scheduled time (t0 + i / rate) has come, so the loop does not pay one timer per request; a
    request waiting for a free client keeps its scheduled time as its start (the backlog counts)."""

    PACE_S = 0.001

    def __init__(self, n: int, rate: float, t0: float, clients: int):
        self.n, self.rate, self.t0, self.clients = n, rate, t0, clients
        self.issued = 0
        self.due: asyncio.Queue | None = asyncio.Queue() if rate else None

    async def next(self):
        if self.due is not None:
            return await self.due.get()
        i = self.issued
        if i >= self.n:
            return None, 0.0
        self.issued = i + 1
        return i, time.monotonic()

    async def pace(self) -> None:
        if self.due is None:
            return
        put, mono, t0, rate = self.due.put_nowait, time.monotonic, self.t0, self.rate
        while self.issued < self.n:
            until = min(self.n, int((mono() - t0) * rate) + 1)
            for i in range(self.issued, until):
                put((i, t0 + i / rate))
            self.issued = max(self.issued, until)
            if self.issued < self.n:
                await asyncio.sleep(max(self.PACE_S, t0 + self.issued / rate - mono()))
        for _ in range(self.clients):
            put((None, 0.0))


def _channels(p: dict) -> list:
    tls = p.get("tls")
    # https:// endpoints take p["tls"] (CA, client certificate and key files) for the channels
    eps = [parse_endpoint("http://" + e.split("://", 1)[1] if e.startswith("https://") else e)
           for e in p["endpoints"]]
    if tls:
        def read(path):
            if not path:
                return None
            with open(path, "rb") as f:
                return f.read()

        creds = grpc.ssl_channel_credentials(read(tls.get("ca")), read(tls.get("key")), read(tls.get("cert")))
        return [grpc.aio.secure_channel(eps[(p["worker"] * p["conns"] + j) % len(eps)], creds,
                                        options=CHANNEL_OPTIONS) for j in range(p["conns"])]
    return [grpc.aio.insecure_channel(eps[(p["worker"] * p["conns"] + j) % len(eps)], options=CHANNEL_OPTIONS)
            for j in range(p["conns"])]


CONNECT_TIMEOUT_S = 15.0


async def _wait_ready(channels, endpoints) -> None:
    try:
        await asyncio.wait_for(asyncio.gather(*(ch.channel_ready() for ch in channels)), CONNECT_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise ConnectionError(f"could not connect to {', '.join(endpoints)} within {CONNECT_TIMEOUT_S:g} s "
                              "(is an etcd v3 server listening there?)") from None


async def _unary(p: dict, rec: _Recorder, channels, go) -> None:
    path, make = _request_factory(p)
    calls = [ch.unary_unary(path) for ch in channels]  # raw bytes in, raw bytes out
    md = await _auth_metadata(p, channels)
    if p["workload"] == "range" and p["prefill"]:
        await _prefill(p, channels, md)
    await go()
    n, rate, timeout = p["total"], p["rate"], p["timeout"]
    rec.start()
    tickets = _Tickets(n, rate, rec.t0, p["clients"])
    mono = time.monotonic

    async def open_loop_client(c: int) -> None:
        call = calls[c % len(calls)]
        while True:
            i, start = await tickets.next()
            if i is None:
                return
            try:
                await call(make(i), timeout=timeout, metadata=md)
            except Exception as exc:  # noqa: BLE001 - every failure is counted by its code
                rec.failure(exc, mono())
            else:
                rec.success(start, mono())

    nxt = [0]

    async def closed_loop_client(c: int) -> None:
        # The hottest loop of the generator: no ticket round trip, locals only.
        call, success = calls[c % len(calls)], rec.success
        while nxt[0] < n:
            i = nxt[0]
            nxt[0] = i + 1
            req = make(i)
            start = mono()
            try:
                await call(req, timeout=timeout, metadata=md)
            except Exception as exc:  # noqa: BLE001 - every failure is counted by its code
                rec.failure(exc, mono())
            else:
                success(start, mono())

    client = open_loop_client if rate else closed_loop_client
    pacer = asyncio.ensure_future(tickets.pace())
    await asyncio.gather(*(client(c) for c in range(p["clients"])))
    await pacer


async def _auth_metadata(p: dict, channels):
    """--user NAME:PASSWORD -> the call metadata carrying this worker's token (None without --user)."""
    if not p.get("user"):
        return None
    name, _, password = p["user"].partition(":")
    auth = rpc_pb2_grpc.AuthStub(channels[0])
    resp = await auth.Authenticate(rpc_pb2.AuthenticateRequest(name=name, password=password), timeout=p["timeout"])
    return (("token", resp.token),)


async def _prefill(p: dict, channels, md=None) -> None:
    """Put every key of this worker's stride of the key space, so ranges hit real keys."""
    put = channels[0].unary_unary("/etcdserverpb.KV/Put")
    value = b"v" * p["val_size"]
    idxs = list(range(p["worker"], p["key_space"], p["procs"]))
    sem = asyncio.Semaphore(32)

    async def one(idx):
        async with sem:
            await put(rpc_pb2.PutRequest(key=key_bytes(idx, p["key_size"]), value=value).SerializeToString(),
                      timeout=p["timeout"], metadata=md)

    await asyncio.gather(*(one(i) for i in idxs))


async def _lease_keepalive(p: dict, rec: _Recorder, channels, go) -> None:
    from fastkv.api.etcdpb import rpc_pb2_grpc

    stubs = [rpc_pb2_grpc.LeaseStub(ch) for ch in channels]
    leases = []
    for c in range(p["clients"]):
        resp = await stubs[c % len(stubs)].LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=p["lease_ttl"]),
                                                      timeout=p["timeout"])
        leases.append(resp.ID)
    raw_calls = [ch.stream_stream("/etcdserverpb.Lease/LeaseKeepAlive") for ch in channels]
    await go()
    rec.start()
    tickets = _Tickets(p["total"], p["rate"], rec.t0, p["clients"])
    mono = time.monotonic

    async def client(c: int) -> None:
        req = rpc_pb2.LeaseKeepAliveRequest(ID=leases[c]).SerializeToString()
        stream = raw_calls[c % len(raw_calls)]()
        try:
            while True:
                i, start = await tickets.next()
                if i is None:
                    return
                try:
                    await stream.write(req)
                    resp = await stream.read()
                    if resp is grpc.aio.EOF:
                        raise EOFError("keepalive stream closed by the server")
                    if rpc_pb2.LeaseKeepAliveResponse.FromString(resp).TTL <= 0:
                        raise LookupError("lease expired or not found (TTL <= 0)")
                except Exception as exc:  # noqa: BLE001
                    rec.failure(exc, mono())
                    stream.cancel()
                    stream = raw_calls[c % len(raw_calls)]()
                else:
                    rec.success(start, mono())
        finally:
            stream.cancel()

    pacer = asyncio.ensure_future(tickets.pace())
    await asyncio.gather(*(client(c) for c in range(p["clients"])))
    await pacer
    for c, lease in enumerate(leases):  # outside the measured phase: leave the server clean
        try:
            await stubs[c % len(stubs)].LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lease), timeout=p["timeout"])
        except grpc.aio.AioRpcError:
            pass


async def _watch(p: dict, rec: _Recorder, channels, go) -> dict:
    """Watchers spread over streams; worker 0 also puts --puts values stamped with their send time
    (CLOCK_MONOTONIC is system-wide, so the stamp is comparable across processes). Each sample is
    the delay from a put being sent to one watcher receiving its event."""
    from fastkv.client import ops

    n_streams = max(1, min(p["streams"], p["watchers"])) if p["watchers"] else 0
    calls = [channels[s % len(channels)].stream_stream("/etcdserverpb.Watch/Watch") for s in range(n_streams)]
    streams = [c() for c in calls]
    per_stream = [p["watchers"] // n_streams + (1 if s < p["watchers"] % n_streams else 0) for s in range(n_streams)]
    create = ops.watch_create(WATCH_KEY).SerializeToString()
    for s, stream in enumerate(streams):
        for _ in range(per_stream[s]):
            await stream.write(create)
        confirmed = 0
        while confirmed < per_stream[s]:
            resp = rpc_pb2.WatchResponse.FromString(await stream.read())
            confirmed += resp.created
    await go()
    rec.start()
    puts, expected = p["puts"], p["puts"] * p["watchers"]
    unpack, mono = struct.Struct("<d").unpack_from, time.monotonic
    put_lat = array("d")

    async def reader(stream) -> None:
        while True:
            raw = await stream.read()
            if raw is grpc.aio.EOF:
                return
            now = mono()
            for ev in rpc_pb2.WatchResponse.FromString(raw).events:
                rec.success(unpack(ev.kv.value)[0], now)

    async def putter() -> None:
        put = channels[0].unary_unary("/etcdserverpb.KV/Put")
        pad = b"p" * max(0, p["val_size"] - 8)
        for i in range(puts):
            start = rec.t0 + i / p["put_rate"]
            if start > mono():
                await asyncio.sleep(start - mono())
            sent = mono()
            req = rpc_pb2.PutRequest(key=WATCH_KEY, value=struct.pack("<d", sent) + pad).SerializeToString()
            try:
                await put(req, timeout=p["timeout"])
                put_lat.append(mono() - sent)
            except Exception as exc:  # noqa: BLE001
                rec.failure(exc, mono())

    readers = [asyncio.ensure_future(reader(s)) for s in streams]
    if p["worker"] == 0:
        await putter()
    deadline = mono() + puts / p["put_rate"] + p["timeout"]
    while rec.ok < expected and mono() < deadline and not all(r.done() for r in readers):
        await asyncio.sleep(0.01)
    for s in streams:
        s.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    missing = expected - rec.ok
    if missing > 0:
        rec.errors["MISSING_EVENTS"] = rec.errors.get("MISSING_EVENTS", 0) + missing
        rec.samples.setdefault("MISSING_EVENTS", f"{missing} events not delivered within the deadline")
    return {"put_lat": put_lat.tobytes()}


def _cpu_s() -> float:
    """user+sys CPU of this whole process (all gRPC threads too), in microsecond resolution."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


WORKLOADS = {"put": _unary, "range": _unary, "txn-put": _unary, "lease-keepalive": _lease_keepalive,
             "watch": _watch}


async def _run(p: dict, queue, go_event, progress) -> None:
    rec = _Recorder(progress, p["worker"])
    channels = _channels(p)
    extra = {}
    loop = asyncio.get_running_loop()
    cpu = {}

    async def go():
        queue.put(("ready", p["worker"], None))
        await loop.run_in_executor(None, go_event.wait)
        cpu["start"] = _cpu_s()

    try:
        await _wait_ready(channels, p["endpoints"])
        extra = await WORKLOADS[p["workload"]](p, rec, channels, go) or {}
    finally:
        t_end = time.monotonic()
        now_cpu = _cpu_s()
        cpu_s = now_cpu - cpu.get("start", now_cpu)
        for ch in channels:
            await ch.close()
    progress[p["worker"]] = rec.done
    queue.put(("result", p["worker"], {
        "lat": rec.lat.tobytes(), "errors": rec.errors, "samples": rec.samples, "ok": rec.ok,
        "timeline": list(rec.timeline), "t0": rec.t0, "t_end": t_end, "cpu_s": cpu_s, **extra}))


def worker_main(p: dict, queue, go_event, progress) -> None:
    try:
        if p.get("loop", "uvloop") == "uvloop":
            # measured with `fastkv bench client-paths`: ~10-15% less CPU per request than asyncio's loop
            import uvloop

            uvloop.run(_run(p, queue, go_event, progress))
        else:
            asyncio.run(_run(p, queue, go_event, progress))
    except BaseException as exc:  # report, then let the parent decide; never hang the run
        queue.put(("error", p["worker"], f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1)
