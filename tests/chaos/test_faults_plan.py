"""The seeded fault schedule and the launcher's command lines (no processes started here)."""
from __future__ import annotations

import pytest

from fastkv.chaos.cluster import EtcdCluster, FastkvCluster
from fastkv.chaos.faults import plan
from fastkv.chaos.kinds import ALL_KINDS


def test_schedule_is_a_function_of_the_seed():
    a = plan(7, 60, list(ALL_KINDS))
    assert a == plan(7, 60, list(ALL_KINDS))
    assert a != plan(8, 60, list(ALL_KINDS))
    assert len(a) >= 10
    assert {f.kind for seed in (7, 8, 9) for f in plan(seed, 60, list(ALL_KINDS))} == set(ALL_KINDS)


@pytest.mark.parametrize("seed", range(20))
def test_faults_are_sequential_and_stop_before_the_end(seed):
    duration = 30
    sched = plan(seed, duration, ["kill", "pause"])
    assert sched
    assert all(f.kind in ("kill", "pause") for f in sched)
    for a, b in zip(sched, sched[1:]):
        assert a.at + a.hold <= b.at
    assert sched[0].at >= 1.0
    assert sched[-1].at + sched[-1].hold <= duration - 0.2 * duration


def test_no_kinds_no_faults():
    assert plan(1, 60, []) == []


def test_members_get_etcds_flags_and_advertise_their_proxy(tmp_path):
    c = EtcdCluster(str(tmp_path), 3, proxied=True)
    names = [m.name for m in c.members]
    assert len(set(names)) == 3
    for m in c.members:
        argv = m.argv
        for flag in ("--name", "--data-dir", "--listen-client-urls", "--advertise-client-urls",
                     "--listen-peer-urls", "--initial-advertise-peer-urls", "--initial-cluster",
                     "--initial-cluster-state", "--initial-cluster-token"):
            assert flag in argv
        assert argv[argv.index("--listen-peer-urls") + 1].endswith(f":{m.peer_port}")
        assert argv[argv.index("--initial-advertise-peer-urls") + 1].endswith(f":{m.advertised_peer_port}")
        assert m.peer_port != m.advertised_peer_port
        initial = argv[argv.index("--initial-cluster") + 1]
        assert initial == ",".join(f"{x.name}=http://127.0.0.1:{x.advertised_peer_port}" for x in c.members)
    assert not any(m.running for m in c.members)


def test_fastkv_target_takes_etcds_cluster_flags(tmp_path):
    c = FastkvCluster(str(tmp_path), 3, proxied=True)
    for m in c.members:
        assert m.argv[1:4] == ["-m", "fastkv.cli", "serve"]
        assert m.argv[m.argv.index("--initial-cluster") + 1].count("=http://127.0.0.1:") == 3
