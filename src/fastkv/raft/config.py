"""Config of one raft member, and the errors the core raises to its caller."""
from __future__ import annotations

import random


class RaftError(Exception):
    pass


class ProposalDropped(RaftError):
    """The proposal was not appended (no leader known, leadership transfer, removed leader...).
    The caller should retry later; nothing was written."""

    def __init__(self, msg="raft proposal dropped"):
        super().__init__(msg)


class StepLocalMessage(RaftError):
    def __init__(self, msg="raft: cannot step raft local message"):
        super().__init__(msg)


class StepPeerNotFound(RaftError):
    def __init__(self, msg="raft: cannot step as peer not found"):
        super().__init__(msg)


class ConfigError(RaftError, ValueError):
    pass


class Config:
    """Parameters of one member.

    id              this member's id (non-zero).
    storage         the stable log (Storage protocol of fastkv._native.raftlog_py).
    peers, learners initial voters/learners when bootstrapping a brand-new cluster (empty storage);
                    must be None when restarting (the membership then comes from storage).
    election_tick   ticks without hearing from a leader before a follower campaigns; the actual
                    timeout is drawn from [election_tick, 2*election_tick) with `rng`.
    heartbeat_tick  ticks between leader heartbeats (must be < election_tick).
    applied         last index the application applied (restart: its snapshot index).
    max_size_per_msg  byte bound of the entries in one append message (at least one entry is sent).
    max_inflight_msgs append messages in flight per follower in the replicate state.
    max_inflight_bytes  byte bound of the entries in flight per follower (0 = none).
    max_committed_size_per_ready  byte bound of Ready.committed_entries (None = none).
    pre_vote        run a pre-election first so a partitioned member rejoining does not bump terms.
    check_quorum    a leader steps down after an election timeout without hearing from a quorum,
                    and members ignore votes while they hear from a leader (leader lease).
    rng             a random.Random: the only source of randomness (election timeouts). Defaults
                    to random.Random(id) so that a member is deterministic even when not given one.
    pure            True forces the pure-Python log/codec twins, False demands the compiled ones,
                    None follows fastkv._native.load's default.
    logger          a callable taking one line of text, told of the core's decisions in etcd-raft's
                    words ("1 became leader at term 5", "3 [logterm: 1, index: 4, vote: 0] rejected
                    MsgVote from 2 ..."); None keeps the core silent. The server hands it a logging
                    call, the scenario tests record the lines.
    """

    def __init__(self, id: int, storage, peers=None, learners=None, election_tick: int = 10,
                 heartbeat_tick: int = 1, applied: int = 0, max_size_per_msg: int = 1 << 20,
                 max_inflight_msgs: int = 512, max_inflight_bytes: int = 0,
                 max_committed_size_per_ready=None, pre_vote: bool = True,
                 check_quorum: bool = True, rng: random.Random | None = None, pure=None,
                 disable_proposal_forwarding: bool = False, logger=None):
        self.id = id
        self.storage = storage
        self.peers = list(peers) if peers else None
        self.learners = list(learners) if learners else None
        self.election_tick = election_tick
        self.heartbeat_tick = heartbeat_tick
        self.applied = applied
        self.max_size_per_msg = max_size_per_msg
        self.max_inflight_msgs = max_inflight_msgs
        self.max_inflight_bytes = max_inflight_bytes
        self.max_committed_size_per_ready = max_committed_size_per_ready
        self.pre_vote = pre_vote
        self.check_quorum = check_quorum
        self.rng = rng if rng is not None else random.Random(id)
        self.pure = pure
        self.disable_proposal_forwarding = disable_proposal_forwarding
        self.logger = logger

    def validate(self) -> None:
        if self.id == 0:
            raise ConfigError("cannot use none as id")
        if self.heartbeat_tick <= 0:
            raise ConfigError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigError("election tick must be greater than heartbeat tick")
        if self.storage is None:
            raise ConfigError("storage cannot be nil")
        if self.max_inflight_msgs <= 0:
            raise ConfigError("max inflight messages must be greater than 0")
