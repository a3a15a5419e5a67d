"""The checks are not vacuous: break one rule of the protocol on purpose and the simulator or the
recorded scenarios must notice. (Each mutation is undone by monkeypatch after its test.)"""
from __future__ import annotations

import pathlib

from fastkv._native import raftlog_py
from fastkv.raft import log as raft_log
from fastkv.raft import raft as raft_core
from fastkv.server import node as node_mod

from .scenario import run_file
from .sim import Cluster, SimOptions
from .test_sim import PROFILES

TESTDATA = pathlib.Path(__file__).parent / "testdata"


def sim_catches(profile: str, seeds) -> str:
    for seed in seeds:
        try:
            Cluster(seed, SimOptions(**dict(PROFILES[profile], pure=True))).run()
        except AssertionError as exc:  # SimFailure, or an invariant assertion inside the core
            return str(exc)
    return ""


def test_sim_catches_voting_for_a_stale_log(monkeypatch):
    # Drop §5.4.1 (the election restriction): leaders may lack committed entries.
    monkeypatch.setattr(raft_log.RaftLog, "is_up_to_date", lambda self, index, term: True)
    found = sim_catches("lossy", range(20))
    assert "seed=" in found and ("lacks entry" in found or "applied" in found), found


def test_sim_catches_forgetting_the_hard_state(monkeypatch):
    # Persist entries but not term/vote/commit: a restarted member forgets its vote.
    monkeypatch.setattr(raftlog_py.MemoryStorage, "set_hard_state", lambda self, hs: None)
    assert sim_catches("crashy", range(20))


def test_scenario_catches_counting_old_term_entries(monkeypatch):
    # Drop §5.4.2: commit any index replicated on a quorum, whatever its term.
    def maybe_commit(self, max_index, term):
        if max_index > self.committed:
            self.commit_to(max_index)
            return True
        return False

    monkeypatch.setattr(raft_log.RaftLog, "maybe_commit", maybe_commit)
    _, _, mismatches = run_file((TESTDATA / "commit_rule.txt").read_text())
    assert mismatches


def test_scenario_catches_reads_without_a_quorum_round(monkeypatch):
    # Answer ReadIndex at once instead of confirming leadership with a heartbeat round.
    monkeypatch.setattr(raft_core.Raft, "_handle_read_index",
                        lambda self, m: self._answer_read(m, self.raft_log.committed))
    _, _, mismatches = run_file((TESTDATA / "read_index.txt").read_text())
    assert any(cmd == "stabilize" and "ReadState" in got for cmd, _, got in mismatches)



def test_sim_catches_followers_acknowledging_before_their_fsync(monkeypatch):
    # The production driver lets only a leader send before its own durable write. If followers
    # did too, their append acknowledgements would promise entries a crash mid-write then loses,
    # and an entry counted committed could vanish from every log that wins the next election.
    begin = node_mod.NodeDriver.begin

    def begin_and_send_everything_at_once(self):
        rd = begin(self)
        if rd is not None and not self._sent_early and rd.messages:
            self.send(rd.messages)
            rd.messages = []
        return rd

    monkeypatch.setattr(node_mod.NodeDriver, "begin", begin_and_send_everything_at_once)
    assert sim_catches("crashy", range(80))
