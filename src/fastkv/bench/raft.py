"""`fastkv bench raft`: committed entries per second of the raft core, no I/O.

A 3-member cluster lives in one process: the leader proposes batches of entries, every member
runs the production node driver (server/node.py) over a log store with no durability (the log in
MemoryStorage, messages handed straight to the peer), and the clock is the number of entries the
leader applied. The same workload runs twice in one
invocation: with the compiled log/codec (raftpb.pyx, unstable.pyx) and with their pure-Python
twins, and the ratio between the two is reported.
"""
from __future__ import annotations

import random
import time

from fastkv._native import is_compiled, load
from fastkv.bench._common import Progress, add_json_flag, emit, machine_info


def run_cluster(pure: bool, total: int, batch: int, size: int, encode: bool, window: int,
                progress: Progress | None = None) -> dict:
    """Commit `total` entries of `size` bytes through a 3-member cluster; returns figures."""
    from fastkv.raft import LEADER, Config, RawNode
    from fastkv.server.node import MemoryLogStore, NodeDriver

    pb = load("raftpb", pure=pure)
    storage_mod = load("raftlog")
    ids = [1, 2, 3]
    storages = {i: storage_mod.MemoryStorage() for i in ids}
    nodes = {i: RawNode(Config(id=i, peers=ids, storage=storages[i], election_tick=10,
                               heartbeat_tick=1, rng=random.Random(i), pure=pure,
                               max_inflight_msgs=512, max_size_per_msg=1 << 20))
             for i in ids}
    inbox: list = []
    applied = {i: 0 for i in ids}
    encode_message, decode_message = pb.encode_message, pb.decode_message

    class Member:
        """The state machine: it only records how far it applied."""

        def __init__(self, member_id):
            self.id = member_id

        def apply(self, entries):
            applied[self.id] = entries[-1].index

        def on_soft_state(self, was_leader, is_leader, leader):
            pass

        def apply_snapshot(self, snapshot):
            raise RuntimeError("the benchmark never compacts below a follower")

        def on_read_states(self, states):
            pass

        def on_dropped(self, batch, exc):
            raise RuntimeError(f"proposal dropped: {exc}")

    if encode:
        def send(msgs):
            inbox.extend(encode_message(m) for m in msgs)
    else:
        send = inbox.extend
    # the production node driver: what is sent and applied when follows server/node.py
    drivers = {i: NodeDriver(nodes[i], MemoryLogStore(storages[i]), send, Member(i)) for i in ids}

    def pump() -> None:
        moved = True
        while moved:
            moved = False
            for i in ids:
                while drivers[i].run_ready_sync():
                    moved = True
            if inbox:
                moved = True
                msgs = inbox[:]
                inbox.clear()
                for m in msgs:
                    if encode:
                        m = decode_message(m)
                    drivers[m.to].step(m)

    pump()
    leader = nodes[1]
    leader.campaign()
    pump()
    if leader.status().raft_state != LEADER:
        raise RuntimeError("member 1 did not become leader")
    base = applied[1]
    payload = b"x" * size
    datas = [payload] * batch
    proposed = 0
    compact_every = 50_000
    next_compact = base + compact_every
    t0 = time.perf_counter()
    while applied[1] - base < total:
        # Keep `window` entries in flight so appends pipeline as in a loaded server.
        while proposed < total and proposed - (applied[1] - base) < window:
            leader.propose_batch(datas)
            proposed += batch
        pump()
        if applied[1] >= next_compact:
            # Bound memory: snapshot+compact as a server would (not timed separately).
            for i in ids:
                st = storages[i]
                cut = min(applied[i], applied[1]) - 1000
                if cut > st.first_index():
                    st.compact(cut)
            next_compact += compact_every
        if progress is not None:
            progress.update(applied[1] - base)
    elapsed = time.perf_counter() - t0
    done = applied[1] - base
    if min(applied.values()) - base < done - 2 * window:
        raise RuntimeError(f"followers lag: {applied}")
    return {"entries": done, "seconds": elapsed, "entries_per_s": done / elapsed,
            "compiled": is_compiled(pb)}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "raft",
        help="raft core: committed entries/s in a 3-member simulated cluster (no I/O)",
        description="Commit --entries entries of --size bytes through a 3-member raft cluster "
        "simulated in one process (MemoryStorage, messages handed over in memory, no fsync), the "
        "leader proposing --batch entries per proposal with --window entries in flight. Runs "
        "twice in the same invocation: with the compiled log and codec (Cython) and with the "
        "pure-Python twins, and reports committed entries/s for each and their ratio.",
    )
    p.add_argument("--entries", type=int, default=200_000, help="entries to commit per run (default 200000)")
    p.add_argument("--batch", type=int, default=256, help="entries per proposal (default 256)")
    p.add_argument("--window", type=int, default=4096, help="entries proposed but not yet applied (default 4096)")
    p.add_argument("--size", type=int, default=64, help="payload bytes per entry (default 64)")
    p.add_argument("--encode", action="store_true",
                   help="pass every message through the raftpb codec (as a transport would)")
    p.add_argument("--repeat", type=int, default=3, help="runs per implementation; the best is kept (default 3)")
    add_json_flag(p)
    p.set_defaults(func=_main)


def _main(args) -> int:
    results = {}
    for label, pure in (("compiled", False), ("twin", True)):
        best = None
        for _ in range(args.repeat):
            prog = Progress(f"raft {label}", args.entries)
            r = run_cluster(pure, args.entries, args.batch, args.size, args.encode, args.window, prog)
            prog.close()
            if best is None or r["entries_per_s"] > best["entries_per_s"]:
                best = r
        results[label] = best
        print(f"{label:9s}: {best['entries']} entries in {best['seconds']:.3f}s = "
              f"{best['entries_per_s']:,.0f} committed entries/s (best of {args.repeat})", flush=True)
    if not results["compiled"]["compiled"]:
        print("warning: the compiled modules are not built; both runs used the twins")
    ratio = results["compiled"]["entries_per_s"] / results["twin"]["entries_per_s"]
    print(f"ratio compiled/twin: {ratio:.2f}x  (target >= 100,000 committed entries/s)")
    emit({
        "bench": "raft",
        "members": 3,
        "entries": args.entries,
        "batch": args.batch,
        "window": args.window,
        "size": args.size,
        "encode": args.encode,
        "compiled_entries_per_s": results["compiled"]["entries_per_s"],
        "twin_entries_per_s": results["twin"]["entries_per_s"],
        "ratio_compiled_over_twin": ratio,
        "compiled_built": results["compiled"]["compiled"],
        "machine": machine_info(),
    }, args.json)
    return 0
