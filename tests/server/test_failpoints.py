"""The durability failpoints of the node driver and the backend (FASTKV_FAILPOINTS, etcd's gofail
habit): a member SIGKILLed right at each boundary restarts with every acknowledged write."""
from __future__ import annotations

import signal

import grpc
import pytest

from tests.server._util import Member, env_with_src

POINTS = ["raft.wal_save.before", "raft.wal_save.after", "backend.commit.before", "backend.commit.after"]


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_a_durability_boundary_loses_nothing_acknowledged(tmp_path, point):
    # the 40th pass: well after start-up, in the middle of the writes below
    env = env_with_src(FASTKV_FAILPOINTS=f"{point}=kill@40")
    m = Member(tmp_path / "data", "--backend-batch-interval", "5", env=env).start()
    acked = []
    try:
        with m.client(timeout=5) as c:
            for i in range(400):
                try:
                    c.put(b"k%04d" % i, b"v%d" % i)
                except grpc.RpcError:
                    break
                acked.append(b"k%04d" % i)
        assert m.proc.wait(20) == -signal.SIGKILL, f"failpoint {point} did not fire"
        assert acked, "the member died before any write"
    finally:
        m.stop()
    m.env = env_with_src()
    m.start()
    try:
        with m.client() as c:
            got = [kv.key for kv in c.get(b"k", b"l").kvs]
        assert got[:len(acked)] == acked and len(got) <= len(acked) + 1
    finally:
        m.stop()


def test_a_proposal_stuck_behind_a_slow_disk_times_out_with_etcds_error(tmp_path):
    """etcd's request timeout (5 s + 2 election timeouts): the wait registry's sweep answers a put
    whose entry cannot be made durable with "etcdserver: request timed out"; the member goes on."""
    # every WAL save from the 30th pass on waits 7 s: the first puts go through, then one sticks
    env = env_with_src(FASTKV_FAILPOINTS="raft.wal_save.before=sleep(7000)@30")
    m = Member(tmp_path / "data", "--election-timeout", "100", "--heartbeat-interval", "20", env=env).start()
    try:
        with m.client(timeout=20) as c:
            with pytest.raises(grpc.RpcError) as ei:
                for i in range(100):
                    c.put(b"k%03d" % i, b"v")
            assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
            assert ei.value.details() == "etcdserver: request timed out"
    finally:
        m.stop()
