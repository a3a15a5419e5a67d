"""`fastkv bench client-paths`: which Python gRPC request path drives an etcd endpoint fastest here.

The load generator's per-request path is a design choice; this measures it instead of guessing.
Each path sends the same pre-serialized Put requests with the same concurrency from ONE fresh
process against the same endpoint, in alternating rounds (A B, B A, ...); the figure of merit is
puts/s and the process's CPU per request. Paths:

- aio:         grpc.aio, one coroutine per client awaiting `multicallable(bytes)` (what the engine uses)
- aio-uvloop:  the same on uvloop's event loop instead of asyncio's
- sync-future: grpc sync channel, `multicallable.future(bytes)` with a done-callback that issues the
               next request, so the C core's completion threads drive the loop
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time

from fastkv.bench._common import add_json_flag, emit, machine_info

PATHS = ("aio", "aio-uvloop", "sync-future")


def add_parser(subparsers):
    p = subparsers.add_parser("client-paths", help="measure grpc.aio vs sync future() request paths (puts)",
                              description=__doc__.split("\n\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoints", default="http://127.0.0.1:2379", help="one etcd v3 endpoint")
    p.add_argument("--clients", type=int, default=64, help="requests in flight (default: %(default)s)")
    p.add_argument("--conns", type=int, default=2, help="connections (default: %(default)s)")
    p.add_argument("--total", type=int, default=20000, help="puts per path per round (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: %(default)s)")
    p.add_argument("--val-size", type=int, default=256)
    p.add_argument("--plot", metavar="FILE.png", help="(accepted for uniformity; no chart for this one)")
    add_json_flag(p)
    p.set_defaults(func=run_cli)


def _requests(n: int, val_size: int) -> list[bytes]:
    from fastkv.api.etcdpb import rpc_pb2

    return [rpc_pb2.PutRequest(key=b"%08d" % (i % 100_000), value=b"v" * val_size).SerializeToString()
            for i in range(n)]


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _aio(target, reqs, clients, conns, use_uvloop=False):
    import asyncio

    import grpc

    from fastkv.client._channel import CHANNEL_OPTIONS

    async def main():
        chans = [grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) for _ in range(conns)]
        await asyncio.gather(*(c.channel_ready() for c in chans))
        calls = [c.unary_unary("/etcdserverpb.KV/Put") for c in chans]
        nxt = [0]

        async def client(k):
            call = calls[k % len(calls)]
            while nxt[0] < len(reqs):
                i = nxt[0]
                nxt[0] = i + 1
                await call(reqs[i])

        t, c0 = time.perf_counter(), _cpu()
        await asyncio.gather(*(client(k) for k in range(clients)))
        out = time.perf_counter() - t, _cpu() - c0
        for ch in chans:
            await ch.close()
        return out

    if use_uvloop:
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


def _sync_future(target, reqs, clients, conns):
    import threading

    import grpc

    from fastkv.client._channel import CHANNEL_OPTIONS

    chans = [grpc.insecure_channel(target, options=CHANNEL_OPTIONS) for _ in range(conns)]
    for ch in chans:
        grpc.channel_ready_future(ch).result(timeout=15)
    calls = [ch.unary_unary("/etcdserverpb.KV/Put") for ch in chans]
    lock, finished = threading.Lock(), threading.Event()
    state = {"next": min(clients, len(reqs)), "done": 0}
    failures = []

    def issue(i, k):
        calls[k % len(calls)].future(reqs[i]).add_done_callback(lambda f: completed(f, k))

    def completed(f, k):
        if f.exception() is not None:
            failures.append(f.exception())
        with lock:
            state["done"] += 1
            i = state["next"]
            if i < len(reqs):
                state["next"] = i + 1
            if state["done"] == len(reqs):
                finished.set()
        if i < len(reqs):
            issue(i, k)

    t, c0 = time.perf_counter(), _cpu()
    for k in range(min(clients, len(reqs))):
        issue(k, k)
    finished.wait()
    out = time.perf_counter() - t, _cpu() - c0
    for ch in chans:
        ch.close()
    if failures:
        raise RuntimeError(f"{len(failures)} puts failed: {failures[0]}")
    return out


def _one(args):
    path, target, n, val_size, clients, conns = args
    reqs = _requests(n, val_size)
    if path == "sync-future":
        return _sync_future(target, reqs, clients, conns)
    return _aio(target, reqs, clients, conns, use_uvloop=path == "aio-uvloop")


def run_cli(args) -> int:
    from fastkv.client import parse_endpoint

    target = parse_endpoint(args.endpoints.split(",")[0])
    ctx = multiprocessing.get_context("spawn")
    runs = {p: {"rps": [], "cpu_us_per_put": []} for p in PATHS}
    for rnd in range(args.rounds):
        for path in (PATHS if rnd % 2 == 0 else PATHS[::-1]):  # alternate the order every round
            with ctx.Pool(1) as pool:
                elapsed, cpu = pool.apply(_one, ((path, target, args.total, args.val_size, args.clients, args.conns),))
            runs[path]["rps"].append(args.total / elapsed)
            runs[path]["cpu_us_per_put"].append(1e6 * cpu / args.total)
            print(f"  round {rnd + 1}/{args.rounds} {path:<12} {args.total / elapsed:>9,.0f} puts/s  "
                  f"{1e6 * cpu / args.total:6.1f} us CPU/put", flush=True)
    ratios = [f / a for a, f in zip(runs["aio"]["rps"], runs["sync-future"]["rps"])]
    uv_ratios = [u / a for a, u in zip(runs["aio"]["rps"], runs["aio-uvloop"]["rps"])]
    result = {
        "paths": runs, "rounds": args.rounds, "clients": args.clients, "conns": args.conns,
        "aio_rps": statistics.median(runs["aio"]["rps"]),
        "sync_future_rps": statistics.median(runs["sync-future"]["rps"]),
        "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "aio_cpu_us_per_put": statistics.median(runs["aio"]["cpu_us_per_put"]),
        "sync_future_cpu_us_per_put": statistics.median(runs["sync-future"]["cpu_us_per_put"]),
        "aio_uvloop_rps": statistics.median(runs["aio-uvloop"]["rps"]),
        "aio_uvloop_cpu_us_per_put": statistics.median(runs["aio-uvloop"]["cpu_us_per_put"]),
        "uvloop_ratio": statistics.median(uv_ratios),
        "rps": statistics.median(runs["aio"]["rps"]), "machine": machine_info(),
    }
    print(f"one process, {args.clients} clients, {args.conns} conns: aio {result['aio_rps']:,.0f} puts/s "
          f"({result['aio_cpu_us_per_put']:.0f} us CPU/put), sync-future {result['sync_future_rps']:,.0f} puts/s "
          f"({result['sync_future_cpu_us_per_put']:.0f} us CPU/put); sync-future/aio = {result['ratio']:.2f} "
          f"(spread {result['ratio_min']:.2f}..{result['ratio_max']:.2f}); aio-uvloop "
          f"{result['aio_uvloop_rps']:,.0f} puts/s ({result['aio_uvloop_cpu_us_per_put']:.0f} us CPU/put), "
          f"aio-uvloop/aio = {result['uvloop_ratio']:.2f}")
    emit(result, args.json)
    return 0
