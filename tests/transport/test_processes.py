"""Two members in two processes over real loopback TCP: ordered echo of heartbeats, a 100 MB
snapshot to the other process while heartbeats keep flowing both ways, and unreachability when the
other process dies."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from fastkv.transport import PeerTransport

CHILD = Path(__file__).with_name("peer_child.py")


def test_two_processes_heartbeats_and_snapshot(kit, tmp_path):
    pb = kit.pb
    interval = 0.1   # etcd's default heartbeat; its election timeout is 10 of them
    size = 100 << 20
    src = tmp_path / "backend.db"
    block = os.urandom(1 << 20)
    with open(src, "wb") as f:
        for _ in range(size >> 20):
            f.write(block)
    proc = subprocess.Popen([sys.executable, str(CHILD), str(kit.CLUSTER_ID), str(tmp_path / "child-snap")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    async def body():
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, proc.stdout.readline)
        assert line.startswith("PORT "), line
        sink = kit.Sink()
        tr = PeerTransport(1, kit.CLUSTER_ID, snap_dir=str(tmp_path / "snap"))
        (_h, port), = await tr.serve(["http://127.0.0.1:0"])
        proc.stdin.write(f"http://127.0.0.1:{port}\n")
        proc.stdin.flush()
        tr.add_peer(2, [f"http://127.0.0.1:{line.split()[1]}"])
        tr.start(sink)
        try:
            await kit.wait_for(lambda: tr.active_since(2) is not None, what="stream to the child")
            # ordered echo through two streams and two processes
            tr.send([pb.Message(type=pb.MSG_HEARTBEAT, to=2, frm=1, term=1, commit=k) for k in range(1000)])
            await kit.wait_for(lambda: len(sink.got) == 1000, what="1000 echoed heartbeats")
            assert [m.commit for m in sink.got] == list(range(1000))
            sink.got.clear()
            snap_lines = []

            async def heartbeats():
                k = 0
                while True:
                    tr.send([pb.Message(type=pb.MSG_HEARTBEAT, to=2, frm=1, term=2, commit=k)])
                    k += 1
                    await asyncio.sleep(interval)

            async def follower_arrivals():
                tr.send([pb.Message(type=pb.MSG_HEARTBEAT, to=2, frm=1, term=2, context=b"report")])
                while True:
                    line = await loop.run_in_executor(None, proc.stdout.readline)
                    if line.startswith("SNAP "):
                        snap_lines.append(line)
                        continue
                    assert line.startswith("ARRIVALS"), line
                    return [float(x) for x in line.split()[1:]]

            hb = loop.create_task(heartbeats())
            await asyncio.sleep(5 * interval)
            await follower_arrivals()
            # reference, same run: the follower's heartbeat gaps with no transfer going on
            await asyncio.sleep(20 * interval)
            idle_arrivals = await follower_arrivals()
            idle = max(b - a for a, b in zip(idle_arrivals, idle_arrivals[1:]))
            msg = pb.Message(type=pb.MSG_SNAP, to=2, frm=1, term=2, snapshot=pb.Snapshot(
                metadata=pb.SnapshotMetadata(index=777, term=2)))
            t0 = time.monotonic()
            assert await tr.send_snapshot(msg, str(src))
            t1 = time.monotonic()
            await asyncio.sleep(3 * interval)
            arrivals = idle_arrivals + await follower_arrivals()
            hb.cancel()
            (snap_line,) = snap_lines
            assert snap_line.split()[:3] == ["SNAP", "777", str(size)]
            during = [t for t in arrivals if t0 <= t <= t1]
            edges = [max(t for t in arrivals if t < t0)] + during + [min(t for t in arrivals if t > t1)]
            gap = max(b - a for a, b in zip(edges, edges[1:]))
            summary = (f"two processes: 100 MB snapshot in {t1 - t0:.2f}s, max heartbeat gap at the "
                       f"follower {gap * 1000:.0f} ms = {gap / interval:.2f} x interval (idle reference "
                       f"{idle / interval:.2f} x)")
            print("\n" + summary)
            # a follower campaigns after 10 to 20 silent intervals; two processes and the kernel's
            # writeback of the 100 MB share two busy cores here, so the margin is smaller than in
            # the one-process test, still clear of an election
            assert gap / interval < max(8.0, 2 * idle / interval), summary
            # the other member dies: it is reported unreachable
            proc.stdin.close()
            proc.wait(20)
            await kit.wait_for(lambda: tr.active_since(2) is None, what="loss noticed")
            tr.send([pb.Message(type=pb.MSG_HEARTBEAT, to=2, frm=1, term=3)])
            await kit.wait_for(lambda: 2 in sink.unreachable)
        finally:
            tr.stop()
            await tr.wait_closed()

    try:
        kit.run(body(), timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
