"""The Raft protocol as a pure state machine (Ongaro & Ousterhout; Ongaro's dissertation).

`Raft` only reacts to `step(message)` and `tick()`; everything it wants done (messages to send,
entries to persist, entries to apply) accumulates in its fields and is collected by RawNode into
a Ready. No I/O, clock or global randomness: the election jitter comes from `Config.rng`.

Sections of the paper are cited where a rule comes from: §5.2 election, §5.3 replication, §5.4
safety (§5.4.1 election restriction, §5.4.2 commit only current-term entries by counting), §6
membership changes (one at a time here), dissertation §9.6 PreVote and CheckQuorum, §6.4 ReadIndex,
§3.10 leadership transfer.
"""
from __future__ import annotations

import sys

from fastkv._native import load
from fastkv._native import raftlog_py
from fastkv.raft.config import ConfigError, ProposalDropped
from fastkv.raft.log import RaftLog
from fastkv.raft.progress import PROBE, REPLICATE, SNAPSHOT, VOTE_LOST, VOTE_WON, ProgressTracker
from fastkv.raft.readonly import ReadOnly, ReadState

FOLLOWER = 0
CANDIDATE = 1
LEADER = 2
PRE_CANDIDATE = 3
STATE_NAMES = ("StateFollower", "StateCandidate", "StateLeader", "StatePreCandidate")

CAMPAIGN_PRE_ELECTION = b"CampaignPreElection"
CAMPAIGN_ELECTION = b"CampaignElection"
CAMPAIGN_TRANSFER = b"CampaignTransfer"


class SoftState:
    """Volatile state worth telling the application about (not persisted)."""

    __slots__ = ("lead", "raft_state")

    def __init__(self, lead: int, raft_state: int):
        self.lead = lead
        self.raft_state = raft_state

    def __eq__(self, other):
        return isinstance(other, SoftState) and (self.lead, self.raft_state) == (other.lead, other.raft_state)

    def __repr__(self):
        return f"SoftState(lead={self.lead}, raft_state={STATE_NAMES[self.raft_state]})"


def _storage_errors(storage):
    """The storage's own CompactedError/UnavailableError (each Storage module defines them)."""
    mod = sys.modules.get(type(storage).__module__)
    compacted = getattr(mod, "CompactedError", raftlog_py.CompactedError)
    unavailable = getattr(mod, "UnavailableError", raftlog_py.UnavailableError)
    return compacted, unavailable


class Raft:
    def __init__(self, cfg):
        cfg.validate()
        pb = self.pb = load("raftpb", pure=cfg.pure)
        un = load("unstable", pure=cfg.pure)
        self._msg = pb.Message
        self._entries_size = un.entries_size
        self.id = cfg.id
        self.term = 0
        self.vote = 0
        self.lead = 0
        self.state = FOLLOWER
        self.is_learner = False
        self.raft_log = RaftLog(cfg.storage, un, _storage_errors(cfg.storage),
                                cfg.max_committed_size_per_ready)
        self.max_msg_size = cfg.max_size_per_msg
        self.prs = ProgressTracker(cfg.max_inflight_msgs, cfg.max_inflight_bytes)
        self.msgs: list = []
        self.read_states: list = []
        self.read_only = ReadOnly()
        self.pending_read_index: list = []
        self.lead_transferee = 0
        self.pending_conf_index = 0
        # A leader's broadcast after a proposal or a commit advance is deferred until the
        # application collects a Ready: many proposals between two Readies then share one append
        # per follower. (Messages only ever leave through Ready, so nothing is delayed in effect.)
        self.bcast_pending = False
        self._commit_sent: dict = {}  # follower -> commit index carried by its latest append
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.check_quorum = cfg.check_quorum
        self.pre_vote = cfg.pre_vote
        self.heartbeat_timeout = cfg.heartbeat_tick
        self.election_timeout = cfg.election_tick
        self.randomized_election_timeout = cfg.election_tick
        self.rng = cfg.rng
        self.disable_proposal_forwarding = cfg.disable_proposal_forwarding
        self.logger = cfg.logger
        self._step = self._step_follower

        hs, cs = cfg.storage.initial_state()
        if tuple(cs.voters) or tuple(cs.learners):
            if cfg.peers or cfg.learners:
                raise ConfigError("cannot specify both peers and a ConfState in storage")
            for v in cs.voters:
                self.prs.add(v, 1, learner=False)
            for v in cs.learners:
                self.prs.add(v, 1, learner=True)
            self.is_learner = self.id in self.prs.learners
        if not hs.is_empty():
            self._load_state(hs)
        if cfg.applied > 0:
            self.raft_log.applied_to(cfg.applied)
        self.become_follower(self.term, 0)

    # --- state ---------------------------------------------------------------------------------
    def _load_state(self, hs) -> None:
        if hs.commit < self.raft_log.committed or hs.commit > self.raft_log.last_index():
            raise ConfigError(f"{self.id} state.commit {hs.commit} is out of range "
                              f"[{self.raft_log.committed}, {self.raft_log.last_index()}]")
        self.raft_log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.state)

    def hard_state(self):
        return self.pb.HardState(self.term, self.vote, self.raft_log.committed)

    def promotable(self) -> bool:
        return self.id in self.prs.voters

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = 0
        self.lead = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(self.election_timeout)
        self.lead_transferee = 0
        self.prs.reset_votes()
        last = self.raft_log.last_index()
        for node_id, pr in list(self.prs.progress.items()):
            fresh = type(pr)(last + 1, self.prs.max_inflight, self.prs.max_inflight_bytes, pr.is_learner)
            if node_id == self.id:
                # Our own copy counts towards a quorum only once it is durable (see persisted()).
                fresh.match = self.raft_log.stable_last_index()
            self.prs.progress[node_id] = fresh
        self.pending_conf_index = 0
        self.bcast_pending = False
        self.read_only = ReadOnly()
        self.pending_read_index = []

    def become_follower(self, term: int, lead: int) -> None:
        self._step = self._step_follower
        self._reset(term)
        self.lead = lead
        self.state = FOLLOWER
        if self.logger is not None:
            self.logger(f"{self.id:x} became follower at term {self.term}")

    def become_candidate(self) -> None:
        if self.state == LEADER:
            raise AssertionError("invalid transition [leader -> candidate]")
        self._step = self._step_candidate
        self._reset(self.term + 1)
        self.vote = self.id
        self.state = CANDIDATE
        if self.logger is not None:
            self.logger(f"{self.id:x} became candidate at term {self.term}")

    def become_pre_candidate(self) -> None:
        if self.state == LEADER:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        # A pre-candidate changes neither term nor vote (dissertation §9.6).
        self._step = self._step_candidate
        self.prs.reset_votes()
        self.lead = 0
        self.state = PRE_CANDIDATE
        if self.logger is not None:
            self.logger(f"{self.id:x} became pre-candidate at term {self.term}")

    def become_leader(self) -> None:
        if self.state == FOLLOWER:
            raise AssertionError("invalid transition [follower -> leader]")
        self._step = self._step_leader
        self._reset(self.term)
        self.lead = self.id
        self.state = LEADER
        if self.logger is not None:
            self.logger(f"{self.id:x} became leader at term {self.term}")
        pr = self.prs.progress.get(self.id)
        if pr is not None:
            pr.become_replicate()
            # The leader is always active to itself: without this a one-voter cluster fails its
            # own CheckQuorum and steps down every election timeout (etcd sets it here too).
            pr.recent_active = True
        # Conf changes already in the log may be uncommitted: allow no new one until they apply.
        self.pending_conf_index = self.raft_log.last_index()
        # An entry of our own term, so that committing it commits everything before it (§5.4.2).
        self._append_entry([self.pb.Entry()])

    # --- ticks ---------------------------------------------------------------------------------
    def tick(self) -> None:
        if self.state == LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(self._msg(type=self.pb.MSG_HUP, frm=self.id))

    def _tick_heartbeat(self) -> None:
        pb = self.pb
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(self._msg(type=pb.MSG_CHECK_QUORUM, frm=self.id))
            # A transfer that did not finish within an election timeout is abandoned.
            if self.state == LEADER and self.lead_transferee:
                self.lead_transferee = 0
        if self.state != LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(self._msg(type=pb.MSG_BEAT, frm=self.id))

    # --- sending -------------------------------------------------------------------------------
    def _send(self, m) -> None:
        pb = self.pb
        m.frm = self.id
        t = m.type
        if t in (pb.MSG_VOTE, pb.MSG_VOTE_RESP, pb.MSG_PRE_VOTE, pb.MSG_PRE_VOTE_RESP):
            if m.term == 0:
                raise AssertionError(f"term should be set when sending {t}")
        elif t != pb.MSG_PROP and t != pb.MSG_READ_INDEX:
            # Proposals and read requests forwarded to the leader are local, term-less messages.
            m.term = self.term
        self.msgs.append(m)

    def _maybe_send_append(self, to: int, send_if_empty: bool = True) -> bool:
        pb = self.pb
        pr = self.prs.progress[to]
        if pr.is_paused():
            return False
        log = self.raft_log
        if pr.next < log.first_index():
            # The entries the follower needs were compacted: send the snapshot (§7).
            if not pr.recent_active:
                return False
            snap = log.snapshot()
            if snap.is_empty():
                raise AssertionError("need non-empty snapshot")
            pr.become_snapshot(snap.metadata.index)
            self._send(self._msg(type=pb.MSG_SNAP, to=to, snapshot=snap))
            return True
        ents = log.entries(pr.next, self.max_msg_size)
        if not ents and not send_if_empty:
            return False
        m = self._msg(type=pb.MSG_APP, to=to, index=pr.next - 1, log_term=log.term(pr.next - 1),
                      entries=ents, commit=log.committed)
        self._commit_sent[to] = log.committed
        if ents:
            if pr.state == REPLICATE:
                last = ents[-1].index
                pr.optimistic_update(last)
                pr.inflights.add(last, self._entries_size(ents) if pr.inflights.max_bytes else 0)
            elif pr.state == PROBE:
                pr.probe_sent = True
        self._send(m)
        return True

    def send_append(self, to: int) -> None:
        self._maybe_send_append(to, True)

    def _send_heartbeat(self, to: int, ctx: bytes) -> None:
        # Never tell a follower to commit past what it is known to hold.
        commit = min(self.prs.progress[to].match, self.raft_log.committed)
        self._send(self._msg(type=self.pb.MSG_HEARTBEAT, to=to, commit=commit, context=ctx))

    def bcast_append(self) -> None:
        for node_id in self.prs.progress:
            if node_id != self.id:
                self._maybe_send_append(node_id, True)

    def flush_bcast(self) -> None:
        """Send the deferred broadcast, if any (called by RawNode before building a Ready)."""
        if self.bcast_pending:
            self.bcast_pending = False
            if self.state == LEADER:
                committed = self.raft_log.committed
                sent = self._commit_sent
                for node_id in self.prs.progress:
                    if node_id != self.id:
                        # An empty append only to tell a commit index this follower already got
                        # in this batch would be a wasted message.
                        self._maybe_send_append(node_id, sent.get(node_id) != committed)
                        # Fill the follower's window (replicate state) with what remains.
                        while self._maybe_send_append(node_id, False):
                            pass
        self._commit_sent.clear()

    def bcast_heartbeat(self, ctx: bytes | None = None) -> None:
        if ctx is None:
            ctx = self.read_only.last_pending_request_ctx()
        for node_id in self.prs.progress:
            if node_id != self.id:
                self._send_heartbeat(node_id, ctx)

    def maybe_commit(self) -> bool:
        return self.raft_log.maybe_commit(self.prs.committed(), self.term)

    def _append_entry(self, ents) -> None:
        # The leader's own copy is not counted here: the application may send these entries to
        # the followers before its own fsync (dissertation §10.2.1), so only persisted() counts
        # it. An entry is then committed only once a quorum holds it durably, and committed
        # entries can be applied (and answered) without waiting for the local fsync.
        self.raft_log.append_proposals(self.term, ents)

    def persisted(self, index: int, term: int) -> None:
        """The application made our log durable up to (index, term): as a leader, count our own
        copy (a commit may follow; followers then learn it with the next broadcast)."""
        if self.state != LEADER:
            return
        pr = self.prs.progress.get(self.id)
        if pr is None or self.raft_log.term(index) != term:
            return  # removed, or that entry was overwritten since
        if pr.maybe_update(index) and self._maybe_commit_and_release_reads():
            self.bcast_pending = True

    def _maybe_commit_and_release_reads(self) -> bool:
        if not self.maybe_commit():
            return False
        if self.pending_read_index and self._committed_in_term():
            pending, self.pending_read_index = self.pending_read_index, []
            for m in pending:
                self._handle_read_index(m)
        return True

    def _committed_in_term(self) -> bool:
        return self.raft_log.term(self.raft_log.committed) == self.term

    # --- elections -----------------------------------------------------------------------------
    def campaign(self, kind: bytes) -> None:
        pb = self.pb
        if kind == CAMPAIGN_PRE_ELECTION:
            self.become_pre_candidate()
            vote_msg = pb.MSG_PRE_VOTE
            term = self.term + 1  # the term we would campaign in; ours is unchanged
        else:
            self.become_candidate()
            vote_msg = pb.MSG_VOTE
            term = self.term
        if self._poll(self.id, True) == VOTE_WON:
            # A single-voter cluster wins at once.
            if kind == CAMPAIGN_PRE_ELECTION:
                self.campaign(CAMPAIGN_ELECTION)
            else:
                self.become_leader()
            return
        ctx = CAMPAIGN_TRANSFER if kind == CAMPAIGN_TRANSFER else b""
        last_index, last_term = self.raft_log.last_index(), self.raft_log.last_term()
        for node_id in sorted(self.prs.voters):
            if node_id == self.id:
                continue
            if self.logger is not None:
                self.logger(f"{self.id:x} [logterm: {last_term}, index: {last_index}] sent "
                            f"{pb.MESSAGE_TYPE_NAMES[vote_msg]} request to {node_id:x} at term {self.term}")
            self._send(self._msg(type=vote_msg, to=node_id, term=term, index=last_index,
                                 log_term=last_term, context=ctx))

    def _log_vote(self, verb: str, m, why: str) -> None:
        log = self.raft_log
        name = self.pb.MESSAGE_TYPE_NAMES[m.type]
        prep = "for" if verb == "cast" else "from"
        self.logger(f"{self.id:x} [logterm: {log.last_term()}, index: {log.last_index()}, vote: {self.vote:x}] "
                    f"{verb} {name} {prep} {m.frm:x} [logterm: {m.log_term}, index: {m.index}] at term {self.term}{why}")

    def _poll(self, node_id: int, granted: bool) -> int:
        self.prs.record_vote(node_id, granted)
        return self.prs.tally_votes()[2]

    def _hup(self, kind: bytes) -> None:
        if self.state == LEADER or not self.promotable():
            return
        log = self.raft_log
        if log.committed > log.applied:
            # A conf change committed but not applied could change who may vote: wait for it.
            ents = log.slice(log.applied + 1, log.committed + 1)
            if any(e.type == self.pb.ENTRY_CONF_CHANGE for e in ents):
                if self.logger is not None:
                    self.logger(f"{self.id:x} cannot campaign at term {self.term} since there are "
                                "still pending configuration changes to apply")
                return
        if self.logger is not None:
            self.logger(f"{self.id:x} is starting a new election at term {self.term}")
        self.campaign(kind)

    # --- step ----------------------------------------------------------------------------------
    def step(self, m) -> None:
        pb = self.pb
        t = m.type
        if m.term == 0:
            pass  # local message
        elif m.term > self.term:
            if t == pb.MSG_VOTE or t == pb.MSG_PRE_VOTE:
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = self.check_quorum and self.lead != 0 and self.election_elapsed < self.election_timeout
                if not force and in_lease:
                    # We heard from a leader within the election timeout: ignore the vote
                    # (disruptive server, dissertation §4.2.3).
                    if self.logger is not None:
                        self._log_vote("ignored", m, f": lease is not expired (remaining ticks: "
                                                     f"{self.election_timeout - self.election_elapsed})")
                    return
            if self.logger is not None and t != pb.MSG_PRE_VOTE and not (t == pb.MSG_PRE_VOTE_RESP and not m.reject):
                self.logger(f"{self.id:x} [term: {self.term}] received a {pb.MESSAGE_TYPE_NAMES[t]} "
                            f"message with higher term from {m.frm:x} [term: {m.term}]")
            if t == pb.MSG_PRE_VOTE:
                pass  # never change term for a pre-vote
            elif t == pb.MSG_PRE_VOTE_RESP and not m.reject:
                pass  # the term in a granted pre-vote response is the one we will campaign in
            elif t in (pb.MSG_APP, pb.MSG_HEARTBEAT, pb.MSG_SNAP):
                self.become_follower(m.term, m.frm)
            else:
                self.become_follower(m.term, 0)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and t in (pb.MSG_HEARTBEAT, pb.MSG_APP):
                # A stale leader (e.g. healed from a partition) would never learn of the new term
                # since we ignore it and, with PreVote/CheckQuorum, never bump ours towards it.
                self._send(self._msg(type=pb.MSG_APP_RESP, to=m.frm))
            elif t == pb.MSG_PRE_VOTE:
                self._send(self._msg(type=pb.MSG_PRE_VOTE_RESP, to=m.frm, term=self.term, reject=True))
            return

        if t == pb.MSG_HUP:
            self._hup(CAMPAIGN_PRE_ELECTION if self.pre_vote else CAMPAIGN_ELECTION)
        elif t == pb.MSG_VOTE or t == pb.MSG_PRE_VOTE:
            # No learner check: a candidate asks only members it counts as voters, and we may
            # have been promoted without having applied that change yet (else: no quorum ever).
            resp = pb.MSG_VOTE_RESP if t == pb.MSG_VOTE else pb.MSG_PRE_VOTE_RESP
            can_vote = (self.vote == m.frm or (self.vote == 0 and self.lead == 0)
                        or (t == pb.MSG_PRE_VOTE and m.term > self.term))
            if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term):
                # §5.4.1 election restriction. The response carries the candidate's term so a
                # pre-candidate can tell it from stale answers.
                if self.logger is not None:
                    self._log_vote("cast", m, "")
                self._send(self._msg(type=resp, to=m.frm, term=m.term))
                if t == pb.MSG_VOTE:
                    self.election_elapsed = 0
                    self.vote = m.frm
            else:
                if self.logger is not None:
                    self._log_vote("rejected", m, "")
                self._send(self._msg(type=resp, to=m.frm, term=self.term, reject=True))
        else:
            self._step(m)

    def _step_leader(self, m) -> None:
        pb = self.pb
        t = m.type
        if t == pb.MSG_BEAT:
            self.bcast_heartbeat()
            return
        if t == pb.MSG_CHECK_QUORUM:
            if not self.prs.quorum_active():
                if self.logger is not None:
                    self.logger(f"{self.id:x} stepped down to follower since quorum is not active")
                self.become_follower(self.term, 0)
                return
            for node_id, pr in self.prs.progress.items():
                if node_id != self.id:
                    pr.recent_active = False
            return
        if t == pb.MSG_PROP:
            self._propose(m)
            return
        if t == pb.MSG_READ_INDEX:
            if not self._committed_in_term():
                # The commit index of a new leader is not yet known to be current (§6.4 step 1).
                self.pending_read_index.append(m)
                return
            self._handle_read_index(m)
            return

        pr = self.prs.progress.get(m.frm)
        if pr is None:
            return
        if t == pb.MSG_APP_RESP:
            self._handle_append_response(m, pr)
        elif t == pb.MSG_HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state == REPLICATE and pr.inflights.full():
                pr.inflights.free_first_one()
            if pr.match < self.raft_log.last_index():
                self.send_append(m.frm)
            if not m.context:
                return
            acks = self.read_only.recv_ack(m.frm, m.context)
            if acks is None:
                return
            # The leader's own ack is already in `acks` (added with the request).
            if len(acks & self.prs.voters) < self.prs.quorum():
                return
            for rs in self.read_only.advance(m.context):
                self._answer_read(rs.req, rs.index)
        elif t == pb.MSG_SNAP_STATUS:
            if pr.state != SNAPSHOT:
                return
            if m.reject:
                pr.pending_snapshot = 0
            pr.become_probe()
            # Wait for a heartbeat response (or the follower's append response) before probing.
            pr.probe_sent = True
        elif t == pb.MSG_UNREACHABLE:
            if pr.state == REPLICATE:
                pr.become_probe()
        elif t == pb.MSG_TRANSFER_LEADER:
            if pr.is_learner:
                return
            transferee = m.frm
            if self.lead_transferee:
                if self.lead_transferee == transferee:
                    return
                self.lead_transferee = 0
            if transferee == self.id:
                return
            # Finish within one election timeout or give up (§3.10); proposals are refused meanwhile.
            if self.logger is not None:
                self.logger(f"{self.id:x} [term {self.term}] starts to transfer leadership to {transferee:x}")
            self.election_elapsed = 0
            self.lead_transferee = transferee
            if pr.match == self.raft_log.last_index():
                self._send(self._msg(type=pb.MSG_TIMEOUT_NOW, to=transferee))
            else:
                self.send_append(transferee)

    def _propose(self, m) -> None:
        pb = self.pb
        if not m.entries:
            raise AssertionError("stepped empty MsgProp")
        if self.id not in self.prs.progress:
            raise ProposalDropped("raft proposal dropped: leader was removed from the configuration")
        if self.lead_transferee:
            raise ProposalDropped("raft proposal dropped: leadership transfer in progress")
        ents = m.entries
        for k, e in enumerate(ents):
            if e.type == pb.ENTRY_CONF_CHANGE:
                if self.pending_conf_index > self.raft_log.applied:
                    # One membership change at a time (§6): the previous one has not applied yet.
                    ents[k] = pb.Entry()
                else:
                    self.pending_conf_index = self.raft_log.last_index() + k + 1
        self._append_entry(ents)
        self.bcast_pending = True

    def _handle_read_index(self, m) -> None:
        if self.prs.quorum() == 1 and self.id in self.prs.voters:
            self._answer_read(m, self.raft_log.committed)
            return
        self.read_only.add_request(self.raft_log.committed, m)
        self.read_only.recv_ack(self.id, m.context)
        self.bcast_heartbeat(m.context)

    def _answer_read(self, req, index: int) -> None:
        if req.frm in (0, self.id):
            self.read_states.append(ReadState(index, req.context))
        else:
            self._send(self._msg(type=self.pb.MSG_READ_INDEX_RESP, to=req.frm, index=index,
                                 context=req.context))

    def _handle_append_response(self, m, pr) -> None:
        pr.recent_active = True
        log = self.raft_log
        if m.reject:
            # Fast backtracking: the follower hinted (reject_hint, log_term) = its last entry with
            # a term <= the one we probed; skip every index of ours with a larger term.
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe = log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == REPLICATE:
                    pr.become_probe()
                self.send_append(m.frm)
            return
        old_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == PROBE:
            pr.become_replicate()
        elif pr.state == SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe()
        elif pr.state == REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit_and_release_reads():
            self.bcast_pending = True  # followers learn the new commit index
        elif old_paused:
            self.send_append(m.frm)
        # Drain what the flow control now allows (no empty appends).
        while self._maybe_send_append(m.frm, False):
            pass
        if m.frm == self.lead_transferee and pr.match == log.last_index():
            self._send(self._msg(type=self.pb.MSG_TIMEOUT_NOW, to=m.frm))

    def _step_candidate(self, m) -> None:
        pb = self.pb
        t = m.type
        my_resp = pb.MSG_PRE_VOTE_RESP if self.state == PRE_CANDIDATE else pb.MSG_VOTE_RESP
        if t == pb.MSG_PROP:
            raise ProposalDropped("raft proposal dropped: no leader")
        if t == pb.MSG_APP:
            self.become_follower(m.term, m.frm)
            self._handle_append_entries(m)
        elif t == pb.MSG_HEARTBEAT:
            self.become_follower(m.term, m.frm)
            self._handle_heartbeat(m)
        elif t == pb.MSG_SNAP:
            self.become_follower(m.term, m.frm)
            self._handle_snapshot(m)
        elif t == my_resp:
            result = self._poll(m.frm, not m.reject)
            if result == VOTE_WON:
                if self.state == PRE_CANDIDATE:
                    self.campaign(CAMPAIGN_ELECTION)
                else:
                    self.become_leader()
                    self.bcast_append()
            elif result == VOTE_LOST:
                # A PreVoteResp carries a future term; reset to our own term.
                self.become_follower(self.term, 0)

    def _step_follower(self, m) -> None:
        pb = self.pb
        t = m.type
        if t == pb.MSG_PROP:
            if self.lead == 0:
                raise ProposalDropped("raft proposal dropped: no leader")
            if self.disable_proposal_forwarding:
                raise ProposalDropped("raft proposal dropped: forwarding disabled")
            m.to = self.lead
            self._send(m)
        elif t == pb.MSG_APP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_append_entries(m)
        elif t == pb.MSG_HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_heartbeat(m)
        elif t == pb.MSG_SNAP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_snapshot(m)
        elif t == pb.MSG_TRANSFER_LEADER:
            if self.lead == 0:
                return
            m.to = self.lead
            self._send(m)
        elif t == pb.MSG_TIMEOUT_NOW:
            if self.promotable():
                # Leadership transfer never uses PreVote: the old leader asked us to campaign.
                self._hup(CAMPAIGN_TRANSFER)
        elif t == pb.MSG_READ_INDEX:
            if self.lead == 0:
                return  # no leader: the read is dropped; the caller retries
            m.to = self.lead
            self._send(m)
        elif t == pb.MSG_READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    # --- follower handlers ---------------------------------------------------------------------
    def _handle_append_entries(self, m) -> None:
        pb = self.pb
        log = self.raft_log
        if m.index < log.committed:
            self._send(self._msg(type=pb.MSG_APP_RESP, to=m.frm, index=log.committed))
            return
        mlast = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if mlast >= 0:
            self._send(self._msg(type=pb.MSG_APP_RESP, to=m.frm, index=mlast))
            return
        hint = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
        self._send(self._msg(type=pb.MSG_APP_RESP, to=m.frm, index=m.index, reject=True,
                             reject_hint=hint, log_term=log.term(hint)))

    def _handle_heartbeat(self, m) -> None:
        self.raft_log.commit_to(m.commit)
        self._send(self._msg(type=self.pb.MSG_HEARTBEAT_RESP, to=m.frm, context=m.context))

    def _handle_snapshot(self, m) -> None:
        if self.restore(m.snapshot):
            idx = self.raft_log.last_index()
        else:
            idx = self.raft_log.committed
        self._send(self._msg(type=self.pb.MSG_APP_RESP, to=m.frm, index=idx))

    def restore(self, snap) -> bool:
        """Install the leader's snapshot unless we already have its entries (§7)."""
        meta = snap.metadata
        if meta.index <= self.raft_log.committed:
            return False
        if self.raft_log.match_term(meta.index, meta.term):
            # We hold the snapshot's last entry: just fast-forward the commit index.
            self.raft_log.commit_to(meta.index)
            return False
        self.raft_log.restore(snap)
        prs = self.prs
        prs.voters, prs.learners, prs.progress = set(), set(), {}
        last = self.raft_log.last_index()
        for v in meta.conf_state.voters:
            prs.add(v, last + 1, learner=False)
        for v in meta.conf_state.learners:
            prs.add(v, last + 1, learner=True)
        if self.id in prs.progress:
            prs.progress[self.id].match = last
        self.is_learner = self.id in prs.learners
        if self.logger is not None:
            self.logger(f"{self.id:x} [commit: {self.raft_log.committed}] restored snapshot "
                        f"[index: {meta.index}, term: {meta.term}]")
        return True

    # --- membership ----------------------------------------------------------------------------
    def apply_conf_change(self, cc):
        """Apply one committed conf change to the configuration; returns the new ConfState."""
        pb = self.pb
        before = (set(self.prs.voters), set(self.prs.learners)) if self.logger is not None else None
        if cc.node_id == 0:
            self.pending_conf_index = 0
        elif cc.type == pb.CONF_CHANGE_ADD_NODE:
            self._add_node(cc.node_id, learner=False)
        elif cc.type == pb.CONF_CHANGE_ADD_LEARNER_NODE:
            self._add_node(cc.node_id, learner=True)
        elif cc.type == pb.CONF_CHANGE_REMOVE_NODE:
            self._remove_node(cc.node_id)
        elif cc.type == pb.CONF_CHANGE_UPDATE_NODE:
            pass  # peer URLs are the application's business
        else:
            raise ValueError(f"unexpected conf change type {cc.type}")
        if before is not None and before != (set(self.prs.voters), set(self.prs.learners)):
            self.logger(f"{self.id:x} switched to configuration voters=({' '.join('%x' % v for v in sorted(self.prs.voters))})"
                        + (f" learners=({' '.join('%x' % v for v in sorted(self.prs.learners))})" if self.prs.learners else ""))
        return self.prs.conf_state(pb.ConfState)

    def _add_node(self, node_id: int, learner: bool) -> None:
        pr = self.prs.progress.get(node_id)
        if pr is not None:
            if pr.is_learner == learner:
                return  # replayed or duplicate change
            if learner:
                return  # demoting a voter to learner is not supported: ignore, as etcd 3.4 does
        self.prs.add(node_id, self.raft_log.last_index() + 1, learner)
        if node_id == self.id:
            self.is_learner = learner
        # A new member counts as active so CheckQuorum does not step the leader down at once.
        self.prs.progress[node_id].recent_active = True

    def _remove_node(self, node_id: int) -> None:
        self.prs.remove(node_id)
        if node_id == self.id:
            self.is_learner = False
            if self.state == LEADER:
                # A leader outside the configuration cannot propose, yet its heartbeats would
                # keep the others from electing a successor: step down (never to campaign again).
                self.become_follower(self.term, 0)
                return
        if not self.prs.voters:
            return
        # The quorum may be smaller now: entries may have become committed.
        if self.state == LEADER:
            if self._maybe_commit_and_release_reads():
                self.bcast_append()
            if self.lead_transferee == node_id:
                self.lead_transferee = 0
