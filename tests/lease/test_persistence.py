"""Leases survive restart: rows in the LMDB "lease" bucket, keys re-attached from the KV store, and
grant/revoke committed in the same backend batch as the KV writes they go with (checked at every
commit, and across a real SIGKILL)."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap

from fastkv.backend import KEY, LEASE, open_backend
from fastkv.lease import Lessor
from fastkv.lease.lease import lease_key
from fastkv.mvcc import PutOp, RangeOp

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def snapshot(lessor):
    return [(lease.id, lease.ttl, lease.remaining_ttl, sorted(lease.keys)) for lease in lessor.leases()]


def test_leases_and_keys_come_back_after_reopen(open_lmdb_member, clock):
    m = open_lmdb_member(checkpoint_interval=60)
    lessor, kv = m.lessor, m.kv
    lessor.promote(0.0)
    lessor.grant(1, 10)
    lessor.grant(2, 300)
    lessor.grant(3, 20)
    lessor.grant(2**62, 40)
    kv.put(PutOp(b"a", b"1", lease=1))
    kv.put(PutOp(b"b", b"1", lease=2))
    kv.put(PutOp(b"c", b"1", lease=2))
    kv.put(PutOp(b"d", b"1", lease=3))
    kv.put(PutOp(b"free", b"1"))
    kv.put(PutOp(b"c", b"2", lease=1))  # moved: 2 -> 1
    lessor.revoke(3)
    clock.advance(60)
    assert lessor.checkpoint_due() == [(2, 240)]
    lessor.apply_checkpoint(2, 240)
    before = snapshot(lessor)
    assert before == [(1, 10, 0, [b"a", b"c"]), (2, 300, 240, [b"b"]), (2**62, 40, 0, [])]
    rev = kv.current_revision
    m.backend.close()

    again = open_lmdb_member(reopen=True, checkpoint_interval=60)
    assert again.kv.current_revision == rev
    assert snapshot(again.lessor) == before
    assert not again.lessor.is_primary
    assert again.lessor.expired_leases() == []
    again.lessor.promote(1.0)
    assert again.lessor.time_to_live(2) == (300, 241, [])  # resumes from the checkpoint
    assert again.lessor.time_to_live(1, keys=True) == (10, 11, [b"a", b"c"])
    # The recovered lease still owns its keys: revoking deletes them in one revision.
    again.lessor.revoke(1)
    assert again.kv.current_revision == rev + 1
    assert [x.key for x in again.kv.range(RangeOp(b"\x00", b"\x00")).kvs] == [b"b", b"free"]


def test_lessor_alone_loads_leases_from_the_backend(tmp_path, clock):
    be = open_backend("lmdb", str(tmp_path / "db"), batch_interval=0)
    Lessor(be, min_ttl=2, clock=clock).grant(5, 30)
    be.close()
    be = open_backend("lmdb", str(tmp_path / "db"), batch_interval=0)
    try:
        lessor = Lessor(be, min_ttl=60, clock=clock)  # a larger minimum applies to old leases too
        assert lessor.exists(5)
        assert lessor.lookup(5).ttl == 60
    finally:
        be.close()


def test_recover_skips_keys_of_missing_leases_and_is_repeatable(open_member, caplog):
    m = open_member()
    m.lessor.grant(1, 10)
    m.kv.put(PutOp(b"a", b"v", lease=1))
    m.kv.put(PutOp(b"b", b"v", lease=1))
    before = snapshot(m.lessor)
    m.lessor.recover(m.leased_keys())
    assert snapshot(m.lessor) == before
    with caplog.at_level(logging.WARNING, logger="fastkv.lease.lessor"):
        m.lessor.recover([(b"a", 1), (b"zz", 77), (b"free", 0)])
    assert snapshot(m.lessor) == [(1, 10, 0, [b"a"])]
    assert "1 keys name a lease that does not exist" in caplog.text


def test_grant_and_revoke_commit_with_their_kv_writes(open_member):
    # batch_limit=1: the backend commits at the end of every write, the strictest schedule. At
    # every commit the lease row and the lease's keys must agree: never a revoked lease whose keys
    # are still live, never deleted keys whose lease row survives.
    m = open_member(batch_limit=1)
    states = []

    def observe():
        with m.backend.read_tx() as tx:
            lease_row = tx.unsafe_get(LEASE, lease_key(1)) is not None
            key_rows = len(tx.unsafe_range(KEY, b"", b""))
        states.append((lease_row, key_rows))

    m.backend.add_post_commit_hook(observe)
    m.lessor.grant(1, 10)
    m.kv.put(PutOp(b"a", b"v", lease=1))
    m.kv.put(PutOp(b"b", b"v", lease=1))
    assert states == [(True, 0), (True, 1), (True, 2)]
    m.lessor.revoke(1)
    assert states[3:] == [(False, 4)]  # one commit: lease row gone and both tombstones written


CRASH_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from fastkv.backend import open_backend
    from fastkv.lease import Lessor
    from fastkv.mvcc import DeleteOp, KVStore, PutOp, TxnOp
    path, phase = sys.argv[1], sys.argv[2]
    be = open_backend("lmdb", path, batch_interval=0)
    lessor = Lessor(be, min_ttl=2)
    kv = KVStore(be, lessor=lessor)
    lessor.set_range_deleter(lambda keys: kv.txn(TxnOp(success=[DeleteOp(k) for k in keys])))
    if phase == "setup":
        lessor.grant(7, 60)
        kv.put(PutOp(b"x", b"1", lease=7))
        kv.put(PutOp(b"y", b"1", lease=7))
        be.force_commit()
    elif phase == "revoke-unsynced":
        lessor.recover([(b"x", 7), (b"y", 7)])
        lessor.revoke(7)           # buffered only: the crash loses the whole entry
    elif phase == "revoke-synced":
        lessor.recover([(b"x", 7), (b"y", 7)])
        lessor.revoke(7)
        be.force_commit()          # acknowledged: the crash keeps the whole entry
    os.kill(os.getpid(), signal.SIGKILL)
""")


def _crash(path: str, phase: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC))
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, path, phase], env=env, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


def _state(path: str, clock):
    be = open_backend("lmdb", path, batch_interval=0)
    try:
        from fastkv.mvcc import KVStore

        lessor = Lessor(be, min_ttl=2, clock=clock)
        kv = KVStore(be, lessor=lessor)
        kvs = kv.range(RangeOp(b"\x00", b"\x00")).kvs
        lessor.recover([(x.key, x.lease) for x in kvs])
        return kv.current_revision, [(x.key, x.lease) for x in kvs], snapshot(lessor)
    finally:
        be.close()


def test_sigkill_keeps_revoke_atomic(tmp_path, clock):
    path = str(tmp_path / "crash")
    _crash(path, "setup")
    after_setup = _state(path, clock)
    assert after_setup == (3, [(b"x", 7), (b"y", 7)], [(7, 60, 0, [b"x", b"y"])])
    _crash(path, "revoke-unsynced")
    assert _state(path, clock) == after_setup
    _crash(path, "revoke-synced")
    assert _state(path, clock) == (4, [], [])


def test_recover_after_a_failed_commit_drops_unacknowledged_leases(wire_member):
    # Durable-mode contract with the KV store: a commit that fails (disk full) was never
    # acknowledged; KVStore.reload() drops the buffer and the lessor follows with recover().
    be = open_backend("memory", batch_interval=0, max_size=4096)
    m = wire_member(be)
    m.lessor.grant(1, 10)
    m.kv.put(PutOp(b"kept", b"v", lease=1))
    be.force_commit()
    m.lessor.grant(2, 10)
    m.kv.put(PutOp(b"big", b"x" * 8192, lease=2))
    m.kv.put(PutOp(b"kept", b"w", lease=2))
    try:
        be.force_commit()
        raise AssertionError("commit over the size limit succeeded")
    except Exception as exc:  # noqa: BLE001
        assert type(exc).__name__ == "ErrNoSpace"
    m.kv.reload()
    m.lessor.recover(m.leased_keys())
    assert snapshot(m.lessor) == [(1, 10, 0, [b"kept"])]
    assert m.get(b"kept").lease == 1
    be.close()
