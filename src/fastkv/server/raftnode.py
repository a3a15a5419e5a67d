"""The raft node: the one Ready loop, plus raft's stable storage (WAL, snapshots, MemoryStorage).

Per Ready, strictly in this order (the raft core's contract, see fastkv.raft.rawnode):
  1. persist snapshot + entries + hard state to the WAL with one fdatasync (in a worker thread, so
     the event loop keeps accepting requests — they become the next Ready's batch);
  2. make them visible in the MemoryStorage raft reads;
  3. send messages (transport);
  4. apply committed entries in order (the server's applier), serve read states;
  5. advance.
Proposals are queued by request handlers and handed to raft in one batch per loop turn, so every
request that arrives during an fsync shares the next one.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from fastkv._native import load
from fastkv.raft import rawnode as rawnode_mod
from fastkv.raft.config import Config
from fastkv.raft.raft import LEADER
from fastkv.wal.snapshotter import Snapshotter
from fastkv.wal.wal import WAL

log = logging.getLogger(__name__)
raftpb = load("raftpb")
raftlog = load("raftlog")

SNAPSHOT_CATCHUP_ENTRIES = 5000  # entries kept in memory after a snapshot for slow followers (etcd)


class RaftNode:
    def __init__(self, *, member_id: int, peers: list[int], waldir: str, snapdir: str, metadata: bytes,
                 election_tick: int, heartbeat_interval: float, applied: int, transport, on_fsync=None,
                 seed: int | None = None, member_id_from_metadata=None):
        import random

        self.member_id = member_id
        self.heartbeat_interval = heartbeat_interval
        self.transport = transport
        self.storage = raftlog.MemoryStorage()
        self.snapshotter = Snapshotter(snapdir)
        self.conf_state = raftpb.ConfState()
        fresh = not WAL.exists(waldir)
        if fresh:
            self.wal = WAL.create(waldir, metadata, on_fsync=on_fsync)
            snap = None
        else:
            snap = self.snapshotter.load(acceptable=WAL.snapshot_markers(waldir))
            marker = (snap.metadata.index, snap.metadata.term) if snap is not None else None
            self.wal = WAL.open(waldir, snapshot_marker=marker, on_fsync=on_fsync)
            metadata, hard_state, entries = self.wal.read_all()
            if member_id_from_metadata is not None:
                # as etcd: on restart the WAL, not the flags, says who this member is (the flags may
                # name other peer URLs, from which another id would be derived)
                member_id = self.member_id = member_id_from_metadata(metadata)
            if snap is not None:
                self.storage.apply_snapshot(snap)
                self.conf_state = snap.metadata.conf_state
            if hard_state is not None:
                self.storage.set_hard_state(hard_state)
            self.storage.append(entries)
        self.metadata = metadata  # on restart: what read_all() recovered from the WAL
        self.snapshot_index = snap.metadata.index if snap is not None else 0
        # As etcd: raft's applied index is the snapshot's, so raft re-delivers every committed entry
        # after it; the applier skips what the backend already holds (consistent index) but re-applies
        # conf changes, which is how membership comes back after a restart.
        applied = self.snapshot_index
        cfg = Config(id=member_id, storage=self.storage, peers=peers if fresh else None,
                     election_tick=election_tick, heartbeat_tick=1, applied=applied,
                     rng=random.Random(seed if seed is not None else int.from_bytes(os.urandom(8), "big")))
        self.node = rawnode_mod.RawNode(cfg)
        self.fresh = fresh
        self.is_leader = False
        self.leader = 0
        self.term = 0
        self.commit_index = 0
        self._proposals: list = []
        self._read_ctxs: list = []
        self._wake = asyncio.Event()
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastkv-wal")
        self._stopped = False
        self._tasks: list = []
        # set by the server before start()
        self.apply_entries = None   # fn(list[Entry]) applied in order on the loop thread
        self.on_leader_change = None  # fn(is_leader: bool, leader: int)
        self.on_read_states = None  # fn(list[ReadState])
        self.after_apply = None     # coroutine fn() run after each Ready's apply (snapshots)

    # --- inputs (loop thread only) ------------------------------------------------------------
    def propose(self, data: bytes) -> None:
        self._proposals.append(data)
        self._wake.set()

    def read_index(self, ctx: bytes) -> None:
        self._read_ctxs.append(ctx)
        self._wake.set()

    def step(self, msg) -> None:
        self.node.step(msg)
        self._wake.set()

    # --- the loop -----------------------------------------------------------------------------
    def start(self) -> None:
        self.transport.start(self.step)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._ticker(), name="raft-ticker"),
                       loop.create_task(self._run(), name="raft-ready-loop")]
        self._maybe_campaign()
        self._wake.set()

    def _maybe_campaign(self) -> None:
        """A one-member cluster need not wait an election timeout: campaign as soon as membership
        (from bootstrap, snapshot or replayed conf changes) shows this member as the only voter."""
        if self.is_leader:
            return
        st = self.node.status()
        # raft refuses to campaign while committed conf changes are unapplied, so wait for those
        if st.raft_state == 0 and list(st.voters) == [self.member_id] and st.applied >= st.commit:
            self.node.campaign()

    async def _ticker(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self.heartbeat_interval)
            self.node.tick()
            self._wake.set()

    async def _run(self) -> None:
        node = self.node
        loop = asyncio.get_running_loop()
        while not self._stopped:
            await self._wake.wait()
            self._wake.clear()
            while not self._stopped:
                self._feed(node)
                if not node.has_ready():
                    break
                rd = node.ready()
                if rd.soft_state is not None:
                    self._soft_state(rd.soft_state)
                if rd.hard_state is not None:
                    self.term = rd.hard_state.term
                    self.commit_index = rd.hard_state.commit
                if rd.snapshot is not None and rd.snapshot.metadata.index > 0:
                    raise RuntimeError("installing a snapshot from a leader needs the cluster transport")
                if rd.entries or rd.must_sync:
                    await loop.run_in_executor(self._disk, self.wal.save, rd.hard_state, rd.entries)
                if rd.entries:
                    self.storage.append(rd.entries)
                if rd.hard_state is not None:
                    self.storage.set_hard_state(rd.hard_state)
                if rd.messages:
                    self.transport.send(rd.messages)
                if rd.committed_entries:
                    self.apply_entries(rd.committed_entries)
                if rd.read_states and self.on_read_states is not None:
                    self.on_read_states(rd.read_states)
                node.advance(rd)
                self._maybe_campaign()
                if self.after_apply is not None:
                    await self.after_apply()

    def _feed(self, node) -> None:
        if self._proposals:
            batch, self._proposals = self._proposals, []
            try:
                node.propose_batch(batch)
            except Exception as exc:  # ProposalDropped: no leader right now
                if self.on_dropped is not None:
                    self.on_dropped(batch, exc)
        if self._read_ctxs:
            ctxs, self._read_ctxs = self._read_ctxs, []
            for ctx in ctxs:
                node.read_index(ctx)

    on_dropped = None  # fn(batch, exc): the server fails the requests whose proposals were dropped

    def _soft_state(self, ss) -> None:
        was = self.is_leader
        self.leader = ss.lead
        self.is_leader = ss.raft_state == LEADER
        if self.on_leader_change is not None:
            self.on_leader_change(was, self.is_leader, self.leader)

    # --- snapshots ----------------------------------------------------------------------------
    async def snapshot(self, index: int, data: bytes = b"") -> None:
        """Record a raft snapshot at applied `index` (the backend must already hold state >= index),
        then let the WAL and memory drop what it covers."""
        loop = asyncio.get_running_loop()
        snap = self.storage.create_snapshot(index, self.conf_state, data)
        t0 = time.perf_counter()
        await loop.run_in_executor(self._disk, self._persist_snapshot, snap)
        compact_to = index - SNAPSHOT_CATCHUP_ENTRIES
        if compact_to > self.storage.first_index():
            self.storage.compact(compact_to)
        self.snapshot_index = index
        log.info("snapshot at index %d saved in %.1f ms", index, 1000 * (time.perf_counter() - t0))

    def _persist_snapshot(self, snap) -> None:
        self.snapshotter.save(snap)
        self.wal.save_snapshot_marker(snap.metadata.index, snap.metadata.term)
        self.wal.release_lock_to(snap.metadata.index)
        self.snapshotter.purge(keep=5)

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
        self.transport.stop()
        self.wal.close()
