"""RawNode: the application's handle on one raft member, and the Ready batch it hands back.

The application (fastkv's server/raftnode.py, or the simulator in tests) runs one loop:

    while True:
        feed inputs: node.tick() on a timer, node.step(msg) for each message received,
                     node.propose(data) / read_index(ctx) / ... for client requests
        if node.has_ready():
            rd = node.ready()
            1. persist, in one durable write: rd.snapshot (if any), then rd.entries, then
               rd.hard_state (if any) -- fsync it when rd.must_sync;
               then make them visible in the Storage the node reads (MemoryStorage.apply_snapshot,
               .append(rd.entries), .set_hard_state(rd.hard_state));
            2. only THEN send rd.messages (a vote or an append acknowledgement promises that
               what it acknowledges survives a crash);
            3. apply rd.committed_entries in order (an ENTRY_CONF_CHANGE entry: decode it and call
               node.apply_conf_change(cc)); serve rd.read_states once applied >= their index;
            4. node.advance(rd).

The node is not thread-safe and has no clock: the caller owns time (ticks) and I/O.
"""
from __future__ import annotations

import copy

from fastkv.raft.config import ConfigError, StepLocalMessage, StepPeerNotFound
from fastkv.raft.raft import LEADER, STATE_NAMES, Raft


class Ready:
    """Everything the application must do, in this order, before calling RawNode.advance(rd).

    soft_state        SoftState(lead, raft_state) when it changed since the last Ready, else None.
                      Informational; never persisted.
    hard_state        HardState(term, vote, commit) when it changed, else None. Persist it with
                      `entries` BEFORE sending `messages`.
    entries           entries to append to stable storage BEFORE sending `messages`. They may
                      replace a conflicting suffix of what was stored (truncate, then append).
    snapshot          a snapshot to persist (and to restore the state machine from) BEFORE the
                      entries, or None.
    committed_entries entries to apply to the state machine, in order. They were persisted by an
                      earlier Ready or are part of this one's `entries` (persist first).
    messages          messages to send AFTER the persistence above. Delivery may fail, reorder or
                      duplicate: raft tolerates all of that.
    read_states       ReadState(index, request_ctx) answers to read_index(); the read is
                      linearizable once the applied index reaches `index`.
    must_sync         True when entries, term or vote changed: the write must be fsynced. (A new
                      commit index alone need not be: it can be recovered from peers.)
    """

    __slots__ = ("soft_state", "hard_state", "entries", "snapshot", "committed_entries",
                 "messages", "read_states", "must_sync")

    def __init__(self):
        self.soft_state = None
        self.hard_state = None
        self.entries = []
        self.snapshot = None
        self.committed_entries = []
        self.messages = []
        self.read_states = []
        self.must_sync = False

    def applied_cursor(self) -> int:
        if self.committed_entries:
            return self.committed_entries[-1].index
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return 0

    def __repr__(self):
        return (f"Ready(soft={self.soft_state}, hard={self.hard_state}, entries={len(self.entries)}, "
                f"snapshot={self.snapshot}, committed={len(self.committed_entries)}, "
                f"messages={len(self.messages)}, reads={self.read_states}, must_sync={self.must_sync})")


class Status:
    __slots__ = ("id", "term", "vote", "commit", "applied", "lead", "raft_state", "progress",
                 "lead_transferee", "voters", "learners")

    def __repr__(self):
        return (f"Status(id={self.id}, term={self.term}, lead={self.lead}, "
                f"state={STATE_NAMES[self.raft_state]}, commit={self.commit}, applied={self.applied})")


class RawNode:
    """One raft member driven by the application (see the module docstring for the loop).

    Construction: with `cfg.peers` and an empty storage, the node bootstraps a new cluster by
    appending one ADD_NODE conf change per peer at term 1 (already committed); the first Ready
    carries them to persist and apply like any other entries, so a restart needs only storage.
    """

    def __init__(self, cfg):
        self.raft = r = Raft(cfg)
        pb = self.pb = r.pb
        storage = cfg.storage
        hs, _ = storage.initial_state()
        fresh = storage.last_index() == 0 and hs.is_empty()
        if cfg.peers or cfg.learners:
            if not fresh:
                raise ConfigError("cannot bootstrap peers over a non-empty storage")
            r.become_follower(1, 0)
            ents = []
            members = [(p, pb.CONF_CHANGE_ADD_NODE) for p in cfg.peers or ()]
            members += [(p, pb.CONF_CHANGE_ADD_LEARNER_NODE) for p in cfg.learners or ()]
            for k, (node_id, typ) in enumerate(members):
                data = pb.encode_conf_change(pb.ConfChange(typ, node_id))
                ents.append(pb.Entry(1, k + 1, pb.ENTRY_CONF_CHANGE, data))
            r.raft_log.append(ents)
            r.raft_log.committed = len(ents)
            for node_id, typ in members:
                r.apply_conf_change(pb.ConfChange(typ, node_id))
            self._prev_hard = pb.HardState()  # so the first Ready carries the bootstrap state
        else:
            self._prev_hard = r.hard_state()
        self._prev_soft = r.soft_state()

    # --- inputs ----------------------------------------------------------------------------------
    def tick(self) -> None:
        """Advance the logical clock by one tick (elections, heartbeats, CheckQuorum)."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (PreVote first when configured)."""
        self.raft.step(self.pb.Message(type=self.pb.MSG_HUP))

    def propose(self, data: bytes) -> None:
        """Propose one normal entry. Raises ProposalDropped when it cannot be appended now."""
        pb = self.pb
        self.raft.step(pb.Message(type=pb.MSG_PROP, frm=self.raft.id, entries=[pb.Entry(data=data)]))

    def propose_batch(self, datas) -> None:
        """Propose several normal entries in one message (one append, one broadcast)."""
        pb = self.pb
        Entry = pb.Entry
        self.raft.step(pb.Message(type=pb.MSG_PROP, frm=self.raft.id,
                                  entries=[Entry(data=d) for d in datas]))

    def propose_conf_change(self, cc) -> None:
        """Propose a membership change; at most one is pending at a time (a second one proposed
        before the first applied is replaced by an empty entry)."""
        pb = self.pb
        e = pb.Entry(type=pb.ENTRY_CONF_CHANGE, data=pb.encode_conf_change(cc))
        self.raft.step(pb.Message(type=pb.MSG_PROP, frm=self.raft.id, entries=[e]))

    def apply_conf_change(self, cc):
        """Apply a committed conf change (called while applying its entry); returns ConfState."""
        return self.raft.apply_conf_change(cc)

    def step(self, m) -> None:
        """Feed a message received from a peer."""
        pb = self.pb
        if m.type in (pb.MSG_HUP, pb.MSG_BEAT, pb.MSG_UNREACHABLE, pb.MSG_SNAP_STATUS,
                      pb.MSG_CHECK_QUORUM):
            raise StepLocalMessage()
        if m.frm not in self.raft.prs.progress and m.type in (
                pb.MSG_APP_RESP, pb.MSG_VOTE_RESP, pb.MSG_HEARTBEAT_RESP, pb.MSG_UNREACHABLE,
                pb.MSG_PRE_VOTE_RESP):
            raise StepPeerNotFound()
        self.raft.step(m)

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read point; the answer arrives as a ReadState with the same
        context in a later Ready (or never, if leadership is lost: retry with a new context)."""
        pb = self.pb
        self.raft.step(pb.Message(type=pb.MSG_READ_INDEX, frm=self.raft.id, context=context))

    def transfer_leadership(self, to: int) -> None:
        """Ask the leader to hand leadership to `to` (a voter)."""
        pb = self.pb
        self.raft.step(pb.Message(type=pb.MSG_TRANSFER_LEADER, frm=to))

    def report_unreachable(self, node_id: int) -> None:
        pb = self.pb
        self.raft.step(pb.Message(type=pb.MSG_UNREACHABLE, frm=node_id))

    def report_snapshot(self, node_id: int, failed: bool) -> None:
        """The transport says whether the snapshot sent to node_id arrived."""
        pb = self.pb
        self.raft.step(pb.Message(type=pb.MSG_SNAP_STATUS, frm=node_id, reject=failed))

    # --- outputs ---------------------------------------------------------------------------------
    def has_ready(self) -> bool:
        r = self.raft
        log = r.raft_log
        if r.msgs or r.bcast_pending or log.unstable.entries or r.read_states:
            return True
        if log.unstable.snapshot is not None or log.has_next_ents():
            return True
        if r.soft_state() != self._prev_soft:
            return True
        hs = r.hard_state()
        return not hs.is_empty() and hs != self._prev_hard

    def ready(self) -> Ready:
        """Collect the current batch. Pass it back to advance() once handled (see Ready)."""
        r = self.raft
        r.flush_bcast()
        log = r.raft_log
        rd = Ready()
        rd.entries = log.unstable_entries()
        rd.committed_entries = log.next_ents()
        rd.messages, r.msgs = r.msgs, []
        rd.read_states, r.read_states = r.read_states, []
        rd.snapshot = log.unstable.snapshot
        soft = r.soft_state()
        if soft != self._prev_soft:
            rd.soft_state = soft
            self._prev_soft = soft
        hs = r.hard_state()
        prev = self._prev_hard
        if hs != prev:
            rd.hard_state = hs
        rd.must_sync = bool(rd.entries) or hs.term != prev.term or hs.vote != prev.vote
        return rd

    def advance(self, rd: Ready) -> None:
        """The application handled `rd` (persisted, sent, applied)."""
        log = self.raft.raft_log
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        applied = rd.applied_cursor()
        if applied > 0:
            log.applied_to(applied)
        if rd.entries:
            e = rd.entries[-1]
            log.stable_to(e.index, e.term)
            self.raft.persisted(e.index, e.term)
        if rd.snapshot is not None:
            log.stable_snap_to(rd.snapshot.metadata.index)

    def status(self) -> Status:
        r = self.raft
        s = Status()
        s.id, s.term, s.vote, s.lead, s.raft_state = r.id, r.term, r.vote, r.lead, r.state
        s.commit, s.applied = r.raft_log.committed, r.raft_log.applied
        # Copies: the caller may keep or inspect them without touching the leader's state.
        s.progress = {k: copy.copy(v) for k, v in r.prs.progress.items()} if r.state == LEADER else {}
        s.lead_transferee = r.lead_transferee
        s.voters, s.learners = sorted(r.prs.voters), sorted(r.prs.learners)
        return s
