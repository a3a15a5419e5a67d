"""Threads as the server has them: an applier (grant, put with lease, delete, revoke, checkpoint),
a leader loop (renew, expired_leases -> "propose" revoke, checkpoint_due, time_to_live, leases) and
the backend's own interval committer, on LMDB with the real clock. Checks nothing deadlocks, no
unexpected error escapes, and the final state is consistent (each lease's keys are exactly the live
keys carrying its id; every lease row on disk matches memory)."""
from __future__ import annotations

import queue
import random
import threading
import time

from fastkv.backend import LEASE, open_backend
from fastkv.errors import ErrLeaseExist, ErrLeaseNotFound
from fastkv.lease import Lessor
from fastkv.lease.lease import decode_lease_row, parse_lease_key
from fastkv.mvcc import DeleteOp, KVStore, PutOp, RangeOp, TxnOp

RUN_SECONDS = 1.5


def test_applier_leader_loop_and_committer_run_together(tmp_path):
    be = open_backend("lmdb", str(tmp_path / "db"), batch_interval=0.01)
    lessor = Lessor(be, min_ttl=1, checkpoint_interval=0.05)
    kv = KVStore(be, lessor=lessor)
    lessor.set_range_deleter(lambda ks: kv.txn(TxnOp(success=[DeleteOp(k) for k in ks])))
    lessor.promote(0.0)
    proposals: queue.Queue = queue.Queue()  # leader -> applier, like entries through raft
    stop = threading.Event()
    errors: list = []
    counts = {"grant": 0, "revoke": 0, "expired": 0, "renew": 0, "checkpoint": 0}

    def applier():
        rng = random.Random(1)
        try:
            while not stop.is_set():
                try:
                    kind, args = proposals.get_nowait()
                except queue.Empty:
                    kind, args = None, None
                if kind == "revoke":
                    try:
                        lessor.revoke(args)
                        counts["revoke"] += 1
                    except ErrLeaseNotFound:
                        pass  # revoked twice (re-reported after the retry interval)
                    continue
                if kind == "checkpoint":
                    for lease_id, remaining in args:
                        lessor.apply_checkpoint(lease_id, remaining)
                    counts["checkpoint"] += 1
                    continue
                lease_id = rng.randrange(1, 40)
                r = rng.random()
                if r < 0.3:
                    try:
                        lessor.grant(lease_id, rng.choice([1, 1, 2, 60]))
                        counts["grant"] += 1
                    except ErrLeaseExist:
                        pass
                elif r < 0.8:
                    key = b"k%02d" % rng.randrange(60)
                    try:
                        kv.put(PutOp(key, b"v", lease=lease_id if rng.random() < 0.8 else 0))
                    except ErrLeaseNotFound:
                        pass
                else:
                    kv.delete_range(DeleteOp(b"k%02d" % rng.randrange(60)))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def leader_loop():
        rng = random.Random(2)
        try:
            while not stop.is_set():
                for lease_id in lessor.expired_leases():
                    proposals.put(("revoke", lease_id))
                    counts["expired"] += 1
                due = lessor.checkpoint_due()
                if due:
                    proposals.put(("checkpoint", due))
                lease_id = rng.randrange(30, 40)  # kept alive; 1..29 are left to run out
                try:
                    lessor.renew(lease_id)
                    counts["renew"] += 1
                    lessor.time_to_live(lease_id, keys=True)
                except ErrLeaseNotFound:
                    pass
                lessor.leases()
                time.sleep(0.0005)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=applier), threading.Thread(target=leader_loop)]
    for t in threads:
        t.start()
    time.sleep(RUN_SECONDS)
    stop.set()
    for t in threads:
        t.join(10)
        assert not t.is_alive(), "deadlock: a thread did not stop"
    try:
        print(counts)
        assert errors == []
        assert counts["grant"] > 5 and counts["expired"] > 0 and counts["revoke"] > 0 and counts["renew"] > 5
        assert counts["checkpoint"] > 0
        live = kv.range(RangeOp(b"\x00", b"\x00")).kvs
        for lease in lessor.leases():
            assert lease.keys == {x.key for x in live if x.lease == lease.id}
        assert all(lessor.exists(x.lease) for x in live if x.lease)
        be.force_commit()
        with be.read_tx() as tx:
            rows = {parse_lease_key(k): decode_lease_row(v) for k, v in tx.unsafe_range(LEASE, b"", b"")}
        assert rows == {lease.id: (lease.ttl, lease.remaining_ttl) for lease in lessor.leases()}
    finally:
        be.close()
