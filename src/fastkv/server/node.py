"""The node driver: the one Ready loop of a raft member, with its I/O handed in from outside.

Production (server/raftnode.py: uvloop, a WAL worker thread, the peer transport) and the simulator
(tests/raft/sim.py: a seeded network and a simulated disk) run this same code; only the wiring
differs, and the wiring is small. One Ready is handled in two phases around the durable write,
following etcd's raftNode (etcdserver/raft.go):

    rd = driver.begin()          leader: send rd.messages now (dissertation §10.2.1: its own fsync
                                 runs in parallel with the followers'); apply the committed entries
                                 already durable here (they need not wait behind this fsync)
    store.save(rd...)            the durable write: snapshot, entries, hard state; fsynced when
                                 rd.must_sync. Production runs it in a worker thread, during which
                                 the loop keeps taking messages and queuing proposals.
    driver.finish(rd)            make the write visible to raft (MemoryStorage); install a
                                 received snapshot; followers and candidates send now (their votes
                                 and acks promise durability); apply the rest of the committed
                                 entries; hand out read states; advance.

Why committed entries are split at the durable index: the raft core counts the leader's own copy
only once persisted (Raft.persisted), so "committed" means durable on a quorum, but this member may
still lack an entry on its own disk (the followers' acks made the quorum). Applying it before the
local fsync could let the backend commit a state the WAL cannot replay after a crash.
"""
from __future__ import annotations

from typing import Callable, Protocol

from fastkv.raft.raft import LEADER


class LogStore(Protocol):
    """Raft's stable storage. `storage` is what the raft core reads (a MemoryStorage)."""

    storage: object

    def save(self, hard_state, entries: list, snapshot, must_sync: bool) -> None:
        """Write durably (fsynced when must_sync; snapshot first, then entries, then hard state).
        May run off the loop thread: it must not touch `storage`."""

    def saved(self, hard_state, entries: list, snapshot) -> None:
        """On the loop thread, after save(): make the write visible in `storage`."""


def store_in(storage, hard_state, entries, snapshot) -> None:
    """A Ready's durable part into a MemoryStorage, in raft's order: snapshot, entries, hard state."""
    if snapshot is not None:
        storage.apply_snapshot(snapshot)
    if entries:
        storage.append(entries)
    if hard_state is not None:
        storage.set_hard_state(hard_state)


class MemoryLogStore:
    """A LogStore with no durability: the log lives only in the MemoryStorage raft reads. For
    benchmarks of the raft core and tools; never for a member whose acknowledgements matter."""

    def __init__(self, storage):
        self.storage = storage

    def save(self, hard_state, entries, snapshot, must_sync: bool) -> None:
        pass

    def saved(self, hard_state, entries, snapshot) -> None:
        store_in(self.storage, hard_state, entries, snapshot)


class NodeSink(Protocol):
    """What the driver hands up to the member's state machine (the server, or the sim's member)."""

    def on_soft_state(self, was_leader: bool, is_leader: bool, leader: int) -> None: ...
    def apply_snapshot(self, snapshot) -> None: ...
    def apply(self, entries: list) -> None: ...
    def on_read_states(self, states: list) -> None: ...
    def on_dropped(self, batch: list, exc: Exception) -> None: ...


class NodeDriver:
    """Owns one RawNode. Not thread-safe: every call on the loop thread (or the sim's one thread)."""

    def __init__(self, raw, store: LogStore, send: Callable[[list], None], sink: NodeSink):
        self.raw = raw
        self.store = store
        self.send = send
        self.sink = sink
        self.member_id = raw.raft.id
        self.is_leader = False
        self.leader = 0
        self.term = 0
        self.commit_index = 0
        # last log index known durable on this member (entries of committed terms never change)
        self.durable_index = store.storage.last_index()
        self._proposals: list = []
        self._read_ctxs: list = []
        self._in_flight = None  # the Ready between begin() and finish()
        self._sent_early = False  # its messages went out in begin() (we led when it was built)
        self._applied_early = 0   # how many of its committed entries begin() applied

    # --- inputs ---------------------------------------------------------------------------------
    def propose(self, data: bytes) -> None:
        """Queue a proposal; queued ones go to raft in one batch at the next begin()."""
        self._proposals.append(data)

    def read_index(self, ctx: bytes) -> None:
        self._read_ctxs.append(ctx)

    def step(self, msg) -> None:
        """A message from a peer (may arrive while a Ready is being persisted)."""
        self.raw.step(msg)

    def tick(self) -> None:
        self.raw.tick()

    @property
    def busy(self) -> bool:
        return self._in_flight is not None

    def has_work(self) -> bool:
        return bool(self._proposals or self._read_ctxs) or self.raw.has_ready()

    # --- the Ready, in two phases ----------------------------------------------------------------
    def begin(self):
        """Take the next Ready (None when there is nothing to do) and do what may precede the
        durable write. The caller then runs store.save() if needs_persist(rd), then finish(rd)."""
        if self._in_flight is not None:
            raise RuntimeError("begin() called twice without finish()")
        raw = self.raw
        self._feed(raw)
        if not raw.has_ready():
            return None
        rd = raw.ready()
        self._in_flight = rd
        if rd.hard_state is not None:
            self.term = rd.hard_state.term
            self.commit_index = rd.hard_state.commit
        if rd.soft_state is not None:
            was = self.is_leader
            self.leader = rd.soft_state.lead
            self.is_leader = rd.soft_state.raft_state == LEADER
            self.sink.on_soft_state(was, self.is_leader, self.leader)
        # the role at the time the Ready was built decides (etcd's `islead`)
        self._sent_early = self.is_leader
        if self._sent_early and rd.messages:
            self.send(rd.messages)
        self._applied_early = 0
        ents = rd.committed_entries
        if ents and rd.snapshot is None:
            n = _durable_prefix(ents, self.durable_index)
            if n:
                self.sink.apply(ents[:n] if n < len(ents) else ents)
                self._applied_early = n
        return rd

    @staticmethod
    def needs_persist(rd) -> bool:
        return bool(rd.entries) or rd.hard_state is not None or rd.snapshot is not None

    def persist(self, rd) -> None:
        """The durable write of `rd` (production calls store.save from a worker thread instead)."""
        self.store.save(rd.hard_state, rd.entries, rd.snapshot, rd.must_sync)

    def finish(self, rd) -> None:
        """After the durable write of `rd` (or none was needed): the rest of the Ready."""
        if rd is not self._in_flight:
            raise RuntimeError("finish() of a Ready that is not in flight")
        self.store.saved(rd.hard_state, rd.entries, rd.snapshot)
        if rd.snapshot is not None:
            self.durable_index = max(self.durable_index, rd.snapshot.metadata.index)
            self.sink.apply_snapshot(rd.snapshot)
        if rd.entries:
            self.durable_index = rd.entries[-1].index
        if not self._sent_early and rd.messages:
            self.send(rd.messages)
        ents, early = rd.committed_entries, self._applied_early
        if ents and early < len(ents):
            self.sink.apply(ents[early:] if early else ents)
        if rd.read_states:
            self.sink.on_read_states(rd.read_states)
        self._in_flight = None
        self.raw.advance(rd)

    def run_ready_sync(self) -> bool:
        """One whole Ready with the durable write on this thread (simulator, tools): True if there
        was one."""
        rd = self.begin()
        if rd is None:
            return False
        if self.needs_persist(rd):
            self.persist(rd)
        self.finish(rd)
        return True

    def _feed(self, raw) -> None:
        if self._proposals:
            batch, self._proposals = self._proposals, []
            try:
                raw.propose_batch(batch)
            except Exception as exc:  # ProposalDropped: no leader right now
                self.sink.on_dropped(batch, exc)
        if self._read_ctxs:
            ctxs, self._read_ctxs = self._read_ctxs, []
            for ctx in ctxs:
                raw.read_index(ctx)


def recovered_hard_state(hard_state, snapshot_index: int):
    """The hard state to restart from. A commit-only hard state is written without an fsync (raft's
    MustSync rule), so after a crash the newest one on disk may be older than a snapshot; the
    snapshot proves its index was committed."""
    if hard_state is not None and hard_state.commit < snapshot_index:
        return type(hard_state)(hard_state.term, hard_state.vote, snapshot_index)
    return hard_state


def _durable_prefix(entries: list, durable_index: int) -> int:
    """How many of `entries` (consecutive indexes) are at or below `durable_index`."""
    if entries[-1].index <= durable_index:
        return len(entries)
    return max(0, durable_index - entries[0].index + 1)
