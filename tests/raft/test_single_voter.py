"""A one-voter cluster (what `fastkv serve` runs) must keep its leader under CheckQuorum."""
import random

from fastkv._native import load
from fastkv.raft.config import Config
from fastkv.raft.rawnode import RawNode


def _drain(node):
    while node.has_ready():
        rd = node.ready()
        node.raft.raft_log  # noqa: B018 - storage below is memory-only
        if rd.entries:
            node.raft.raft_log.storage.append(rd.entries)
        if rd.hard_state is not None:
            node.raft.raft_log.storage.set_hard_state(rd.hard_state)
        assert not rd.messages, "a single voter has no one to talk to"
        node.advance(rd)


def test_single_voter_leader_survives_check_quorum():
    storage = load("raftlog").MemoryStorage()
    node = RawNode(Config(id=1, storage=storage, peers=[1], election_tick=10, heartbeat_tick=1,
                          check_quorum=True, pre_vote=True, rng=random.Random(7)))
    _drain(node)  # the bootstrap conf change must be applied before raft lets us campaign
    node.campaign()
    _drain(node)
    assert node.status().raft_state == 2  # leader
    term = node.status().term
    for _ in range(200):  # 20 election timeouts
        node.tick()
        _drain(node)
    assert node.status().raft_state == 2 and node.status().term == term
