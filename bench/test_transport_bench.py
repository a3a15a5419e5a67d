"""Peer stream throughput: raft messages per second over one stream between two PeerTransports in
one process (uvloop, loopback TCP), against a reference that moves the very same framed bytes over
a raw asyncio socket without encoding, parsing or decoding anything.

Run: python -m pytest bench/test_transport_bench.py --benchmark-only
Compare the two rows of the group; the ratio is what the transport's per-message work costs.
"""
from __future__ import annotations

import asyncio
import random

import pytest
import uvloop

from fastkv._native import load
from fastkv.transport import PeerTransport
from fastkv.transport import frame as fr

pb = load("raftpb")
N = 50_000
BATCH = 64


def _messages():
    e = pb.Entry(term=5, index=1, data=b"v" * 100)   # one small put per MsgApp
    return [pb.Message(type=pb.MSG_APP, to=2, frm=1, term=5, log_term=5, index=k, commit=k,
                       entries=[e]) for k in range(N)]


class _Count:
    def __init__(self, done, n):
        self.n, self.target, self.done = 0, n, done

    def process(self, m):
        self.n += 1
        if self.n == self.target:
            self.done.set_result(None)

    def report_unreachable(self, i):
        pass

    def report_snapshot(self, i, f):
        pass

    def is_id_removed(self, i):
        return False

    def snapshot_received(self, m, p):
        pass


async def _transport_round(tmp, msgs):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    a = PeerTransport(1, 7, snap_dir=str(tmp / "a"), rng=random.Random(1))
    b = PeerTransport(2, 7, snap_dir=str(tmp / "b"), rng=random.Random(2))
    (_h, pa), = await a.serve(["http://127.0.0.1:0"])
    (_h, pb_), = await b.serve(["http://127.0.0.1:0"])
    a.add_peer(2, [f"http://127.0.0.1:{pb_}"])
    b.add_peer(1, [f"http://127.0.0.1:{pa}"])
    a.start(_Count(loop.create_future(), -1))
    b.start(_Count(done, len(msgs)))
    while a.active_since(2) is None:
        await asyncio.sleep(0.005)
    t0 = loop.time()
    for k in range(0, len(msgs), BATCH):   # a Ready's worth of messages per loop turn
        a.send(msgs[k:k + BATCH])
        await asyncio.sleep(0)
    await done
    elapsed = loop.time() - t0
    a.stop()
    b.stop()
    await a.wait_closed()
    await b.wait_closed()
    return elapsed


class _Sink(asyncio.Protocol):
    def __init__(self, total, done):
        self.left, self.done = total, done

    def data_received(self, data):
        self.left -= len(data)
        if self.left <= 0 and not self.done.done():
            self.done.set_result(None)


async def _raw_round(frames):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    total = sum(len(f) for f in frames)
    server = await loop.create_server(lambda: _Sink(total, done), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    w, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    t0 = loop.time()
    for k in range(0, len(frames), BATCH):
        w.write(b"".join(frames[k:k + BATCH]))
        await asyncio.sleep(0)
    await done
    elapsed = loop.time() - t0
    w.close()
    server.close()
    await server.wait_closed()
    return elapsed


@pytest.mark.benchmark(group="peer-stream-50k-msgapp")
def test_peer_stream_transport(benchmark, tmp_path):
    msgs = _messages()
    times = []
    benchmark.pedantic(lambda: times.append(uvloop.run(_transport_round(tmp_path, msgs))), rounds=3)
    benchmark.extra_info["msgs_per_s"] = N / min(times)
    print(f"\n{N / min(times):,.0f} msgs/s (best of {len(times)}, timed inside the loop)")


@pytest.mark.benchmark(group="peer-stream-50k-msgapp")
def test_raw_socket_same_bytes(benchmark):
    frames = []
    for m in _messages():
        data = pb.encode_message(m)
        frames.append(fr.frame_header(fr.MSG, len(data)) + data)
    times = []
    benchmark.pedantic(lambda: times.append(uvloop.run(_raw_round(frames))), rounds=3)
    benchmark.extra_info["msgs_per_s"] = N / min(times)
    print(f"\n{N / min(times):,.0f} msgs/s (best of {len(times)}, timed inside the loop)")
