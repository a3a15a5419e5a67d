"""Handshake: wrong cluster, unknown member, wrong target, removed member (told so, and it stops
dialing), not-ready, wrong protocol version; each refusal is logged on the listener."""
from __future__ import annotations

import asyncio
import logging

import pytest

from fastkv.transport import frame as fr
from fastkv.transport.dial import Refused, dial


async def _dial(url, cluster_id, frm, to, channel=fr.CHANNEL_STREAM):
    return await dial(url, fr.hello(channel, cluster_id, frm, to), client_ssl=None, timeout=10)


@pytest.mark.parametrize("case", ["cluster", "unknown", "to", "removed", "version", "channel"])
def test_refusals_carry_a_reason_and_are_logged(kit, caplog, case):
    caplog.set_level(logging.WARNING, logger="fastkv.transport")
    code, args, text = {
        "cluster": (fr.REFUSE_CLUSTER, (0xBAD, 2, 1), "cluster ID mismatch"),
        "unknown": (fr.REFUSE_UNKNOWN, (kit.CLUSTER_ID, 99, 1), "error sender not found"),
        "to": (fr.REFUSE_TO, (kit.CLUSTER_ID, 2, 5), "to field mismatch"),
        "removed": (fr.REFUSE_REMOVED, (kit.CLUSTER_ID, 3, 1), "removed member"),
        "version": (fr.REFUSE_VERSION, None, "protocol version 9 not supported"),
        "channel": (fr.REFUSE_BAD_CHANNEL, None, "unknown channel 7"),
    }[case]

    async def body():
        async with kit.cluster(2) as c:
            c.sink[1].removed.add(3)
            with pytest.raises(Refused) as ei:
                if case == "version":
                    await dial(c.url[1], fr.hello(fr.CHANNEL_STREAM, kit.CLUSTER_ID, 2, 1, version=9),
                               client_ssl=None, timeout=10)
                elif case == "channel":
                    await dial(c.url[1], fr.frame(fr.HELLO, fr._HELLO.pack(1, 7, kit.CLUSTER_ID, 2, 1)),
                               client_ssl=None, timeout=10)
                else:
                    await _dial(c.url[1], *args)
            assert ei.value.code == code
            assert text in ei.value.reason
            assert c.sink[1].got == []

    kit.run(body())
    assert any("refused peer connection" in r.getMessage() and text in r.getMessage()
               for r in caplog.records)


def test_wrong_cluster_member_never_gets_a_stream(kit):
    pb = kit.pb

    async def body():
        async with kit.cluster(2, cluster_ids={2: 0xBAD}) as c:
            await asyncio.sleep(0.5)
            assert c.tr[1].active_since(2) is None and c.tr[2].active_since(1) is None
            c.tr[2].send([pb.Message(type=pb.MSG_VOTE, to=1, frm=2, term=9)])
            await kit.wait_for(lambda: 1 in c.sink[2].unreachable)
            assert c.sink[1].got == []

    kit.run(body())


def test_removed_member_is_told_and_stops(kit):
    pb = kit.pb

    async def body():
        async with kit.cluster(3) as c:
            await c.connected()
            # members 1 and 2 remove member 3 (the server learned it from a conf change)
            for i in (1, 2):
                c.sink[i].removed.add(3)
                c.tr[i].remove_peer(3)
            # member 3 has not heard yet and keeps talking: its streams get cut and re-dialed
            c.tr[3].send([pb.Message(type=pb.MSG_VOTE, to=1, frm=3, term=50)])
            await kit.wait_for(lambda: c.removed_calls.get(3, 0) == 1, what="on_removed of member 3")
            await kit.wait_for(lambda: c.tr[3].peers[1]._task.done() and c.tr[3].peers[2]._task.done(),
                               what="removed member stops dialing")
            assert all(m.frm != 3 for i in (1, 2) for m in c.sink[i].got)
            assert c.removed_calls.get(1) is None and c.removed_calls.get(2) is None

    kit.run(body())


def test_not_ready_until_started_then_accepted(kit):
    from fastkv.transport import PeerTransport

    async def body():
        tr = PeerTransport(1, kit.CLUSTER_ID, snap_dir=str(kit.tmp_path / "s"))
        (_h, port), = await tr.serve(["http://127.0.0.1:0"])
        try:
            tr.add_peer(2, ["http://127.0.0.1:1"])
            with pytest.raises(Refused) as ei:
                await _dial(f"http://127.0.0.1:{port}", kit.CLUSTER_ID, 2, 1)
            assert ei.value.code == fr.REFUSE_NOT_READY
            tr.start(kit.Sink())
            conn = await _dial(f"http://127.0.0.1:{port}", kit.CLUSTER_ID, 2, 1)
            conn.close()
        finally:
            tr.stop()
            await tr.wait_closed()

    kit.run(body())


def test_bad_peer_urls_are_refused_with_advice(kit):
    from fastkv.transport import PeerTransport

    async def body():
        tr = PeerTransport(1, kit.CLUSTER_ID, snap_dir=str(kit.tmp_path / "s"))
        with pytest.raises(ValueError, match="http://, https://, unix:// or unixs://"):
            tr.add_peer(2, ["tcp://127.0.0.1:2380"])
        with pytest.raises(ValueError, match="needs a host and a port"):
            tr.add_peer(2, ["http://127.0.0.1"])
        with pytest.raises(ValueError, match="--peer-cert-file"):
            await tr.serve(["https://127.0.0.1:0"])
        tr.stop()

    kit.run(body())
