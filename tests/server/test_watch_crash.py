"""Watch across SIGKILL: a watcher sees only durable events (everything it was sent before the
kill is in the store after the restart, same key, value and revision), and resuming from its last
revision + 1 after the restart continues without a gap or a duplicate."""
from __future__ import annotations

import os
import random
import threading
import time

import grpc

from tests.server._util import Member


def test_watch_events_are_durable_and_resumable_across_sigkill(tmp_path):
    seed = int(os.environ.get("FASTKV_SIGKILL_SEED", random.randrange(1 << 30)))
    print(f"seed={seed}")
    rng = random.Random(seed)
    m = Member(tmp_path / "data", "--backend-batch-interval", "5").start()
    try:
        seen: list = []  # (revision, key, value) in delivery order
        c = m.client()
        watch = c.watch(b"w/", prefix=True, timeout=60)
        assert next(watch).created

        def watcher():
            try:
                for resp in watch:
                    seen.extend((ev.kv.mod_revision, ev.kv.key, ev.kv.value) for ev in resp.events)
            except grpc.RpcError:
                pass

        stop = threading.Event()

        def writer():
            wc = m.client(timeout=5)
            i = 0
            try:
                while not stop.is_set():
                    wc.put(b"w/%06d" % i, b"v%d" % i)
                    i += 1
            except grpc.RpcError:
                pass
            finally:
                wc.close()

        threads = [threading.Thread(target=watcher), threading.Thread(target=writer)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.5, 1.5))
        stop.set()
        m.kill9()
        for t in threads:
            t.join(15)
        watch.close()
        c.close()
        assert len(seen) > 10
        revs = [r for r, _k, _v in seen]
        assert revs == list(range(2, 2 + len(revs))), "events before the kill were not in order, unique, gapless"

        m.start()
        c = m.client()
        stored = {kv.key: (kv.mod_revision, kv.value) for kv in c.get(b"w/", prefix=True).kvs}
        for rev, key, value in seen:
            assert stored.get(key) == (rev, value), f"seed={seed}: watched event at {rev} for {key!r} was lost"
        current = c.get(b"w/").header.revision
        resumed = []
        if current > revs[-1]:
            with c.watch(b"w/", prefix=True, start_revision=revs[-1] + 1, timeout=15) as w:
                assert next(w).created
                while not resumed or resumed[-1][0] < current:
                    resumed += [(ev.kv.mod_revision, ev.kv.key, ev.kv.value) for ev in next(w).events]
        all_revs = revs + [r for r, _k, _v in resumed]
        assert all_revs == list(range(2, current + 1)), f"seed={seed}: resumed watch has a gap or a duplicate"
        c.close()
    finally:
        m.stop()
