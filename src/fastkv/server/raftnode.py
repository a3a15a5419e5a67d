"""The production wiring of the node driver (server/node.py): uvloop, a WAL worker thread, the peer
transport, a ticker, and the WAL-backed log store.

All decisions about a Ready (what is sent when, what is applied when) live in the driver, which the
simulator runs too; what is here is the part the simulator replaces: where the durable write runs,
ticks from a timer, messages to the transport.

Where the durable write runs. A Ready's batch is encoded on the loop (WAL.prepare) and written by
the WAL's writer thread (_native.walwrite), which never takes the GIL and reports through an eventfd
the loop polls: meanwhile the loop keeps taking requests, which become the next Ready's batch, and
answers the requests a commit-only hard state follows (their entries were applied before it is
written). The exception is a batch of one entry that needs an fsync: it is written on the loop, as
with one request at a time there is nothing to overlap with its fsync and the handoff only adds
latency. Snapshots, segment cuts and saves under failpoints (tests, fastkv chaos's slow disk) go to a
Python worker thread as a whole.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

from fastkv import failpoints
from fastkv._native import load
from fastkv.raft import rawnode as rawnode_mod
from fastkv.raft.config import Config
from fastkv.server.node import NodeDriver, recovered_hard_state, store_in
from fastkv.wal.snapshotter import Snapshotter
from fastkv.wal.wal import WAL

log = logging.getLogger(__name__)
raft_log = logging.getLogger("fastkv.raft")
raftpb = load("raftpb")
raftlog = load("raftlog")
walwrite = load("walwrite")

SNAPSHOT_CATCHUP_ENTRIES = 5000  # entries kept in memory after a snapshot for slow followers (etcd)


class WALStore:
    """Raft's stable storage in production: the WAL and snapshot files, and the MemoryStorage the
    raft core reads, recovered from them on open."""

    def __init__(self, waldir: str, snapdir: str, metadata: bytes, on_fsync=None,
                 segment_size: int | None = None, max_snapshots: int = 5, max_wals: int = 5):
        # etcd's --max-snapshots / --max-wals: files kept once a snapshot covers them (0: all)
        self.max_snapshots, self.max_wals = max_snapshots, max_wals
        self.storage = raftlog.MemoryStorage()
        self.snapshotter = Snapshotter(snapdir)
        self.conf_state = raftpb.ConfState()
        self.fresh = not WAL.exists(waldir)
        wal_opts = {"on_fsync": on_fsync}
        if segment_size:
            wal_opts["segment_size"] = segment_size
        snap = None
        if self.fresh:
            self.wal = WAL.create(waldir, metadata, **wal_opts)
            self.metadata = metadata
        else:
            snap = self.snapshotter.load(acceptable=WAL.snapshot_markers(waldir))
            marker = (snap.metadata.index, snap.metadata.term) if snap is not None else None
            self.wal = WAL.open(waldir, snapshot_marker=marker, **wal_opts)
            self.metadata, hard_state, entries = self.wal.read_all()
            if snap is not None:
                self.storage.apply_snapshot(snap)
                self.conf_state = snap.metadata.conf_state
            if hard_state is not None:
                self.storage.set_hard_state(
                    recovered_hard_state(hard_state, snap.metadata.index if snap is not None else 0))
            self.storage.append(entries)
        self.snapshot_index = snap.metadata.index if snap is not None else 0

    def force_new_cluster(self, member_id: int) -> list:
        """--force-new-cluster (etcd's restart as a standalone node): append after the commit
        index, committed, a conf change removing every other member (and adding this one if the log
        does not have it); they overwrite what was not committed, and after the restart this
        member is a cluster of one with all the data the old cluster had committed (a member that
        is already alone keeps its log as it is). Returns the removed ids."""
        hs = self.storage.hard_state()
        first = self.storage.first_index()
        committed = self.storage.entries(first, hs.commit + 1) if hs.commit >= first else []
        ids = set(self.conf_state.voters) | set(self.conf_state.learners)
        for e in committed:  # the members as of the commit index (etcd's getIDs)
            if e.type == raftpb.ENTRY_CONF_CHANGE:
                cc = raftpb.decode_conf_change(e.data)
                if cc.type == raftpb.CONF_CHANGE_REMOVE_NODE:
                    ids.discard(cc.node_id)
                elif cc.type in (raftpb.CONF_CHANGE_ADD_NODE, raftpb.CONF_CHANGE_ADD_LEARNER_NODE):
                    ids.add(cc.node_id)
        changes = [raftpb.ConfChange(raftpb.CONF_CHANGE_REMOVE_NODE, mid) for mid in sorted(ids - {member_id})]
        if member_id not in ids:
            changes.append(raftpb.ConfChange(raftpb.CONF_CHANGE_ADD_NODE, member_id))
        forced = [raftpb.Entry(hs.term, hs.commit + 1 + i, raftpb.ENTRY_CONF_CHANGE, raftpb.encode_conf_change(cc))
                  for i, cc in enumerate(changes)]
        if forced:  # at commit + 1: the uncommitted tail after it is overwritten (storage and WAL)
            new_hs = raftpb.HardState(hs.term, hs.vote, hs.commit + len(forced))
            self.storage.append(forced)
            self.storage.set_hard_state(new_hs)
            self.wal.save(new_hs, forced)
        return sorted(ids - {member_id})

    # LogStore ---------------------------------------------------------------------------------
    def save(self, hard_state, entries, snapshot, must_sync: bool) -> None:
        if snapshot is not None:
            # before the entries that follow it, as etcd's SaveSnap precedes Save
            failpoints.hit("raft.save_snapshot.before")
            self.snapshotter.save(snapshot)
            self.wal.save_snapshot_marker(snapshot.metadata.index, snapshot.metadata.term)
        failpoints.hit("raft.wal_save.before")
        self.wal.save(hard_state, entries)  # the WAL decides the fsync (raft's MustSync rule)
        failpoints.hit("raft.wal_save.after")

    def saved(self, hard_state, entries, snapshot) -> None:
        store_in(self.storage, hard_state, entries, snapshot)
        if snapshot is not None:
            self.conf_state = snapshot.metadata.conf_state
            self.snapshot_index = snapshot.metadata.index

    # snapshots of our own applied state ---------------------------------------------------------
    def persist_snapshot(self, snap) -> None:
        """(worker thread) The snapshot file, its WAL marker, then release what it covers."""
        self.snapshotter.save(snap)
        self.wal.save_snapshot_marker(snap.metadata.index, snap.metadata.term)
        if self.max_wals:
            self.wal.release_lock_to(snap.metadata.index, keep=self.max_wals)
        if self.max_snapshots:
            self.snapshotter.purge(keep=self.max_snapshots)

    def close(self) -> None:
        self.wal.close()


def _ignore(*args) -> None:
    pass


class RaftNode:
    """One member's raft, wired for production, and the driver's NodeSink (it forwards to the
    callbacks the server sets before start(); on_read_states and on_dropped are called directly)."""

    def __init__(self, *, member_id: int, peers: list[int], waldir: str, snapdir: str, metadata: bytes,
                 election_tick: int, heartbeat_interval: float, transport, on_fsync=None,
                 seed: int | None = None, member_of=None, wal_segment_bytes: int | None = None,
                 pre_vote: bool = True, catchup_entries: int = SNAPSHOT_CATCHUP_ENTRIES,
                 max_snapshots: int = 5, max_wals: int = 5, force_new_cluster: bool = False):
        self.catchup_entries = catchup_entries
        self.heartbeat_interval = heartbeat_interval
        self.transport = transport
        self.store = WALStore(waldir, snapdir, metadata, on_fsync=on_fsync, segment_size=wal_segment_bytes,
                              max_snapshots=max_snapshots, max_wals=max_wals)
        self.storage = self.store.storage
        self.metadata = self.store.metadata
        self.fresh = self.store.fresh
        if not self.fresh and member_of is not None:
            # a restarted member is who its WAL says (etcd ignores --initial-* flags on restart): with
            # a flag-derived id that is not a voter in the recovered conf state it never campaigns
            member_id = member_of(self.metadata)
        self.member_id = member_id
        if force_new_cluster and not self.fresh:
            hs = self.storage.hard_state()
            removed = self.store.force_new_cluster(member_id)
            log.warning("forcing restart of member %x at commit index %d: removing %s from the cluster",
                        member_id, hs.commit, ", ".join("%x" % r for r in removed) or "no other member")
        # As etcd: raft's applied index is the snapshot's, so raft re-delivers every committed entry
        # after it; the applier skips what the backend already holds (consistent index) but re-applies
        # conf changes, which is how membership comes back after a restart.
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "big")
        cfg = Config(id=member_id, storage=self.storage, peers=peers if self.fresh else None,
                     election_tick=election_tick, heartbeat_tick=1, applied=self.store.snapshot_index,
                     rng=random.Random(seed), pre_vote=pre_vote, logger=raft_log.info)
        self.node = rawnode_mod.RawNode(cfg)
        self.driver = NodeDriver(self.node, self.store, self._send, self)
        self._wake = asyncio.Event()
        # snapshots, segment cuts and saves under failpoints: rare, whole saves in a Python thread
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastkv-disk")
        self._writer = walwrite.DurableWriter("fastkv-wal")
        self._written = None  # the future of the write the writer has in flight
        self._stopped = False
        self._tasks: list = []
        # set by the server before start()
        self.apply_entries = None   # fn(list[Entry]) applied in order on the loop thread
        self.install_snapshot = None  # fn(Snapshot): replace the state with the snapshot's
        self.on_leader_change = None  # fn(was_leader, is_leader, leader)
        self.on_read_states = _ignore  # fn(list[ReadState])
        self.on_dropped = _ignore   # fn(batch, exc): fail the requests whose proposals were dropped
        self.after_apply = None     # coroutine fn() run after each Ready (snapshots)
        self.send_snapshot = None   # fn(MsgSnap): ship our backend with it (the pipeline)
        self.on_fatal = None        # fn(exc): the Ready loop or ticker died

    # what the server reads
    @property
    def is_leader(self) -> bool:
        return self.driver.is_leader

    @property
    def leader(self) -> int:
        return self.driver.leader

    @property
    def term(self) -> int:
        return self.driver.term

    @property
    def commit_index(self) -> int:
        return self.driver.commit_index

    @property
    def conf_state(self):
        return self.store.conf_state

    @conf_state.setter
    def conf_state(self, cs) -> None:
        self.store.conf_state = cs

    @property
    def snapshot_index(self) -> int:
        return self.store.snapshot_index

    # --- inputs (loop thread only) ------------------------------------------------------------
    def propose(self, data: bytes) -> None:
        self.driver.propose(data)
        self._wake.set()

    def read_index(self, ctx: bytes) -> None:
        self.driver.read_index(ctx)
        self._wake.set()

    def step(self, msg) -> None:
        self.driver.step(msg)
        self._wake.set()

    def report_unreachable(self, member_id: int) -> None:
        self.node.report_unreachable(member_id)
        self._wake.set()

    def report_snapshot(self, member_id: int, failed: bool) -> None:
        self.node.report_snapshot(member_id, failed)
        self._wake.set()

    def propose_conf_change(self, cc) -> None:
        """Raises ProposalDropped when raft cannot take it now (no leader, transfer, one pending)."""
        self.node.propose_conf_change(cc)
        self._wake.set()

    def transfer_leadership(self, to: int) -> None:
        self.node.transfer_leadership(to)
        self._wake.set()

    def _send(self, messages) -> None:
        snaps = [m for m in messages if m.type == raftpb.MSG_SNAP]
        if snaps:
            messages = [m for m in messages if m.type != raftpb.MSG_SNAP]
            for m in snaps:
                if self.send_snapshot is not None:
                    self.send_snapshot(m)
                else:
                    self.node.report_snapshot(m.to, True)
        if messages:
            self.transport.send(messages)

    # --- NodeSink: what the driver hands up -------------------------------------------------------
    def on_soft_state(self, was_leader: bool, is_leader: bool, leader: int) -> None:
        if self.on_leader_change is not None:
            self.on_leader_change(was_leader, is_leader, leader)

    def apply(self, entries) -> None:
        self.apply_entries(entries)

    def apply_snapshot(self, snapshot) -> None:
        if self.install_snapshot is None:
            raise RuntimeError("installing a snapshot from a leader needs the cluster transport")
        self.install_snapshot(snapshot)

    # --- the loop -----------------------------------------------------------------------------
    def start(self, sink=None) -> None:
        """sink: what the transport calls back into (transport.base.RaftSink); default: step only."""
        self.transport.start(sink if sink is not None else self.step)
        loop = asyncio.get_running_loop()
        loop.add_reader(self._writer.fileno(), self._on_written)
        self._tasks = [loop.create_task(self._ticker(), name="raft-ticker"),
                       loop.create_task(self._run(), name="raft-ready-loop")]
        for t in self._tasks:
            t.add_done_callback(self._loop_ended)
        self._maybe_campaign()
        self._wake.set()

    def _loop_ended(self, task) -> None:
        """A raft task may only end when stopped: anything else leaves a member that neither
        votes nor applies, so it is fatal (etcd panics there too)."""
        if self._stopped or task.cancelled():
            return
        exc = task.exception()
        log.critical("raft task %s ended unexpectedly: %r", task.get_name(), exc, exc_info=exc)
        if self.on_fatal is not None:
            self.on_fatal(exc)

    def _maybe_campaign(self) -> None:
        """A one-member cluster need not wait an election timeout: campaign as soon as membership
        (from bootstrap, snapshot or replayed conf changes) shows this member as the only voter."""
        if self.driver.is_leader:
            return
        st = self.node.status()
        # raft refuses to campaign while committed conf changes are unapplied, so wait for those
        if st.raft_state == 0 and list(st.voters) == [self.member_id] and st.applied >= st.commit:
            self.node.campaign()

    async def _ticker(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self.heartbeat_interval)
            self.driver.tick()
            self._wake.set()

    async def _run(self) -> None:
        driver = self.driver
        while not self._stopped:
            await self._wake.wait()
            self._wake.clear()
            while not self._stopped:
                rd = driver.begin()
                if rd is None:
                    break
                if driver.needs_persist(rd):
                    await self._persist(rd)
                driver.finish(rd)
                self._maybe_campaign()
                if self.after_apply is not None:
                    await self.after_apply()

    async def _persist(self, rd) -> None:
        store = self.store
        loop = asyncio.get_running_loop()
        if rd.snapshot is not None or failpoints.ACTIVE:
            await loop.run_in_executor(self._disk, store.save, rd.hard_state, rd.entries, rd.snapshot,
                                       rd.must_sync)
            return
        wal = store.wal
        batch = wal.prepare(rd.hard_state, rd.entries)
        if batch is None:
            return
        if not batch.sync:
            # a commit-only hard state follows the entries just applied: let their answers go out
            # first (one loop turn), they do not wait for it
            await asyncio.sleep(0)
        if wal.cut_due(batch):
            await loop.run_in_executor(self._disk, wal.write, batch)
        elif batch.sync and len(rd.entries) <= 1:
            wal.write(batch)
        else:
            self._written = loop.create_future()
            wal.start_write(batch, self._writer)
            wal.end_write(batch, await self._written)

    def _on_written(self) -> None:
        """The writer's eventfd is readable: hand its outcome (fsync seconds or OSError) over."""
        fut, self._written = self._written, None
        try:
            outcome = self._writer.result()
        except OSError as exc:
            outcome = exc
        if fut is not None and not fut.cancelled():
            fut.set_result(outcome)

    # --- snapshots ----------------------------------------------------------------------------
    async def snapshot(self, index: int, data: bytes = b"") -> None:
        """Record a raft snapshot at applied `index` (the backend must already hold state >= index),
        then let the WAL and memory drop what it covers."""
        store = self.store
        snap = self.storage.create_snapshot(index, store.conf_state, data)
        t0 = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(self._disk, store.persist_snapshot, snap)
        compact_to = index - self.catchup_entries
        if compact_to > self.storage.first_index():
            self.storage.compact(compact_to)
        store.snapshot_index = index
        log.info("snapshot at index %d saved in %.1f ms", index, 1000 * (time.perf_counter() - t0))

    # --- stop ---------------------------------------------------------------------------------
    async def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._disk.shutdown(wait=True)
        if self._tasks:
            asyncio.get_running_loop().remove_reader(self._writer.fileno())
        self._writer.close()
        self.transport.stop()
        self.store.close()
