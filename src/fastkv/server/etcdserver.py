"""EtcdServer: one member. Storage (backend, MVCC, lessor, watchable store), the raft node, and the
operations the gRPC services call.

Writes (put, delete, txn, compact, lease grant/revoke, alarms) become proposals: encoded, handed to
the Ready loop, and answered when the applier reaches them (the wait registry resolves the
request's future). Reads are local: linearizable ones first wait for a ReadIndex round (batched:
every read that arrives while a round is out joins the next one) and for the applier to catch up,
serializable ones read at once. Everything runs on the event loop thread; disk syncs run in worker
threads (the WAL in the Ready loop's, the backend in its interval committer).

Data dir layout: <data-dir>/member/wal (WAL segments), <data-dir>/member/snap (raft snapshot files),
<data-dir>/member/db (the LMDB backend).
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import struct
import time

from fastkv import __version__
from fastkv.api import convert
from fastkv.api.etcdpb import rpc_pb2
from fastkv.backend.lmdb_backend import LMDBBackend
from fastkv.errors import (
    EtcdError, ErrEmptyKey, ErrLeaseNotFound, ErrNoLeader, ErrNoSpace,
    ErrRequestTooLarge, ErrTimeout,
)
from fastkv.lease.lessor import Lessor
from fastkv.mvcc import KVStore
from fastkv.mvcc import txncheck
from fastkv.mvcc.ops import txn_has_puts, txn_has_writes, txn_serializable
from fastkv.server import request as rq
from fastkv.server import corrupt
from fastkv.server.apply import NOSPACE, Alarms, Applier
from fastkv.server.cluster import ETCD_SERVER_VERSION, ClusterMember, PeerSide, has_peers as _has_peers, member_json
from fastkv.server.config import ServerConfig, member_id_for
from fastkv.server.membership import Member, Membership
from fastkv.server.auth_checks import check_serialized_read
from fastkv.server.auth_checks import check_txn as check_txn_auth
from fastkv.server.metrics import Metrics
from fastkv.server.raftnode import RaftNode
from fastkv.server.wait import Wait
from fastkv.transport import LocalTransport
from fastkv.transport.peer import PeerTransport
from fastkv.transport.peerhttp import PeerHTTP

log = logging.getLogger(__name__)

READ_INDEX_RETRY_SECONDS = 0.5  # etcd's readIndexRetryTime
HASH_KV_CHUNK = 1000  # records hashed per loop turn
ETCD_VERSION = ETCD_SERVER_VERSION  # the etcd API level fastkv matches (what Status and /version report)
_META = struct.Struct("<QQ")


class EtcdServer(ClusterMember):
    def __init__(self, cfg: ServerConfig):
        self.cfg = cfg
        members = cfg.cluster_members()
        if cfg.name not in members:
            raise ValueError(f"--initial-cluster has no entry for this member's --name {cfg.name!r}")
        # bootstrap members by id, from --initial-cluster (a restart takes them from the backend)
        # (names and client URLs come later: each member publishes its own through raft)
        self.initial_members = {
            member_id_for(urls, cfg.initial_cluster_token): Member(
                id=member_id_for(urls, cfg.initial_cluster_token), peer_urls=list(urls))
            for urls in members.values()}
        self.member_id = cfg.member_id()
        self.cluster_id = cfg.cluster_id()
        self.metrics = Metrics()
        self.start_time = time.time()
        self._stopped = asyncio.Event()
        self.stopping = asyncio.Event()  # set when the member must stop by itself (removed from the cluster)
        self.removed_from_cluster = False
        self.fatal_error = None  # why the member stopped by itself, when it had to
        self.leader_changes = 0  # etcd_server_leader_changes_seen_total
        self._last_leader = 0
        self._became_leader = asyncio.Event()
        self.ranges_served = 0   # etcd_mvcc_range_total
        self._tasks: list = []
        self.member_dir = os.path.join(cfg.data_dir, "member")
        os.makedirs(self.member_dir, exist_ok=True)
        self.request_timeout = 5.0 + 2 * cfg.election_timeout_ms / 1000.0

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        # One process per data dir, checked before anything is opened: LMDB itself lets a second
        # process in, and the WAL's lock is only reached after the backend and lessor are loaded.
        self._dir_lock = _lock_member_dir(self.member_dir)
        self.backend = LMDBBackend(
            os.path.join(self.member_dir, "db"), batch_limit=cfg.backend_batch_limit,
            batch_interval=cfg.backend_batch_interval_ms / 1000.0,
            max_size=max(cfg.quota_backend_bytes, 1 << 20) + 256 * 1024**2)
        self.backend.commit_observer = self.metrics.backend_commit.observe
        min_ttl = math.ceil(1.5 * cfg.election_timeout_ms / 1000.0)
        self.lessor = Lessor(self.backend, min_ttl=min_ttl)
        self.kv = KVStore(self.backend, quota_bytes=None, max_txn_ops=cfg.max_txn_ops, lessor=self.lessor)
        self.lessor.set_range_deleter(self.kv.delete_keys)
        self.lessor.recover(self.kv.restored_leases.items())
        from fastkv.mvcc.watchable import WatchableStore

        self.watchable = WatchableStore(self.kv)
        self.alarms = Alarms(self.backend)
        wal_dir = os.path.join(self.member_dir, "wal")
        joining = cfg.initial_cluster_state == "existing" and not os.path.exists(wal_dir)
        if joining:
            await self._join_existing()
        self.raft = RaftNode(
            member_id=self.member_id, peers=None if joining else sorted(self.initial_members),
            waldir=os.path.join(self.member_dir, "wal"),
            snapdir=os.path.join(self.member_dir, "snap"), metadata=_META.pack(self.member_id, self.cluster_id),
            election_tick=max(1, cfg.election_timeout_ms // cfg.heartbeat_interval_ms),
            heartbeat_interval=cfg.heartbeat_interval_ms / 1000.0,
            transport=None, on_fsync=self.metrics.wal_fsync.observe, pre_vote=cfg.pre_vote,
            max_snapshots=cfg.max_snapshots, max_wals=cfg.max_wals, force_new_cluster=cfg.force_new_cluster,
            member_of=lambda md: _META.unpack(md[:_META.size])[0],
            # FASTKV_WAL_SEGMENT_BYTES (hidden, for tests): smaller WAL segments, so a test can watch
            # snapshots release old segments after a few thousand writes instead of 64 MB of them.
            wal_segment_bytes=int(os.environ.get("FASTKV_WAL_SEGMENT_BYTES", "0")) or None,
            # FASTKV_SNAPSHOT_CATCHUP_ENTRIES (hidden, for tests): entries a leader keeps after its
            # snapshot for slow followers; a test makes it small to see a follower need a snapshot
            **({"catchup_entries": int(os.environ["FASTKV_SNAPSHOT_CATCHUP_ENTRIES"])}
               if os.environ.get("FASTKV_SNAPSHOT_CATCHUP_ENTRIES") else {}))
        stored_member, stored_cluster = _META.unpack(self.raft.metadata[:_META.size])
        self.member_id, self.cluster_id = stored_member, stored_cluster
        # the transport speaks for the member the WAL names (a member that joined a running cluster
        # has an id its flags alone do not give)
        if len(self.initial_members) > 1 or _has_peers(self.backend):
            self.transport = PeerTransport(
                self.member_id, self.cluster_id, snap_dir=os.path.join(self.member_dir, "snap"),
                server_tls=cfg.peer_tls, client_tls=cfg.peer_tls,
                http=PeerHTTP(members=lambda: [member_json(m) for m in self.membership.sorted_members()],
                              version=self.version_info,
                              health=lambda: bool(self.raft.leader) and not self.alarms.active,
                              lease_renew=self.lease_renew_local,
                              lease_time_to_live=self.lease_time_to_live_local,
                              member_promote=self._promote_for_peer,
                              hash_kv=lambda req: corrupt.hash_kv_for_peer(self, req)),
                on_removed=self._removed)
            try:
                await self.transport.serve(cfg.listen_peer_urls)
            except OSError as exc:
                raise OSError(f"cannot listen for peers on {','.join(cfg.listen_peer_urls)} "
                              f"({exc.strerror or exc}); pick another address with --listen-peer-urls") from None
        else:
            self.transport = LocalTransport()
        self.raft.transport = self.transport
        self.membership = Membership(self.backend, self.member_id,
                                     self.initial_members if self.raft.fresh else {})
        self.membership.on_change = self._members_changed
        known = list(self.membership.sorted_members())
        if self.raft.fresh:  # a new or joining member knows the others before any entry applies
            known += self.initial_members.values()
        for m in known:
            if m.id != self.member_id:
                self.transport.add_peer(m.id, m.peer_urls)
        self.wait = Wait(self.member_id, timeout=self.request_timeout, expired=self._proposal_timed_out)
        self.applier = Applier(self.kv, self.lessor, self.alarms, self.wait)
        self.applier.membership = self.membership
        self._start_auth()
        self.raft.apply_entries = self._apply_entries
        self.raft.on_leader_change = self._on_leader_change
        self.raft.on_read_states = self._on_read_states
        self.raft.on_dropped = self._on_dropped
        self.raft.after_apply = self._after_apply
        self.raft.send_snapshot = self._send_snapshot
        self.raft.install_snapshot = self._install_snapshot
        self.raft.on_fatal = self._fatal
        self._snapshot_applied = self.raft.snapshot_index
        self._reads: dict = {}          # read ctx -> futures of that ReadIndex round
        self._read_waiters: list = []   # futures waiting for the next round
        self._reads_after_apply: list = []  # (index, futures) waiting for the applier
        self._read_seq = 0
        self._register_metrics()
        self.raft.start(PeerSide(self))
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._lease_loop(), name="lease-expiry"))
        self._tasks.append(loop.create_task(self._compaction_loop(), name="auto-compaction"))
        await self._wait_leader()
        if cfg.experimental_initial_corrupt_check:
            try:
                await corrupt.initial_check(self)
            except corrupt.DataInconsistency:
                await self.stop()
                raise
        self._tasks.append(loop.create_task(self._publish(), name="publish-attributes"))
        if self.raft.is_leader and not self.membership.cluster_version:
            # decide before clients connect, so a fresh member's /version is not "not_decided"
            try:
                await self._decide_cluster_version()
            except EtcdError as exc:
                log.warning("cannot set the cluster version yet: %s", exc.message)
        self._became_leader.clear()
        self._tasks.append(loop.create_task(self._monitor_versions(), name="cluster-version"))
        if cfg.experimental_corrupt_check_time > 0:
            self._tasks.append(loop.create_task(corrupt.check_loop(self, cfg.experimental_corrupt_check_time),
                                                name="corruption-check"))

    def _start_auth(self) -> None:
        from fastkv.auth.store import AuthStore
        from fastkv.auth.tokens import provider_from_option
        from fastkv.server.auth_checks import AuthApplier
        from fastkv.server.auth_ops import AuthOperations

        cfg = self.cfg
        tokens = provider_from_option(cfg.auth_token, float(cfg.auth_token_ttl))
        self.auth_store = AuthStore(self.backend, tokens, cfg.bcrypt_cost)
        self.applier.auth = AuthApplier(self.auth_store, self.lessor)
        self.auth_ops = AuthOperations(self)

    def auth_info(self, metadata, cert_cn: str | None = None):
        """Who makes a request (front ends call this): see fastkv.auth.identity."""
        from fastkv.auth.identity import auth_info_from_request

        return auth_info_from_request(self.auth_store, metadata, cert_cn, self.cfg.client_cert_auth)

    def internal_auth(self):
        """The identity of the member's own proposals that auth checks (an expired lease's revoke):
        root, as etcd does it (its lessor revokes with a root token)."""
        if not self.auth_store.enabled:
            return None
        from fastkv.auth.store import ROOT_USER, AuthInfo

        return AuthInfo(ROOT_USER, self.auth_store.revision)

    def check_admin(self, auth) -> None:
        """Root only once auth is on (Defragment, Snapshot, Hash, HashKV, member changes)."""
        self.auth_store.check_admin(auth)

    def check_watch(self, auth, key: bytes, range_end: bytes) -> None:
        self.auth_store.check_range(auth, key, range_end)

    async def _wait_leader(self) -> None:
        # a lone member leads at once; in a cluster, wait (a while) for any leader, as etcd serves
        # only once it has one
        deadline = time.monotonic() + 10 * self.cfg.election_timeout_ms / 1000.0 + 5
        while not self.raft.leader and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        # the new term's no-op must be applied before reads are answered at the right revision
        while self.applier.applied_index < self.raft.commit_index and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        await self.raft.stop()
        if hasattr(self.transport, "wait_closed"):
            await self.transport.wait_closed()
        self.wait.fail_all(EtcdError("etcdserver: server stopped", "UNAVAILABLE"))
        self.watchable.close()
        self.backend.close()
        os.close(self._dir_lock)
        self._stopped.set()

    # --- headers ------------------------------------------------------------------------------
    def header(self, revision: int = 0) -> rpc_pb2.ResponseHeader:
        return rpc_pb2.ResponseHeader(cluster_id=self.cluster_id, member_id=self.member_id,
                                      raft_term=self.raft.term, revision=revision or self.kv.current_revision)

    def fill(self, resp):
        convert.fill_header(resp.header, cluster_id=self.cluster_id, member_id=self.member_id,
                            raft_term=self.raft.term, revision=self.kv.current_revision)
        return resp

    # --- proposals ----------------------------------------------------------------------------
    async def propose(self, kind: int, msg, auth=None):
        if not self.raft.leader:
            raise ErrNoLeader()
        request_id = self.wait.next_id()
        if auth is None:
            data = rq.encode(request_id, kind, msg)
        else:
            data = rq.encode(request_id, kind, msg, auth.username, auth.revision)
        if len(data) > self.cfg.max_request_bytes:
            raise ErrRequestTooLarge()
        fut = self.wait.register(request_id)  # fails with ErrTimeout after request_timeout
        self.raft.propose(data)
        return await fut  # the wait registry raises an error result (Wait.trigger)

    def _proposal_timed_out(self) -> EtcdError:
        self.metrics.proposals_failed_total += 1
        return ErrTimeout()

    def _on_dropped(self, batch, exc) -> None:
        for data in batch:
            request_id = struct.unpack_from("<Q", data, 0)[0]
            self.metrics.proposals_failed_total += 1
            self.wait.trigger(request_id, ErrNoLeader())

    def _apply_entries(self, entries) -> None:
        applier = self.applier
        conf_change = self.raft.node.pb.ENTRY_CONF_CHANGE
        for e in entries:
            if e.type == conf_change:
                self._apply_conf_change(e)
            else:
                applier.apply_normal(e.index, e.data)
        if self._reads_after_apply:
            applied = applier.applied_index
            keep = []
            for index, futs in self._reads_after_apply:
                if index <= applied:
                    _resolve(futs)
                else:
                    keep.append((index, futs))
            self._reads_after_apply = keep

    def _fatal(self, exc) -> None:
        self.fatal_error = exc
        self.stopping.set()

    async def _after_apply(self) -> None:
        # raft's applied index: after a received snapshot the backend (consistent index) may be
        # ahead of the log this member holds, and a raft snapshot can only cover what it holds
        applied = min(self.applier.applied_index, self.raft.storage.last_index())
        if applied - self._snapshot_applied >= self.cfg.snapshot_count:
            # the snapshot's index must be durable in the backend before the WAL forgets it
            await asyncio.get_running_loop().run_in_executor(None, self.backend.force_commit)
            self._snapshot_applied = applied
            await self.raft.snapshot(applied)

    def _on_leader_change(self, was_leader: bool, is_leader: bool, leader: int) -> None:
        if leader and leader != self._last_leader:
            self.leader_changes += 1
            log.info("raft.node: %x elected leader %x at term %d", self.member_id, leader, self.raft.term)
        elif not leader and self._last_leader:
            log.info("raft.node: %x lost leader %x at term %d", self.member_id, self._last_leader, self.raft.term)
        self._last_leader = leader
        if is_leader and not was_leader:
            self.lessor.promote(self.cfg.election_timeout_ms / 1000.0)
            self._became_leader.set()  # the leader decides the cluster version first thing
        elif was_leader and not is_leader:
            self.lessor.demote()

    # --- linearizable reads -------------------------------------------------------------------
    async def linearizable_barrier(self) -> None:
        """Return once this member has applied everything committed when the call was made."""
        if not self.raft.leader:
            raise ErrNoLeader()
        fut = asyncio.get_running_loop().create_future()
        self._read_waiters.append(fut)
        if not self._reads:
            self._issue_read_round()
        try:
            async with asyncio.timeout(self.request_timeout):
                await fut
        except TimeoutError:
            raise ErrTimeout() from None

    def _issue_read_round(self) -> None:
        if not self._read_waiters:
            return
        self._read_seq += 1
        ctx = struct.pack(">QQ", self.member_id, self._read_seq)
        self._reads[ctx] = self._read_waiters
        self._read_waiters = []
        self.raft.read_index(ctx)
        # A ReadIndex request can be lost (no leader known when it was made, a leader change, a
        # dropped message): ask again with the same context until it is answered, as etcd's
        # linearizable read loop does; a duplicate answer finds its context gone and is ignored.
        asyncio.get_running_loop().call_later(READ_INDEX_RETRY_SECONDS, self._retry_read_round, ctx)

    def _retry_read_round(self, ctx: bytes) -> None:
        if ctx in self._reads and not self._stopped.is_set():
            self.raft.read_index(ctx)
            asyncio.get_running_loop().call_later(READ_INDEX_RETRY_SECONDS, self._retry_read_round, ctx)

    def _on_read_states(self, states) -> None:
        applied = self.applier.applied_index
        for rs in states:
            futs = self._reads.pop(bytes(rs.request_ctx), None)
            if futs is None:
                continue
            if rs.index <= applied:
                _resolve(futs)
            else:
                self._reads_after_apply.append((rs.index, futs))
        if not self._reads:
            self._issue_read_round()

    # --- KV -----------------------------------------------------------------------------------
    async def range(self, req, auth=None) -> rpc_pb2.RangeResponse:
        self.ranges_served += 1
        if not req.serializable:
            await self.linearizable_barrier()
        if self.auth_store.enabled:
            return self.fill(check_serialized_read(
                self.auth_store, auth, lambda ai: self.auth_store.check_range(ai, req.key, req.range_end),
                lambda: convert.range_response(self.kv.range(convert.range_op(req)))))
        return self.fill(convert.range_response(self.kv.range(convert.range_op(req))))

    def _check_quota(self, cost: int) -> None:
        if self.kv.size_estimate() + cost > self.cfg.quota_backend_bytes or self.alarms.has(NOSPACE):
            if not self.alarms.has(NOSPACE):
                alarm = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=self.member_id,
                                             alarm=NOSPACE)
                asyncio.get_running_loop().create_task(self._propose_quiet(rq.ALARM, alarm))
            raise ErrNoSpace()

    async def _propose_quiet(self, kind, msg, auth=None) -> None:
        try:
            await self.propose(kind, msg, auth)
        except EtcdError as exc:
            log.warning("internal proposal failed: %s", exc)

    async def put(self, req, auth=None) -> rpc_pb2.PutResponse:
        txncheck.check_put(convert.put_op(req))
        self._check_quota(len(req.key) + len(req.value))
        return self.fill(await self.propose(rq.PUT, req, auth))

    async def delete_range(self, req, auth=None) -> rpc_pb2.DeleteRangeResponse:
        if not req.key:
            raise ErrEmptyKey()
        return self.fill(await self.propose(rq.DELETE_RANGE, req, auth))

    async def txn(self, req, auth=None) -> rpc_pb2.TxnResponse:
        t = convert.txn_op(req)
        txncheck.check_txn(t, self.cfg.max_txn_ops)
        if not txn_has_writes(t):
            if not txn_serializable(t):
                await self.linearizable_barrier()
            if self.auth_store.enabled:
                return self.fill(check_serialized_read(
                    self.auth_store, auth, lambda ai: check_txn_auth(self.auth_store, ai, req),
                    lambda: convert.txn_response(self.kv.txn(t))))
            return self.fill(convert.txn_response(self.kv.txn(t)))
        if txn_has_puts(t):
            self._check_quota(req.ByteSize())
        return self.fill(await self.propose(rq.TXN, req, auth))

    async def compact(self, req, auth=None) -> rpc_pb2.CompactionResponse:
        resp = await self.propose(rq.COMPACT, req, auth)
        return self.fill(resp)

    # --- leases -------------------------------------------------------------------------------
    def _new_lease_id(self) -> int:
        while True:
            lid = int.from_bytes(os.urandom(8), "big") & ((1 << 63) - 1)
            if lid and self.lessor.lookup(lid) is None:
                return lid

    async def lease_grant(self, req, auth=None) -> rpc_pb2.LeaseGrantResponse:
        if req.ID == 0:
            req = rpc_pb2.LeaseGrantRequest(TTL=req.TTL, ID=self._new_lease_id())
        self._check_quota(0)
        return self.fill(await self.propose(rq.LEASE_GRANT, req, auth))

    async def lease_revoke(self, req, auth=None) -> rpc_pb2.LeaseRevokeResponse:
        return self.fill(await self.propose(rq.LEASE_REVOKE, req, auth))

    async def lease_renew(self, lease_id: int) -> int:
        """Keep-alive: the lease's TTL, or 0 if it does not exist. Only the leader keeps lease
        deadlines; a follower forwards the renewal to it over the peer port (etcd's leasehttp)."""
        if not self.raft.is_leader and self.raft.leader:
            return await self.forward_lease_renew(lease_id)
        return await self.lease_renew_local(lease_id)

    async def lease_renew_local(self, lease_id: int) -> int:
        # a renew must not beat the grant it follows through the log
        await self.linearizable_barrier()
        try:
            return self.lessor.renew(lease_id)
        except ErrLeaseNotFound:
            return 0

    async def lease_time_to_live(self, req) -> rpc_pb2.LeaseTimeToLiveResponse:
        """Only the leader keeps lease deadlines: a follower asks it (etcd's /leases/internal)."""
        if not self.raft.is_leader and self.raft.leader:
            resp = await self.forward_lease_time_to_live(req)
            return self.fill(rpc_pb2.LeaseTimeToLiveResponse(
                header=rpc_pb2.ResponseHeader(), ID=resp.ID, TTL=resp.TTL, grantedTTL=resp.grantedTTL,
                keys=list(resp.keys)))
        return await self.lease_time_to_live_local(req)

    async def lease_time_to_live_local(self, req) -> rpc_pb2.LeaseTimeToLiveResponse:
        await self.linearizable_barrier()
        try:
            granted, remaining, keys = self.lessor.time_to_live(req.ID, req.keys)
        except ErrLeaseNotFound:
            return self.fill(rpc_pb2.LeaseTimeToLiveResponse(header=rpc_pb2.ResponseHeader(), ID=req.ID, TTL=-1))
        return self.fill(rpc_pb2.LeaseTimeToLiveResponse(header=rpc_pb2.ResponseHeader(), ID=req.ID,
                                                         TTL=int(remaining), grantedTTL=granted, keys=list(keys)))

    async def lease_leases(self) -> rpc_pb2.LeaseLeasesResponse:
        await self.linearizable_barrier()
        return self.fill(rpc_pb2.LeaseLeasesResponse(
            header=rpc_pb2.ResponseHeader(), leases=[rpc_pb2.LeaseStatus(ID=l.id) for l in self.lessor.leases()]))

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if not self.raft.is_leader:
                continue
            for lid in self.lessor.expired_leases():
                asyncio.get_running_loop().create_task(
                    self._propose_quiet(rq.LEASE_REVOKE, rpc_pb2.LeaseRevokeRequest(ID=lid), self.internal_auth()))
            due = self.lessor.checkpoint_due()
            if due:
                cps = [rpc_pb2.LeaseCheckpoint(ID=i, remaining_TTL=t) for i, t in due]
                asyncio.get_running_loop().create_task(
                    self._propose_quiet(rq.LEASE_CHECKPOINT, rpc_pb2.LeaseCheckpointRequest(checkpoints=cps)))

    # --- auto compaction ----------------------------------------------------------------------
    async def _compaction_loop(self) -> None:
        mode, retention = self.cfg.auto_compaction_mode, self.cfg.auto_compaction_retention
        seconds = parse_retention(mode, retention)
        if not seconds:
            return
        samples: list = []  # (time, revision)
        if mode == "periodic":
            # etcd 3.4's cadence: sample the revision every min(retention, 1h) / 10, compact every
            # min(retention, 1h) (the first time one retention after start) to the newest revision
            # sampled at least one retention ago
            compact_every = min(seconds, 3600.0)
            interval = compact_every / 10
            last_compaction = time.monotonic()
            while True:
                await asyncio.sleep(interval)
                now = time.monotonic()
                samples.append((now, self.kv.current_revision))
                old = [r for t, r in samples if now - t >= seconds - interval / 2]
                samples = [(t, r) for t, r in samples if now - t < seconds + interval]
                if now - last_compaction < compact_every - interval / 2:
                    continue
                if old and self.raft.is_leader and old[-1] > max(self.kv.compact_revision, 0):
                    await self._propose_quiet(rq.COMPACT, rpc_pb2.CompactionRequest(revision=old[-1]))
                last_compaction = now
        else:  # revision mode: keep the last `retention` revisions, checked every 5 minutes (etcd's
            # interval); FASTKV_AUTO_COMPACTION_CHECK_SECONDS (hidden, for tests) shortens it
            keep = int(retention)
            check_every = float(os.environ.get("FASTKV_AUTO_COMPACTION_CHECK_SECONDS", "300"))
            while True:
                await asyncio.sleep(check_every)
                target = self.kv.current_revision - keep
                if target > max(self.kv.compact_revision, 0) and self.raft.is_leader:
                    await self._propose_quiet(rq.COMPACT, rpc_pb2.CompactionRequest(revision=target))

    # --- maintenance --------------------------------------------------------------------------
    async def alarm(self, req, auth=None) -> rpc_pb2.AlarmResponse:
        if req.action == rpc_pb2.AlarmRequest.GET:
            return self.fill(rpc_pb2.AlarmResponse(header=rpc_pb2.ResponseHeader(),
                                                   alarms=self.alarms.members(req.alarm)))
        return self.fill(await self.propose(rq.ALARM, req, auth))

    def status(self) -> rpc_pb2.StatusResponse:
        return self.fill(rpc_pb2.StatusResponse(
            header=rpc_pb2.ResponseHeader(), version=ETCD_VERSION, dbSize=self.backend.size(),
            leader=self.raft.leader, raftIndex=self.raft.commit_index, raftTerm=self.raft.term,
            raftAppliedIndex=self.applier.applied_index, dbSizeInUse=self.backend.size_in_use(),
            errors=[_alarm_text(m, a) for m, a in sorted(self.alarms.active)],
            isLearner=False))

    def members(self) -> list:
        return [rpc_pb2.Member(ID=m.id, name=m.name, peerURLs=m.peer_urls, clientURLs=m.client_urls,
                               isLearner=m.is_learner) for m in self.membership.sorted_members()]

    async def defragment(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.backend.defrag)
        # the quota check reads the size tracked at the last commit: defrag shrank the file since
        self.kv.backend_resized()

    async def hash_kv(self, revision: int) -> tuple[int, int, int]:
        """(hash, compact revision, revision): CRC-32C of every revision <= `revision` still stored
        (0: the current revision). Hashed in steps with a loop turn between them, so a large store
        does not stall raft or the clients (KVStore.hash_steps)."""
        steps = self.kv.hash_steps(revision, HASH_KV_CHUNK)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value
            await asyncio.sleep(0)

    def metrics_text(self) -> str:
        return self.metrics.render()

    def _register_metrics(self) -> None:
        m, raft = self.metrics, self.raft
        m.gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
                lambda: 1 if raft.leader else 0)
        m.gauge("etcd_server_is_leader", "Whether or not this member is a leader.", lambda: 1 if raft.is_leader else 0)
        m.counter("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.",
                  lambda: raft.commit_index)
        m.counter("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.",
                  lambda: self.applier.applied_index)
        m.gauge("etcd_server_proposals_pending", "The current number of pending proposals to commit.",
                lambda: len(self.wait))
        m.counter("etcd_server_proposals_failed_total", "The total number of failed proposals seen.",
                  lambda: m.proposals_failed_total)
        m.gauge("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.",
                lambda: self.backend.size())
        m.gauge("etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.",
                lambda: self.backend.size_in_use())
        m.gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", lambda: len(self.kv.index))
        m.gauge("etcd_server_version", "Which version is running. 1 for 'server_version' label with current version.",
                lambda: 1)
        m.counter("etcd_server_leader_changes_seen_total", "The number of leader changes seen.",
                  lambda: self.leader_changes)
        applied = self.applier.applied_by_kind
        for name, kind, help_ in (("etcd_mvcc_put_total", rq.PUT, "Total number of puts seen by this member."),
                                  ("etcd_mvcc_delete_total", rq.DELETE_RANGE,
                                   "Total number of deletes seen by this member."),
                                  ("etcd_mvcc_txn_total", rq.TXN, "Total number of txns seen by this member.")):
            m.counter(name, help_, lambda kind=kind: applied.get(kind, 0))
        m.counter("etcd_mvcc_range_total", "Total number of ranges seen by this member.",
                  lambda: self.ranges_served)
        peer_metrics = getattr(self.transport, "metrics", None)
        if peer_metrics is not None:
            m.sections.append(peer_metrics.render_lines)

    def version_info(self) -> dict:
        """/version as etcd answers it: the cluster version is "not_decided" until the leader set it."""
        return {"etcdserver": ETCD_VERSION, "etcdcluster": self.membership.cluster_version or "not_decided"}

    def version_json(self) -> str:
        import json

        return json.dumps({**self.version_info(), "fastkv": __version__})


def _lock_member_dir(member_dir: str) -> int:
    """An exclusive flock on <member>/lock, held for the process's life (the kernel drops it if the
    process dies, so SIGKILL never leaves a stale lock). Returns the fd."""
    import fcntl

    fd = os.open(os.path.join(member_dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OSError(f"data dir {os.path.dirname(member_dir)} is in use by another fastkv process") from None
    return fd


def _resolve(futs) -> None:
    for f in futs:
        if not f.done():
            f.set_result(None)


def _alarm_text(member_id: int, alarm: int) -> str:
    # etcd's AlarmMember.String(): the raised member's id in decimal, trailing space included
    return "memberID:%d alarm:%s " % (member_id, rpc_pb2.AlarmType.Name(alarm))


def parse_retention(mode: str, retention: str) -> float:
    """--auto-compaction-retention: periodic takes a duration ("1h", "30m", "90s") or plain hours
    ("1"); revision takes a revision count. Returns seconds (periodic) or the count (revision)."""
    retention = (retention or "0").strip()
    if mode == "revision":
        return float(int(retention))
    units = {"h": 3600, "m": 60, "s": 1}
    if retention[-1:] in units and retention[:-1]:
        return float(retention[:-1]) * units[retention[-1]]
    return float(retention) * 3600
