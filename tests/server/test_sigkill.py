"""SIGKILL loses nothing acknowledged (real process, real disk, real signal).

Writer threads put and txn as fast as they can over gRPC and record every acknowledged response's
revision; the server is killed with SIGKILL at a random (seeded, printed) moment, restarted on the
same data dir, and then:
- every acknowledged write is there with its value and the revision it was acknowledged with;
- the revisions in the store have no holes: every key is written once, so the set of mod revisions
  is exactly 2..current (a lost or twice-applied entry would leave a hole or shift revisions);
- the store keeps working: the next put gets current + 1.
Each scenario kills twice (kill, restart, write more, kill, restart) under different flags: the
defaults, a tiny backend batch (commits interleave with the kill) and a tiny --snapshot-count with
small WAL segments (restart replays from a snapshot plus the WAL left after segments were released).
"""
from __future__ import annotations

import os
import random
import threading
import time

import grpc
import pytest

from fastkv.api.etcdpb import rpc_pb2
from tests.server._util import Member, all_kvs, env_with_src

WRITERS = 4
ROUNDS = 2


def _writer(member, tag: str, acks: list, stop: threading.Event, errors: list) -> None:
    """Write unique keys until the server dies; record (revision, {key: value}) for every ack."""
    c = member.client(timeout=5.0)
    i = 0
    try:
        while True:
            i += 1
            if i % 4 == 0:  # a txn writing two keys at one revision
                k1, k2 = f"{tag}/t{i}/a".encode(), f"{tag}/t{i}/b".encode()
                v = f"txn-{tag}-{i}".encode()
                cmp = rpc_pb2.Compare(key=k1, target=rpc_pb2.Compare.VERSION, result=rpc_pb2.Compare.EQUAL, version=0)
                r = c.txn([cmp], [rpc_pb2.PutRequest(key=k1, value=v), rpc_pb2.PutRequest(key=k2, value=v)])
                assert r.succeeded
                acks.append((r.header.revision, {k1: v, k2: v}))
            else:
                k, v = f"{tag}/p{i}".encode(), f"put-{tag}-{i}".encode()
                r = c.put(k, v)
                acks.append((r.header.revision, {k: v}))
    except grpc.RpcError as exc:
        if not stop.is_set():
            errors.append(exc)
    finally:
        c.close()


def _compactor(member, acks: list, compactions: list, stop: threading.Event, errors: list) -> None:
    """Compact to 20 revisions behind the latest ack every 0.2 s, and defragment every third time
    (so the kill may land inside a defrag's copy-and-swap); record every acknowledged compaction.
    Every key is written once, so compaction never hides a latest version the check reads."""
    c = member.client(timeout=5.0)
    n = 0
    try:
        while not stop.wait(0.2):
            n += 1
            if n % 3 == 0:
                c.maintenance.Defragment(rpc_pb2.DefragmentRequest(), timeout=10)
            if acks:
                target = max(rev for rev, _ in acks[-50:]) - 20
                if target > (compactions[-1] if compactions else 1):
                    c.compact(target)
                    compactions.append(target)
    except grpc.RpcError as exc:
        if not stop.is_set():
            errors.append(exc)
    finally:
        c.close()


def _write_then_kill(member, rng, round_no: int, compactions: list) -> list:
    acks: list = []
    errors: list = []
    stop = threading.Event()
    threads = [threading.Thread(target=_writer, args=(member, f"r{round_no}w{w}", acks, stop, errors))
               for w in range(WRITERS)]
    threads.append(threading.Thread(target=_compactor, args=(member, acks, compactions, stop, errors)))
    for t in threads:
        t.start()
    time.sleep(rng.uniform(0.6, 2.0))
    stop.set()  # errors from here on are the kill's; writers keep going until their call fails
    member.kill9()
    for t in threads:
        t.join(15)
    assert not any(t.is_alive() for t in threads), "a writer hung after the server was killed"
    assert errors == [], f"writers failed before the kill: {errors[:1]}"
    return acks


def _check(member, acks: list, seed: int, marker: bytes, compactions: list, lease: int) -> int:
    c = member.client()
    try:
        # an acknowledged compaction survives: below it is compacted
        if compactions:
            with pytest.raises(grpc.RpcError) as ei:
                c.get(b"x", revision=compactions[-1] - 1)
            assert ei.value.details() == "etcdserver: mvcc: required revision has been compacted", f"seed={seed}"
        # a lease granted before the kills survives them, with its key
        ttl = c.lease_time_to_live(lease, keys=True)
        assert ttl.grantedTTL == 300 and list(ttl.keys) == [b"leased"], f"seed={seed}: {ttl}"
        kvs = all_kvs(c)
        current = c.get(b"any").header.revision
        stored = {kv.key: kv for kv in kvs}
        for rev, writes in acks:
            for k, v in writes.items():
                kv = stored.get(k)
                assert kv is not None, f"seed={seed}: acknowledged {k!r} at revision {rev} is lost"
                assert (kv.value, kv.mod_revision) == (v, rev), f"seed={seed}: {k!r} acked at {rev}, found {kv}"
        revisions = sorted({kv.mod_revision for kv in kvs})
        assert revisions == list(range(2, current + 1)), (
            f"seed={seed}: revision holes: current={current}, stored {len(revisions)} distinct revisions")
        acked_revs = [rev for rev, _ in acks]
        assert len(acked_revs) == len(set(acked_revs)), f"seed={seed}: two acks share a revision"
        nxt = c.put(marker, b"x").header.revision
        assert nxt == current + 1, f"seed={seed}: next put got {nxt}, want {current + 1}"
        return nxt
    finally:
        c.close()


SCENARIOS = {
    "defaults": ((), {}),
    "tiny-backend-batch": (("--backend-batch-interval", "1", "--backend-batch-limit", "3"), {}),
    "tiny-snapshot-count": (("--snapshot-count", "50"), {"FASTKV_WAL_SEGMENT_BYTES": 256 * 1024}),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_sigkill_loses_nothing_acknowledged(tmp_path, scenario):
    seed = int(os.environ.get("FASTKV_SIGKILL_SEED", random.randrange(1 << 30)))
    print(f"scenario={scenario} seed={seed} (replay: FASTKV_SIGKILL_SEED={seed})")
    rng = random.Random(seed)
    flags, env = SCENARIOS[scenario]
    member = Member(tmp_path / "data", *flags, env=env_with_src(**env))
    member.start()
    all_acks: list = []
    compactions: list = []
    try:
        c = member.client()
        lease = c.lease_grant(300).ID
        all_acks.append((c.put(b"leased", b"L", lease=lease).header.revision, {b"leased": b"L"}))
        c.close()
        for round_no in range(ROUNDS):
            acks = _write_then_kill(member, rng, round_no, compactions)
            assert len(acks) > 20, f"seed={seed}: only {len(acks)} writes acknowledged before the kill"
            all_acks += acks
            print(f"  round {round_no}: {len(acks)} writes, {len(compactions)} compactions acknowledged")
            if scenario == "tiny-snapshot-count":
                snaps = [f for f in os.listdir(tmp_path / "data" / "member" / "snap") if f.endswith(".snap")]
                assert snaps, "no raft snapshot was written with --snapshot-count 50"
            member.start()
            marker = b"after-restart-%d" % round_no
            nxt = _check(member, all_acks, seed, marker, compactions, lease)
            all_acks.append((nxt, {marker: b"x"}))  # written once, like every other key
    finally:
        member.stop()
