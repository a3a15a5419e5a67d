"""Hostile bytes on the peer port: random bytes, mutated valid streams, random chunking, oversize
length words, truncated frames. The listener closes the offending connection, never crashes,
never hands raft a message that did not decode, and never buffers more than a frame cap."""
from __future__ import annotations

import asyncio
import random

import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastkv.transport import PeerTransport, TransportConfig
from fastkv.transport import frame as fr
from fastkv.transport.dial import dial

CAP = 64 << 10   # a small message cap makes "bounded" easy to check


def _valid_stream(pb, cluster_id, n, seed):
    rng = random.Random(seed)
    out = [fr.PREAMBLE, fr.hello(fr.CHANNEL_STREAM, cluster_id, 2, 1)]
    for k in range(n):
        m = pb.Message(type=rng.choice([pb.MSG_APP, pb.MSG_HEARTBEAT, pb.MSG_VOTE]), to=1, frm=2,
                       term=rng.randrange(1 << 40), index=k,
                       entries=[pb.Entry(term=1, index=k, data=rng.randbytes(rng.randrange(64)))])
        out.append(fr.frame(fr.MSG, pb.encode_message(m)))
    return b"".join(out)


def _digest(data):
    h = fr.snapshot_digest()
    h.update(data)
    return h.digest()


def _valid_pipeline(pb, cluster_id, seed):
    rng = random.Random(seed)
    msg = pb.Message(type=pb.MSG_SNAP, to=1, frm=2, term=1, snapshot=pb.Snapshot(
        metadata=pb.SnapshotMetadata(index=3, term=1)))
    data = rng.randbytes(5000)
    return b"".join([fr.PREAMBLE, fr.hello(fr.CHANNEL_PIPELINE, cluster_id, 2, 1),
                     fr.snap_meta(len(data), pb.encode_message(msg)),
                     fr.frame(fr.SNAP_CHUNK, data[:3000]), fr.frame(fr.SNAP_CHUNK, data[3000:]),
                     fr.frame(fr.SNAP_END, _digest(data))])


class Harness:
    def __init__(self, kit):
        self.kit = kit
        self.loop = uvloop.new_event_loop()
        self.sink = kit.Sink()
        self.tr = PeerTransport(1, kit.CLUSTER_ID, snap_dir=str(kit.tmp_path / "snap"),
                                config=TransportConfig(max_message_bytes=CAP, handshake_timeout=2.0))
        (_h, self.port), = self.loop.run_until_complete(self.tr.serve(["http://127.0.0.1:0"]))
        self.tr.add_peer(2, ["http://127.0.0.1:1"])   # known, never reachable: we only listen
        self.loop.run_until_complete(self._start())
        self.peak = 0

    async def _start(self):
        self.tr.start(self.sink)

    def send(self, chunks, linger=0.02):
        return self.loop.run_until_complete(self._send(chunks, linger))

    async def _send(self, chunks, linger):
        r, w = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            for c in chunks:
                if w.is_closing():
                    break
                w.write(c)
                try:
                    await w.drain()
                except ConnectionError:
                    break
                await asyncio.sleep(0)
                self._measure()
            await asyncio.sleep(linger)
            self._measure()
        finally:
            w.close()
        # let the listener see the close and clean up
        for _ in range(50):
            if not self.tr.inbound:
                break
            await asyncio.sleep(0.005)

    def _measure(self):
        for c in self.tr.inbound:
            held = len(c._head) + (c._decoder.buffered() if c._decoder else 0)
            self.peak = max(self.peak, held)

    def healthy(self):
        async def probe():
            conn = await dial(f"http://127.0.0.1:{self.port}",
                              fr.hello(fr.CHANNEL_STREAM, self.kit.CLUSTER_ID, 2, 1), client_ssl=None, timeout=10)
            conn.close()
        self.loop.run_until_complete(probe())
        return True

    def close(self):
        self.tr.stop()
        self.loop.run_until_complete(self.tr.wait_closed())
        self.loop.close()


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a]


def test_hostile_bytes_never_crash_and_stay_bounded(kit):
    h = Harness(kit)
    pb = kit.pb
    try:
        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(kind=st.sampled_from(["random", "preamble+random", "mutated-stream", "mutated-pipeline",
                                     "http-junk"]),
               junk=st.binary(min_size=0, max_size=3000),
               seed=st.integers(0, 2**32 - 1),
               flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=6),
               cut=st.integers(0, 10**6),
               cuts=st.lists(st.integers(0, 10**6), max_size=8))
        def example(kind, junk, seed, flips, cut, cuts):
            if kind == "random":
                data = junk
            elif kind == "preamble+random":
                data = fr.PREAMBLE + junk
            elif kind == "http-junk":
                data = b"GET /" + junk
            else:
                data = bytearray(_valid_stream(pb, kit.CLUSTER_ID, 8, seed) if kind == "mutated-stream"
                                 else _valid_pipeline(pb, kit.CLUSTER_ID, seed))
                for pos, x in flips:
                    data[pos % len(data)] ^= x
                data = bytes(data[:max(1, cut % (len(data) + 1))]) + junk[:64]
            h.send(_chunked(data, cuts))
            assert h.peak <= CAP + (1 << 20)
            for m in h.sink.got:   # whatever reached raft decoded and came from the handshaken peer
                assert m.frm == 2 and m.to == 1

        example()
        assert h.healthy()
        # received snapshots were only ever whole, verified ones
        for _msg, path in h.sink.snapshots:
            import os
            assert os.path.getsize(path) == 5000
    finally:
        h.close()


def test_oversize_length_closes_at_once_without_buffering(kit):
    h = Harness(kit)
    try:
        async def body():
            r, w = await asyncio.open_connection("127.0.0.1", h.port)
            w.write(fr.PREAMBLE + fr.hello(fr.CHANNEL_STREAM, kit.CLUSTER_ID, 2, 1))
            assert (await r.readexactly(fr.HEADER_SIZE))[4] == fr.ACCEPT
            w.write(fr.HEADER.pack(0xFFFFFFF0, fr.MSG))   # claims a ~4 GiB message
            assert await asyncio.wait_for(r.read(), 10) == b""   # closed by the listener
            w.close()
            # a message right at the cap is fine; one byte over is not
            r, w = await asyncio.open_connection("127.0.0.1", h.port)
            w.write(fr.PREAMBLE + fr.hello(fr.CHANNEL_STREAM, kit.CLUSTER_ID, 2, 1))
            await r.readexactly(fr.HEADER_SIZE)
            w.write(fr.HEADER.pack(CAP + 2, fr.MSG))
            assert await asyncio.wait_for(r.read(), 10) == b""
            w.close()
            # zero length and unknown kinds, before and after the handshake
            for pre in (b"", fr.PREAMBLE):
                r, w = await asyncio.open_connection("127.0.0.1", h.port)
                w.write(pre + fr.HEADER.pack(0, fr.HELLO) if pre else b"\x00\x01\x02\x03")
                assert await asyncio.wait_for(r.read(), 10) == b""
                w.close()
        h.loop.run_until_complete(body())
        assert h.sink.got == []
        assert h.healthy()
    finally:
        h.close()


def test_silent_or_trickling_connections_time_out(kit):
    h = Harness(kit)
    try:
        async def body():
            r, w = await asyncio.open_connection("127.0.0.1", h.port)
            w.write(fr.PREAMBLE[:2])   # never finishes the preamble
            assert await asyncio.wait_for(r.read(), 20) == b""   # handshake timeout (2 s here)
            w.close()
        h.loop.run_until_complete(body())
        assert not h.tr.inbound
    finally:
        h.close()


def test_truncated_frame_then_close_is_harmless(kit):
    h = Harness(kit)
    pb = kit.pb
    try:
        data = _valid_stream(pb, kit.CLUSTER_ID, 5, 3)
        h.send([data[:-7]])
        assert [m.index for m in h.sink.got] == [0, 1, 2, 3]
        assert h.healthy()
    finally:
        h.close()
