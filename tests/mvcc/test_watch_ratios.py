"""The write path stays cheap with watchers around (ratios only, wide margins: the machine is noisy).

Reference, measured in the same run: puts on the same KVStore/LMDB with no watchable store at all.
"""
from __future__ import annotations

import time

from fastkv.backend import open_backend
from fastkv.mvcc import KVStore, PutOp
from fastkv.mvcc.watchable import WatchableStore

N = 3000


def puts_per_second(tmp_path, name, setup) -> float:
    best = 0.0
    for attempt in range(3):
        be = open_backend("lmdb", str(tmp_path / f"{name}{attempt}"))
        kv = KVStore(be)
        ws, streams = setup(kv)
        t = time.perf_counter()
        for i in range(N):
            kv.put(PutOp(b"key%04d" % (i % 500), b"v" * 64))
            if i % 64 == 0:
                for s in streams:
                    s.take()
        best = max(best, N / (time.perf_counter() - t))
        if ws is not None:
            ws.close()
        be.close()
    return best


def test_watchers_cost_writes_little(tmp_path):
    def none(kv):
        return None, []

    def many(kv):
        ws = WatchableStore(kv, sync_interval=0)
        s = ws.new_stream()
        for i in range(100):
            s.watch(b"other%d" % i)  # single keys nobody writes
            s.watch(b"zz%d" % i, b"zz%d\xff" % i)  # ranges nobody writes
        s.watch(b"key", b"kez")  # one prefix watcher that sees every write
        return ws, [s]

    def never_read(kv):
        ws = WatchableStore(kv, sync_interval=0, max_pending_responses=4)
        ws.new_stream().watch(b"key", b"kez")  # becomes a victim after 4 responses
        return ws, []

    base = puts_per_second(tmp_path, "base", none)
    with_watchers = puts_per_second(tmp_path, "many", many)
    with_victim = puts_per_second(tmp_path, "victim", never_read)
    print(f"puts/s: none {base:.0f}, 201 watchers {with_watchers:.0f} ({with_watchers / base:.2f}x), "
          f"never-read watcher {with_victim:.0f} ({with_victim / base:.2f}x)")
    assert with_watchers / base > 0.3  # one of them gets a response per put; typically 0.5-0.75x
    assert with_victim / base > 0.5  # a stalled consumer must not slow writers down
