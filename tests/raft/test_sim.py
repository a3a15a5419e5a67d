"""Seeded cluster simulation: safety checked on every tick, liveness after healing (see sim.py).

A failure message starts with `seed=S`; replay it with `pytest tests/raft/test_sim.py --seed S`
(or FASTKV_RAFT_SEED=S). `--seeds N` runs N seeds per profile (thousands locally).
"""
from __future__ import annotations

import pytest

from .sim import Cluster, SimOptions

# Fault profiles: each stresses a different part of the protocol.
PROFILES = {
    # message loss, duplication and reordering with partitions and a few crashes
    "lossy": dict(drop=0.1, duplicate=0.05, max_delay=3, crash_rate=0.005, restart_rate=0.05),
    # frequent crashes and restarts: only persisted state survives
    "crashy": dict(drop=0.02, crash_rate=0.02, restart_rate=0.1, partition_rate=0.01),
    # log compaction: lagging and restarted members catch up by snapshot
    "snapshots": dict(snapshot_every=10, snapshot_keep=3, crash_rate=0.008, restart_rate=0.05,
                      drop=0.05),
    # membership changes (add learner, promote, remove) under faults, with snapshots
    "membership": dict(conf_change_rate=0.03, snapshot_every=15, crash_rate=0.003,
                       restart_rate=0.05, drop=0.05, transfer_rate=0.01),
    # five voters, no PreVote-friendly quiet: many partitions
    "five": dict(voters=5, partition_rate=0.04, drop=0.05, crash_rate=0.004, restart_rate=0.05),
}


def run_seeds(profile: str, seeds, **extra):
    for seed in seeds:
        # Odd seeds run the compiled log/codec, even seeds the pure-Python twins.
        opts = dict(PROFILES[profile], pure=seed % 2 == 0, **extra)
        Cluster(seed, SimOptions(**opts)).run()


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profile_safe_and_live(profile, sim_seeds):
    run_seeds(profile, sim_seeds)


def test_same_seed_replays_exactly():
    def trace(seed):
        c = Cluster(seed, SimOptions(**PROFILES["membership"])).run()
        return c.committed, c.leader_of_term, c.log[-50:]

    assert trace(7) == trace(7)
    assert trace(7) != trace(8)


def test_faults_happen_and_progress_is_made():
    """The profiles are not vacuous: over a few seeds each one drops and duplicates messages,
    partitions, crashes, elects several leaders, commits and serves reads; the snapshot and
    membership profiles install snapshots and apply membership changes."""
    import collections

    for profile in sorted(PROFILES):
        total = collections.Counter()
        committed = 0
        for seed in range(4):
            c = Cluster(seed, SimOptions(**dict(PROFILES[profile], pure=seed % 2 == 0))).run()
            total.update(c.stats)
            committed += len(c.committed)
        assert committed > 100, (profile, committed)
        for what in ("dropped", "partitions", "crashes", "reads_served"):
            assert total[what] > 0, (profile, what, total)
        assert total["leaders_elected"] >= 8, (profile, total)
        # the driver's disk timing is exercised: crashes land in the middle of durable writes,
        # and the real state machines applied client puts
        assert total["crashes_mid_write"] > 0 and total["final_revision"] > 4, (profile, total)
        if profile in ("snapshots", "membership"):
            assert total["snapshots_installed"] > 0, (profile, total)
        if profile == "membership":
            assert total["conf_changes_applied"] >= 4, (profile, total)
