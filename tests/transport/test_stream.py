"""The stream: every message kind round-trips, batching, per-pair ordering, bounded queues that drop
and report unreachable, reconnect after a peer restart."""
from __future__ import annotations

import asyncio
import gc
import random

import pytest

from fastkv.transport import TransportConfig
from fastkv.transport import frame as fr
from fastkv.transport.dial import Backoff


def _all_kinds(pb, frm, to):
    e = [pb.Entry(term=3, index=7, data=b"put k v"),
         pb.Entry(term=3, index=8, type=pb.ENTRY_CONF_CHANGE,
                  data=pb.encode_conf_change(pb.ConfChange(type=pb.CONF_CHANGE_ADD_NODE, node_id=9)))]
    kinds = [pb.MSG_PROP, pb.MSG_APP, pb.MSG_APP_RESP, pb.MSG_VOTE, pb.MSG_VOTE_RESP,
             pb.MSG_HEARTBEAT, pb.MSG_HEARTBEAT_RESP, pb.MSG_TRANSFER_LEADER, pb.MSG_TIMEOUT_NOW,
             pb.MSG_READ_INDEX, pb.MSG_READ_INDEX_RESP, pb.MSG_PRE_VOTE, pb.MSG_PRE_VOTE_RESP]
    out = []
    for n, t in enumerate(kinds):
        out.append(pb.Message(type=t, to=to, frm=frm, term=3 + n, log_term=2, index=6 + n,
                              entries=e if t in (pb.MSG_APP, pb.MSG_PROP) else None,
                              commit=5, reject=(n % 2 == 1), reject_hint=n,
                              context=b"read-ctx-%d" % n if t in (pb.MSG_READ_INDEX, pb.MSG_READ_INDEX_RESP,
                                                                  pb.MSG_HEARTBEAT) else b""))
    return out


def test_every_message_kind_round_trips(kit, loop_kind):
    pb = kit.pb

    async def body():
        async with kit.cluster(2) as c:
            await c.connected()
            sent = _all_kinds(pb, 1, 2)
            back = _all_kinds(pb, 2, 1)
            c.tr[1].send(sent)
            c.tr[2].send(back)
            await kit.wait_for(lambda: len(c.sink[2].got) == len(sent) and len(c.sink[1].got) == len(back))
            assert [pb.encode_message(m) for m in c.sink[2].got] == [pb.encode_message(m) for m in sent]
            assert [pb.encode_message(m) for m in c.sink[1].got] == [pb.encode_message(m) for m in back]
            assert c.sink[1].unreachable == c.sink[2].unreachable == []

    kit.run(body(), loop=loop_kind)


def test_messages_queued_in_one_loop_turn_go_out_in_one_write(kit):
    pb = kit.pb

    async def body():
        async with kit.cluster(2) as c:
            await c.connected()
            tr = c.tr[1]
            before = tr.stats_batches
            # several send() calls within one loop turn: one write
            for k in range(10):
                tr.send([pb.Message(type=pb.MSG_APP, to=2, frm=1, term=1, index=k * 50 + j,
                                    entries=[pb.Entry(term=1, index=k * 50 + j + 1, data=b"x" * 100)])
                         for j in range(50)])
            await kit.wait_for(lambda: len(c.sink[2].got) == 500)
            assert tr.stats_batches - before == 1
            assert [m.index for m in c.sink[2].got] == list(range(500))
            # one per turn when the sender yields between sends
            before = tr.stats_batches
            for k in range(5):
                tr.send([pb.Message(type=pb.MSG_HEARTBEAT, to=2, frm=1, term=1, commit=k)])
                await asyncio.sleep(0.01)
            await kit.wait_for(lambda: len(c.sink[2].got) == 505)
            assert tr.stats_batches - before == 5

    kit.run(body())


def test_order_per_pair_is_kept_under_interleaving(kit):
    pb = kit.pb
    n_msgs = 2000

    async def body():
        async with kit.cluster(3) as c:
            await c.connected()
            rng = random.Random(7)
            seq = {(i, j): 0 for i in c.tr for j in c.tr if i != j}
            for _ in range(n_msgs):
                i, j = rng.choice(list(seq))
                c.tr[i].send([pb.Message(type=pb.MSG_APP, to=j, frm=i, index=seq[i, j])])
                seq[i, j] += 1
                if rng.random() < 0.05:
                    await asyncio.sleep(0)
            await kit.wait_for(lambda: sum(len(s.got) for s in c.sink.values()) == n_msgs)
            for j, sink in c.sink.items():
                for i in c.tr:
                    if i != j:
                        got = [m.index for m in sink.got if m.frm == i]
                        assert got == list(range(seq[i, j])), (i, j)

    kit.run(body())


class _SilentPeer(asyncio.Protocol):
    """Accepts the handshake like a peer would, then never reads again (a stuck follower)."""

    # Once it stops reading, nothing but its own cycle with its transport refers to a silent peer:
    # the garbage collector could close the socket mid-test. The class holds them.
    alive: list = []

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""
        _SilentPeer.alive.append(self)

    def connection_lost(self, exc):
        if self in _SilentPeer.alive:
            _SilentPeer.alive.remove(self)

    def data_received(self, data):
        self.buf += data
        if len(self.buf) >= len(fr.PREAMBLE) + fr.HEADER_SIZE + 26:
            self.transport.write(fr.frame(fr.ACCEPT))
            self.transport.pause_reading()


def test_full_queue_drops_and_reports_unreachable_with_bounded_memory(kit):
    pb = kit.pb
    cfg = TransportConfig(queue_size=64, write_high_water=256 << 10, ping_interval=0)

    async def body():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_SilentPeer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sink = kit.Sink()
        from fastkv.transport import PeerTransport
        tr = PeerTransport(1, kit.CLUSTER_ID, snap_dir=str(kit.tmp_path / "s"), config=cfg)
        tr.add_peer(2, [f"http://127.0.0.1:{port}"])
        tr.start(sink)
        try:
            await kit.wait_for(lambda: tr.active_since(2) is not None, what="stream to the silent peer")
            gc.collect()  # the silent peer (paused) must survive a collection: see _SilentPeer.alive
            entry = pb.Entry(term=1, index=1, data=b"v" * 16384)
            peak_buffer = 0
            for k in range(400):   # ~6.5 MB offered to a peer that reads nothing
                tr.send([pb.Message(type=pb.MSG_APP, to=2, frm=1, index=k, entries=[entry])] * 4)
                await asyncio.sleep(0)
                conn = tr.peers[2].conn
                peak_buffer = max(peak_buffer, conn.transport.get_write_buffer_size())
                assert len(tr.peers[2].queue) <= cfg.queue_size
            assert sink.unreachable and set(sink.unreachable) == {2}
            dropped = tr.metrics.get("etcd_network_peer_sent_failures_total", 2)
            assert dropped > 1000
            # what the transport buffers for the stuck peer: one high-water mark plus one message
            assert peak_buffer <= 2 * cfg.write_high_water + 16384 + 200
        finally:
            tr.stop()
            await tr.wait_closed()
            server.close()
            await server.wait_closed()

    kit.run(body())


def test_unreachable_peer_reported_and_delivery_resumes_after_restart(kit, loop_kind):
    pb = kit.pb

    async def body():
        async with kit.cluster(2) as c:
            await c.connected()
            c.tr[1].send([pb.Message(type=pb.MSG_HEARTBEAT, to=2, frm=1, term=1)])
            await kit.wait_for(lambda: len(c.sink[2].got) == 1)
            await c.stop(2)
            # while member 2 is down, sends are dropped and it is reported unreachable
            await kit.wait_for(lambda: c.tr[1].active_since(2) is None, what="stream loss noticed")
            c.tr[1].send([pb.Message(type=pb.MSG_HEARTBEAT, to=2, frm=1, term=2)])
            await kit.wait_for(lambda: 2 in c.sink[1].unreachable, what="unreachable report")
            assert c.tr[1].metrics.get("etcd_network_disconnected_peers_total", 2) >= 1
            await c.restart(2)
            await c.connected([(1, 2), (2, 1)])
            c.tr[1].send([pb.Message(type=pb.MSG_HEARTBEAT, to=2, frm=1, term=3, commit=k) for k in range(10)])
            c.tr[2].send([pb.Message(type=pb.MSG_HEARTBEAT_RESP, to=1, frm=2, term=3)])
            await kit.wait_for(lambda: len(c.sink[2].got) == 10 and c.sink[1].got[-1].term == 3)
            assert [m.commit for m in c.sink[2].got] == list(range(10))

    kit.run(body(), loop=loop_kind)


def test_backoff_is_capped_exponential_with_seeded_jitter():
    a = Backoff(0.05, 1.0, random.Random(42))
    b = Backoff(0.05, 1.0, random.Random(42))
    da = [a.next() for _ in range(12)]
    assert da == [b.next() for _ in range(12)]
    for n, d in enumerate(da):
        full = min(1.0, 0.05 * 2 ** n)
        assert full / 2 <= d <= full
    assert max(da) <= 1.0 and da[-1] > 0.5
    a.reset()
    assert a.next() <= 0.05
    c = Backoff(0.05, 1.0, random.Random(43))
    assert [c.next() for _ in range(12)] != da


def test_rtt_probe_is_measured(kit):
    async def body():
        cfg = TransportConfig(ping_interval=0.05, backoff_initial=0.02, backoff_cap=0.3)
        async with kit.cluster(2, config=cfg) as c:
            await c.connected()
            name = "etcd_network_peer_round_trip_time_seconds"
            await kit.wait_for(lambda: c.tr[1].metrics.histogram_count(name, 2) >= 3)
            lines = c.tr[1].metrics.render_lines()
            assert any(line.startswith(f'{name}_count{{To="2"}}') for line in lines)
            assert any(line.startswith('etcd_network_active_peers{Local="1",Remote="2"} 1') for line in lines)
            assert c.tr[1].metrics.total("etcd_network_peer_sent_bytes_total") > 0
            # what the server's registry takes: unlabelled totals read live
            totals = {name: (typ, fn) for name, typ, _h, fn in c.tr[1].metrics.unlabelled()}
            typ, fn = totals["etcd_network_peer_sent_bytes_total"]
            before = fn()
            c.tr[1].send([kit.pb.Message(type=kit.pb.MSG_HEARTBEAT, to=2, frm=1)])
            await kit.wait_for(lambda: fn() > before)
            assert typ == "counter" and totals["etcd_network_active_peers"][1]() == 1

    kit.run(body())


def test_local_transport_still_refuses_to_send(kit):
    from fastkv.transport import LocalTransport
    t = LocalTransport()
    got = []
    t.start(got.append)
    with pytest.raises(RuntimeError, match="one-member cluster"):
        t.send([kit.pb.Message(type=kit.pb.MSG_APP, to=2, frm=1)])
    with pytest.raises(RuntimeError, match="one-member cluster"):
        t.send_snapshot(kit.pb.Message(type=kit.pb.MSG_SNAP, to=2, frm=1), "/nonexistent")
    t.send([])
    t.stop()


def test_silent_peer_stream_is_cut_and_redialed(kit):
    cfg = TransportConfig(ping_interval=0.1, dial_timeout=0.5, backoff_initial=0.02, backoff_cap=0.2)

    async def body():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_SilentPeer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        from fastkv.transport import PeerTransport
        tr = PeerTransport(1, kit.CLUSTER_ID, snap_dir=str(kit.tmp_path / "s"), config=cfg)
        tr.add_peer(2, [f"http://127.0.0.1:{port}"])
        tr.start(kit.Sink())
        try:
            await kit.wait_for(lambda: tr.metrics.get("etcd_network_disconnected_peers_total", 2) >= 2,
                               what="the silent stream cut twice")
        finally:
            tr.stop()
            await tr.wait_closed()
            server.close()
            await server.wait_closed()

    kit.run(body())
