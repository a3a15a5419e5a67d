"""A member in its own process for the transport tests: member 2 of a two-member cluster.

Prints its peer port, reads member 1's peer URL from stdin, then answers every heartbeat with a
heartbeat response (same commit), records when each arrived (time.monotonic, which is one clock
for all processes on Linux) and prints them as `ARRIVALS t1 t2 ...` when a heartbeat with context
b"report" comes; reports each snapshot it receives on stdout as `SNAP <index> <size> <path>`. Runs until stdin closes or it is terminated.
"""
import asyncio
import os
import sys
import time

import uvloop

from fastkv._native import load
from fastkv.transport import PeerTransport

pb = load("raftpb")


class EchoSink:
    def __init__(self, tr):
        self.tr = tr
        self.arrivals = []

    def process(self, m):
        if m.type == pb.MSG_HEARTBEAT and m.context == b"report":
            print("ARRIVALS " + " ".join(f"{t:.6f}" for t in self.arrivals), flush=True)
            self.arrivals.clear()
            return
        if m.type == pb.MSG_HEARTBEAT:
            self.arrivals.append(time.monotonic())   # system-wide clock: the parent compares
            self.tr.send([pb.Message(type=pb.MSG_HEARTBEAT_RESP, to=m.frm, frm=2, term=m.term,
                                     commit=m.commit)])

    def report_unreachable(self, member_id):
        pass

    def report_snapshot(self, member_id, failed):
        pass

    def is_id_removed(self, member_id):
        return False

    def snapshot_received(self, msg, path):
        print(f"SNAP {msg.snapshot.metadata.index} {os.path.getsize(path)} {path}", flush=True)


async def main(cluster_id, snap_dir):
    tr = PeerTransport(2, cluster_id, snap_dir=snap_dir)
    (_h, port), = await tr.serve(["http://127.0.0.1:0"])
    print(f"PORT {port}", flush=True)
    loop = asyncio.get_running_loop()
    url = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
    tr.add_peer(1, [url])
    tr.start(EchoSink(tr))
    await loop.run_in_executor(None, sys.stdin.read)   # until the parent closes stdin
    tr.stop()
    await tr.wait_closed()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2]))
