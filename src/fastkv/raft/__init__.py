"""Raft consensus as a pure, deterministic state machine (see rawnode.py for the Ready loop).

    from fastkv.raft import Config, RawNode
    node = RawNode(Config(id=1, peers=[1, 2, 3], storage=MemoryStorage(), rng=random.Random(seed)))
"""
from fastkv.raft.config import (Config, ConfigError, ProposalDropped, RaftError, StepLocalMessage,
                                StepPeerNotFound)
from fastkv.raft.progress import PROBE, REPLICATE, SNAPSHOT
from fastkv.raft.raft import (CANDIDATE, FOLLOWER, LEADER, PRE_CANDIDATE, STATE_NAMES, Raft,
                              SoftState)
from fastkv.raft.rawnode import RawNode, Ready, Status
from fastkv.raft.readonly import ReadState

__all__ = [
    "Config", "ConfigError", "ProposalDropped", "RaftError", "StepLocalMessage", "StepPeerNotFound",
    "PROBE", "REPLICATE", "SNAPSHOT", "FOLLOWER", "CANDIDATE", "LEADER", "PRE_CANDIDATE",
    "STATE_NAMES", "Raft", "SoftState", "RawNode", "Ready", "Status", "ReadState",
]
