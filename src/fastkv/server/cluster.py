"""A member among members: the peer transport's way back into raft, membership changes as they
apply, and the Cluster API's writes (member add / remove / update / promote) as proposals.

The transport never touches raft: it calls PeerSide (etcd's rafthttp.Raft), which steps messages
and reports into the node and wakes its loop. Conf changes travel through raft like any write;
their context carries the proposer's request id and the member's JSON so the proposing member can
answer its client when the change applies (etcd keys its wait on ConfChange.ID the same way).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import time

from fastkv import failpoints
from fastkv.api.etcdpb import rpc_pb2
from fastkv.errors import EtcdError, ErrNoLeader, ErrTimeout
from fastkv.raft import ProposalDropped, StepPeerNotFound
from fastkv.server import request as rq
from fastkv.server.membership import ErrIDNotFound, Member, compute_member_id

log = logging.getLogger("fastkv.cluster")
_ID = struct.Struct(">Q")


class PeerSide:
    """The RaftSink the peer transport calls (on the loop thread)."""

    def __init__(self, server):
        self.server = server

    def process(self, msg) -> None:
        try:
            self.server.raft.step(msg)
        except (ProposalDropped, StepPeerNotFound):
            pass  # a forwarded proposal the leader cannot take now: its proposer times out, as in etcd

    def report_unreachable(self, member_id: int) -> None:
        self.server.raft.report_unreachable(member_id)

    def report_snapshot(self, member_id: int, failed: bool) -> None:
        self.server.raft.report_snapshot(member_id, failed)

    def is_id_removed(self, member_id: int) -> bool:
        return self.server.membership.is_removed(member_id)

    def snapshot_received(self, msg, path: str) -> None:
        self.server.snapshot_received(msg, path)


def encode_context(request_id: int, member: Member) -> bytes:
    return _ID.pack(request_id) + member.to_json()


def decode_context(context: bytes) -> tuple[int, bytes]:
    """-> (request id or 0, member JSON or b"")."""
    if len(context) > _ID.size and context[_ID.size:_ID.size + 1] == b"{":
        return _ID.unpack_from(context)[0], bytes(context[_ID.size:])
    return 0, bytes(context)


def new_member(peer_urls, token: str, is_learner: bool) -> Member:
    """A member added at run time: its id mixes in the time, as etcd's does."""
    return Member(id=compute_member_id(peer_urls, token, int(time.time())), peer_urls=list(peer_urls),
                  is_learner=is_learner)


def member_json(m: Member) -> dict:
    """etcd's peer /members shape."""
    d = json.loads(m.to_json())
    d.setdefault("name", "")
    d.setdefault("clientURLs", [])
    return d


ErrNotEnoughStartedMembers = lambda: EtcdError(  # noqa: E731
    "etcdserver: re-configuration failed due to not enough started members", "FAILED_PRECONDITION")
ErrLearnerNotReady = lambda: EtcdError(  # noqa: E731
    "etcdserver: can only promote a learner member which is in sync with leader", "FAILED_PRECONDITION")
ErrNotLeader = lambda: EtcdError("etcdserver: not leader", "FAILED_PRECONDITION")  # noqa: E731
ErrBadLeaderTransferee = lambda: EtcdError("etcdserver: bad leader transferee", "FAILED_PRECONDITION")  # noqa: E731
ErrTimeoutLeaderTransfer = lambda: EtcdError(  # noqa: E731
    "etcdserver: request timed out, leader transfer took too long", "DEADLINE_EXCEEDED")
LEARNER_READY_PERCENT = 0.9
ETCD_SERVER_VERSION = "3.4.23"   # the etcd release whose API and behaviour fastkv matches
MIN_CLUSTER_VERSION = "3.0.0"    # etcd's cluster version while not every member has told its own
MONITOR_VERSION_SECONDS = 4.0    # etcd: the peer connection's write timeout less a second


def _version_tuple(v: str) -> tuple:
    """"3.4.23" -> (3, 4, 23); raises ValueError on what is not a version."""
    parts = tuple(int(p) for p in v.split("-", 1)[0].split("."))
    if len(parts) != 3:
        raise ValueError(f"not a version: {v!r}")
    return parts  # etcd: a learner is in sync when its match is >= 90% of the leader's


class ClusterMember:
    """EtcdServer's cluster side (a mixin: it uses the server's raft, membership, wait, transport)."""

    # --- applying membership changes ----------------------------------------------------------
    def _apply_conf_change(self, entry) -> None:
        pb = self.raft.node.pb
        cc = pb.decode_conf_change(entry.data)
        request_id, _ = decode_context(cc.context)
        with self.backend.batch_tx():  # membership rows commit with the consistent index
            self.membership.apply_conf_change(cc, pb)
            self.applier.mark_applied(entry.index)
        self.raft.conf_state = self.raft.node.apply_conf_change(cc)
        if request_id:
            self.wait.trigger(request_id, self.members())
        if cc.type == pb.CONF_CHANGE_REMOVE_NODE and cc.node_id == self.member_id:
            log.warning("this member (%x) was removed from the cluster; stopping", self.member_id)
            self._removed()

    def _members_changed(self, kind: str, member) -> None:
        if member.id == self.member_id:
            return
        if kind == "add":
            self.transport.add_peer(member.id, member.peer_urls)
        elif kind == "update":
            self.transport.update_peer(member.id, member.peer_urls)
        elif kind == "remove":
            self.transport.remove_peer(member.id)

    def _removed(self) -> None:
        """This member is out of the cluster (applied its own removal, or a peer said so): stop
        serving, as etcd does ("the member has been permanently removed from the cluster")."""
        self.removed_from_cluster = True
        self.stopping.set()

    async def _publish(self) -> None:
        """Tell the cluster this member's name and client URLs, through raft (etcd's publish), until
        it is applied; that is how MemberList learns them on every member."""
        me = rpc_pb2.Member(ID=self.member_id, name=self.cfg.name, clientURLs=self.cfg.advertise_client_urls)
        while True:
            m = self.membership.get(self.member_id)
            if m is not None and m.name == self.cfg.name and m.client_urls == list(self.cfg.advertise_client_urls):
                log.info("published {Name:%s ClientURLs:[%s]} to cluster %x", self.cfg.name,
                         " ".join(self.cfg.advertise_client_urls), self.cluster_id)
                return
            try:
                await self.propose(rq.MEMBER_ATTRIBUTES, me)
            except EtcdError as exc:
                log.warning("failed to publish local member to cluster through raft (%s); retrying", exc)
                await asyncio.sleep(self.cfg.election_timeout_ms / 1000.0)

    # --- the cluster version (etcd's monitorVersions) -------------------------------------------
    async def _monitor_versions(self) -> None:
        """The leader sets the cluster version to the lowest major.minor its members run, when it
        becomes leader and every MONITOR_VERSION_SECONDS after; until every member has answered it
        is etcd's minimum, 3.0.0, as in etcd."""
        while True:
            try:
                async with asyncio.timeout(MONITOR_VERSION_SECONDS):
                    await self._became_leader.wait()
            except TimeoutError:
                pass
            self._became_leader.clear()
            if not self.raft.is_leader:
                continue
            try:
                await self._decide_cluster_version()
            except EtcdError as exc:
                log.warning("cannot set the cluster version yet: %s", exc.message)

    async def _decide_cluster_version(self) -> None:
        from fastkv.transport.peerrequests import ForwardRefused, PeerRequestError, version_of_peer

        lowest: tuple | None = _version_tuple(ETCD_SERVER_VERSION)
        current = self.membership.cluster_version
        if current and _version_tuple(current)[:2] >= lowest[:2]:
            return  # already at this member's own major.minor: no answer could raise it
        tls = self.cfg.peer_tls
        ssl = tls.client_context() if tls is not None else None
        for m in self.membership.sorted_members():
            if m.id == self.member_id:
                continue
            try:
                v = _version_tuple((await version_of_peer(m.peer_urls, client_ssl=ssl, timeout=1.0))["etcdserver"])
            except (PeerRequestError, ForwardRefused, KeyError, ValueError, TypeError):
                v = None
            if v is None:
                lowest = None  # a member that did not answer: undecided, as etcd's decideClusterVersion
                break
            lowest = min(lowest, v)
        if lowest is None:
            if current:
                return
            target = MIN_CLUSTER_VERSION
        else:
            target = "%d.%d.0" % lowest[:2]
            if current and _version_tuple(current) >= _version_tuple(target):
                return
        await self.propose(rq.CLUSTER_VERSION_SET, rpc_pb2.StatusResponse(version=target))

    async def _join_existing(self) -> None:
        """--initial-cluster-state existing with no data yet: learn the cluster id and its members
        from the peers in --initial-cluster; this member must be one of them (added beforehand with
        `etcdctl member add`). Raft then starts with no bootstrap entries: the leader sends the log."""
        cfg = self.cfg
        mine = set(cfg.initial_advertise_peer_urls)
        others = [u for name, urls in cfg.cluster_members().items() if name != cfg.name for u in urls]
        tls = cfg.peer_tls
        client_ssl = tls.client_context() if tls is not None else None
        cluster_id, members = await fetch_cluster(others, client_ssl)
        me = next((m for m in members if set(m.peer_urls) == mine), None)
        if me is None:
            raise ValueError(f"this member's peer URLs {sorted(mine)} are not in the cluster's member list; "
                             "add it first with `etcdctl member add NAME --peer-urls=...`")
        self.member_id, self.cluster_id = me.id, cluster_id
        self.initial_members = {m.id: m for m in members}
        log.info("joining cluster %x as member %x (%d members)", cluster_id, me.id, len(members))

    # --- the Cluster API's writes ---------------------------------------------------------------
    async def _propose_conf_change(self, cc_type: int, member_id: int, member) -> list:
        if not self.raft.leader:
            raise ErrNoLeader()
        pb = self.raft.node.pb
        request_id = self.wait.next_id()
        fut = self.wait.register(request_id)
        cc = pb.ConfChange(cc_type, member_id, encode_context(request_id, member))
        try:
            self.raft.propose_conf_change(cc)
        except ProposalDropped:
            self.wait.cancel(request_id)
            raise ErrNoLeader() from None
        return await fut  # the wait registry fails it with ErrTimeout after request_timeout

    def _started_members(self) -> set:
        """Members this one is connected to (etcd: peers whose stream is active), and itself."""
        return {m.id for m in self.membership.sorted_members()
                if m.id == self.member_id or self.transport.active_since(m.id) is not None}

    async def member_add(self, peer_urls, is_learner: bool):
        if not peer_urls:
            raise EtcdError("etcdserver: given member URLs are invalid", "INVALID_ARGUMENT")
        m = new_member(peer_urls, self.cfg.initial_cluster_token, is_learner)
        self.membership.check_add(m)
        if self.cfg.strict_reconfig_check and not is_learner:
            voters = [v.id for v in self.membership.voters()]
            started = len(self._started_members() & set(voters))
            # quorum of the grown cluster (the new one is not started), except that a cluster of one
            # may grow to two: that is how one restored from a snapshot or --force-new-cluster grows back
            if started < (len(voters) + 1) // 2 + 1 and not (started == 1 and len(voters) == 1):
                raise ErrNotEnoughStartedMembers()
        pb = self.raft.node.pb
        kind = pb.CONF_CHANGE_ADD_LEARNER_NODE if is_learner else pb.CONF_CHANGE_ADD_NODE
        members = await self._propose_conf_change(kind, m.id, m)
        return m, members

    async def member_remove(self, member_id: int) -> list:
        self.membership.check_remove(member_id)
        target = self.membership.get(member_id)
        if self.cfg.strict_reconfig_check and not target.is_learner:
            voters = {v.id for v in self.membership.voters()}
            started = self._started_members() & voters
            remaining = len(voters) - 1
            if len(started - {member_id}) < remaining // 2 + 1:
                raise ErrNotEnoughStartedMembers()
        pb = self.raft.node.pb
        return await self._propose_conf_change(pb.CONF_CHANGE_REMOVE_NODE, member_id, target)

    async def member_update(self, member_id: int, peer_urls) -> list:
        self.membership.check_update(member_id, peer_urls)
        old = self.membership.get(member_id)
        m = Member(id=member_id, peer_urls=list(peer_urls), name=old.name, client_urls=old.client_urls,
                   is_learner=old.is_learner)
        pb = self.raft.node.pb
        return await self._propose_conf_change(pb.CONF_CHANGE_UPDATE_NODE, member_id, m)

    async def member_promote(self, member_id: int) -> list:
        """Only the leader knows whether the learner is in sync: a follower forwards the promote to
        the leader's peer port and answers with what the leader said, as etcd does."""
        if not self.raft.is_leader:
            from fastkv.transport.peerrequests import ForwardRefused, promote_on_leader

            try:
                members = await self._ask_leader("a member promote", promote_on_leader, member_id)
            except ForwardRefused as exc:
                if exc.status == 404:
                    raise ErrIDNotFound() from None
                raise EtcdError(exc.text, "FAILED_PRECONDITION") from None  # not a learner / not in sync
            return [rpc_pb2.Member(ID=m["id"], name=m.get("name", ""), peerURLs=m.get("peerURLs", []),
                                   clientURLs=m.get("clientURLs", []), isLearner=m.get("isLearner", False))
                    for m in members]
        return await self.member_promote_local(member_id)

    async def member_promote_local(self, member_id: int) -> list:
        if not self.raft.is_leader:
            raise ErrNotLeader()
        self.membership.check_promote(member_id)
        st = self.raft.node.status()
        learner, leader = st.progress.get(member_id), st.progress.get(self.member_id)
        if learner is None or leader is None or learner.match < leader.match * LEARNER_READY_PERCENT:
            raise ErrLearnerNotReady()
        pb = self.raft.node.pb
        return await self._propose_conf_change(pb.CONF_CHANGE_ADD_NODE, member_id, self.membership.get(member_id))

    async def _promote_for_peer(self, member_id: int) -> list:
        """POST /members/promote/<id> on the peer port: etcd's member JSON objects."""
        return [{"id": m.ID, "name": m.name, "peerURLs": list(m.peerURLs), "clientURLs": list(m.clientURLs),
                 **({"isLearner": True} if m.isLearner else {})}
                for m in await self.member_promote_local(member_id)]

    async def move_leader(self, target: int) -> None:
        if not self.raft.is_leader:
            raise ErrNotLeader()
        m = self.membership.get(target)
        if m is None or m.is_learner:
            raise ErrBadLeaderTransferee()
        if target == self.member_id:
            return
        self.raft.transfer_leadership(target)
        deadline = time.monotonic() + self.request_timeout
        while self.raft.leader != target:
            if time.monotonic() > deadline:
                raise ErrTimeoutLeaderTransfer()
            await asyncio.sleep(self.cfg.heartbeat_interval_ms / 1000.0)

    async def _ask_leader(self, what: str, call, *args):
        """`call(leader's peer URLs, *args, client_ssl=, timeout=)` against the current leader,
        asked again (the next leader, if it changed) until the request timeout, as etcd does.
        Refusals (ForwardRefused) pass through; running out of time is "no leader" when none is
        known, else "request timed out"."""
        from fastkv.transport.peerrequests import PeerRequestError

        tls = self.cfg.peer_tls
        ssl = tls.client_context() if tls is not None else None
        deadline = time.monotonic() + self.request_timeout
        while True:
            leader = self.membership.get(self.raft.leader) if self.raft.leader else None
            left = deadline - time.monotonic()
            if leader is not None and leader.id != self.member_id and left > 0:
                try:
                    return await call(leader.peer_urls, *args, client_ssl=ssl, timeout=left)
                except PeerRequestError as exc:
                    log.warning("forwarding %s to leader %x failed: %s", what, leader.id, exc)
            if time.monotonic() >= deadline:
                raise ErrTimeout() if self.raft.leader else ErrNoLeader()
            await asyncio.sleep(self.cfg.heartbeat_interval_ms / 1000.0)

    async def forward_lease_renew(self, lease_id: int) -> int:
        """A keep-alive on a follower, renewed by the leader (etcd forwards it the same way)."""
        from fastkv.transport.peerrequests import renew_on_leader

        return await self._ask_leader("a keep-alive of lease %x" % lease_id, renew_on_leader, lease_id)

    async def forward_lease_time_to_live(self, req):
        """LeaseTimeToLive on a follower: the leader's answer (only it keeps lease deadlines)."""
        from fastkv.transport.peerrequests import time_to_live_on_leader

        return await self._ask_leader("a time-to-live of lease %x" % req.ID, time_to_live_on_leader, req)

    # --- snapshots between members (the pipeline) -------------------------------------------------
    def _snapshot_db_path(self, index: int) -> str:
        return os.path.join(self.member_dir, "snap", "%016x.snap.db" % index)

    def _send_snapshot(self, msg) -> None:
        """Leader: a follower needs a snapshot. Send a consistent copy of our backend with the
        message; its state is at or past the snapshot's index, and the follower's applier skips
        the entries its consistent index already covers (etcd sends its current backend too)."""
        asyncio.get_running_loop().create_task(self._ship_snapshot(msg), name=f"snapshot-to-{msg.to:x}")

    async def _ship_snapshot(self, msg) -> None:
        import shutil
        import tempfile

        tmp = tempfile.mkdtemp(prefix="send-", dir=os.path.join(self.member_dir, "snap"))
        try:
            path = await asyncio.get_running_loop().run_in_executor(None, self.backend.copy_to, tmp)
            failpoints.hit("transport.send_snapshot.before")
            log.info("sending snapshot at index %d (%d bytes of backend) to %x",
                     msg.snapshot.metadata.index, os.path.getsize(path), msg.to)
            ok = await self.transport.send_snapshot(msg, path)
            failpoints.hit("transport.send_snapshot.after")
            log.info("snapshot to %x %s", msg.to, "accepted" if ok else "failed")
        except Exception:  # noqa: BLE001 - raft hears a failure and retries later
            log.exception("sending a snapshot to %x failed", msg.to)
            self.raft.report_snapshot(msg.to, True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def snapshot_received(self, msg, path: str) -> None:
        """Follower: the transport verified a leader's backend file. Keep it by the snapshot's
        index, then let raft decide; the Ready carrying the snapshot installs the file."""
        os.replace(path, self._snapshot_db_path(msg.snapshot.metadata.index))
        self.raft.step(msg)

    def _install_snapshot(self, snap) -> None:
        """The backend becomes the leader's file; everything derived from it is rebuilt."""
        index = snap.metadata.index
        path = self._snapshot_db_path(index)
        if not os.path.exists(path):
            raise RuntimeError(f"snapshot at index {index} has no backend file at {path}")
        failpoints.hit("raft.apply_snapshot.before")
        t0 = time.perf_counter()
        self.backend.replace_data(path)
        self.kv.reload()
        self.lessor.recover(self.kv.restored_leases.items())
        self.alarms.load()
        self.auth_store.recover()
        before = {m.id for m in self.membership.sorted_members()}
        self.membership.load()
        after = {m.id: m for m in self.membership.sorted_members()}
        for mid in before - set(after):
            self.transport.remove_peer(mid)
        for mid, m in after.items():
            if mid != self.member_id:
                self.transport.add_peer(mid, m.peer_urls)
        self.applier.applied_index = max(index, self.kv.consistent_index)
        self._snapshot_applied = index
        self.watchable.restored()
        failpoints.hit("raft.apply_snapshot.after")
        log.info("applied snapshot at index %d: revision %d, %d keys, in %.1f ms", index,
                 self.kv.current_revision, len(self.kv.index), 1000 * (time.perf_counter() - t0))


def has_peers(backend) -> bool:
    """True when the backend already knows members besides one (a restarted cluster member)."""
    from fastkv.backend import MEMBERS

    with backend.read_tx() as tx:
        return len(tx.unsafe_range(MEMBERS, b"", b"", 2)) > 1


async def fetch_cluster(peer_urls: list, client_ssl=None, timeout: float = 5.0) -> tuple[int, list]:
    """(cluster id, [Member]) from the first peer that answers GET /members (etcd's
    GetClusterFromRemotePeers, used by a member joining with --initial-cluster-state existing)."""
    from fastkv.transport.peerrequests import ForwardRefused, PeerRequestError, members_of_peer

    errors = []
    for url in peer_urls:
        try:
            cluster_id, rows = await members_of_peer([url], client_ssl=client_ssl, timeout=timeout)
            return cluster_id, [Member(id=int(r["id"]), peer_urls=list(r.get("peerURLs") or []),
                                       name=r.get("name", ""), client_urls=list(r.get("clientURLs") or []),
                                       is_learner=bool(r.get("isLearner"))) for r in rows]
        except (PeerRequestError, ForwardRefused, ValueError, KeyError, TypeError) as exc:
            errors.append(f"{url}: {exc}")
    raise ValueError("cannot fetch the cluster's members from any peer in --initial-cluster "
                     f"({'; '.join(errors) or 'no peer URLs'}); is the cluster running?")
