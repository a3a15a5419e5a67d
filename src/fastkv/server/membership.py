"""The cluster's membership (etcd's membership.RaftCluster): who is in the cluster.

Members change only by applying committed entries: conf changes (add, add as learner, promote,
remove, update peer URLs) and a member's own publication of its name and client URLs. Each change
is written to the backend's members / members_removed buckets inside the batch tx of the entry that
made it, so the consistent index and the membership commit together; a restart or a received
snapshot rebuilds membership from the buckets. Rows use etcd 3.4's encoding (key: member id in
lower-case hex; value: the member's JSON), so an etcd-format snapshot carries them as they are.

Conf change contexts carry the member as JSON (etcd's layout: {"id", "peerURLs", "name",
"clientURLs", "isLearner"}); a bootstrap entry has none and the member comes from --initial-cluster.
"""
from __future__ import annotations

import hashlib
import json
import logging
import struct
from dataclasses import dataclass, field

from fastkv.backend import CLUSTER, MEMBERS, MEMBERS_REMOVED
from fastkv.errors import EtcdError

log = logging.getLogger("fastkv.server")

ErrIDRemoved = lambda: EtcdError("etcdserver: ID removed", "FAILED_PRECONDITION")  # noqa: E731
ErrIDExists = lambda: EtcdError("etcdserver: member ID already exist", "FAILED_PRECONDITION")  # noqa: E731
ErrPeerURLExists = lambda: EtcdError("etcdserver: Peer URLs already exists", "FAILED_PRECONDITION")  # noqa: E731
ErrIDNotFound = lambda: EtcdError("etcdserver: member not found", "NOT_FOUND")  # noqa: E731
ErrMemberNotLearner = lambda: EtcdError("etcdserver: can only promote a learner member", "FAILED_PRECONDITION")  # noqa: E731
ErrTooManyLearners = lambda: EtcdError("etcdserver: too many learner members in cluster", "FAILED_PRECONDITION")  # noqa: E731

MAX_LEARNERS = 1  # etcd 3.4's maxLearners


@dataclass
class Member:
    id: int
    peer_urls: list = field(default_factory=list)
    name: str = ""
    client_urls: list = field(default_factory=list)
    is_learner: bool = False

    def to_json(self) -> bytes:
        d = {"id": self.id, "peerURLs": list(self.peer_urls)}
        if self.name:
            d["name"] = self.name
        if self.client_urls:
            d["clientURLs"] = list(self.client_urls)
        if self.is_learner:
            d["isLearner"] = True
        return json.dumps(d, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Member":
        d = json.loads(data)
        return cls(id=int(d["id"]), peer_urls=list(d.get("peerURLs") or []), name=d.get("name", ""),
                   client_urls=list(d.get("clientURLs") or []), is_learner=bool(d.get("isLearner")))


def compute_member_id(peer_urls, token: str, now: int | None = None) -> int:
    """etcd's member id: SHA-1 of the sorted peer URLs, the cluster token and (for a member added at
    run time) the time of the request; the first 8 bytes, big-endian."""
    b = "".join(sorted(peer_urls)) + token
    if now is not None:
        b += str(now)
    return struct.unpack(">Q", hashlib.sha1(b.encode()).digest()[:8])[0]


def compute_cluster_id(member_ids) -> int:
    h = hashlib.sha1(b"".join(struct.pack(">Q", i) for i in sorted(member_ids))).digest()
    return struct.unpack(">Q", h[:8])[0]


CLUSTER_VERSION_KEY = b"clusterVersion"  # etcd's key in its cluster bucket


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


class Membership:
    """The members as of the applied index. Loop thread only; writes need a batch tx open."""

    def __init__(self, backend, local_id: int, initial: dict[int, Member] | None = None):
        self.backend = backend
        self.local_id = local_id
        self.initial = dict(initial or {})  # bootstrap members by id (a fresh start's --initial-cluster)
        self.members: dict[int, Member] = {}
        self.removed: set[int] = set()
        self.on_change = None  # fn(kind, member): "add" | "update" | "remove" (the transport follows)
        self.load()

    def load(self) -> None:
        """Rebuild from the backend (start, and after a snapshot replaced it)."""
        tx = self.backend.read_tx()
        with tx:
            rows = tx.unsafe_range(MEMBERS, b"", b"")
            gone = tx.unsafe_range(MEMBERS_REMOVED, b"", b"")
        self.members = {m.id: m for m in (Member.from_json(v) for _, v in rows)}
        self.removed = {int(k, 16) for k, _ in gone}
        with self.backend.read_tx() as tx:
            raw = tx.unsafe_get(CLUSTER, CLUSTER_VERSION_KEY)
        self.cluster_version = raw.decode() if raw else ""  # "" until the leader decided it

    # --- reads ----------------------------------------------------------------------------------
    def sorted_members(self) -> list:
        return [self.members[i] for i in sorted(self.members)]

    def get(self, member_id: int) -> Member | None:
        return self.members.get(member_id)

    def is_removed(self, member_id: int) -> bool:
        return member_id in self.removed

    def voters(self) -> list:
        return [m for m in self.sorted_members() if not m.is_learner]

    # --- validation before proposing (etcd's ValidateConfigurationChange) ---------------------------
    def check_add(self, member: Member) -> None:
        if member.id in self.removed:
            raise ErrIDRemoved()
        if member.id in self.members:
            raise ErrIDExists()
        urls = {u for m in self.members.values() for u in m.peer_urls}
        if urls & set(member.peer_urls):
            raise ErrPeerURLExists()
        if member.is_learner and sum(m.is_learner for m in self.members.values()) >= MAX_LEARNERS:
            raise ErrTooManyLearners()

    def check_remove(self, member_id: int) -> None:
        if member_id in self.removed:
            raise ErrIDRemoved()
        if member_id not in self.members:
            raise ErrIDNotFound()

    def check_promote(self, member_id: int) -> None:
        m = self.members.get(member_id)
        if m is None:
            raise ErrIDNotFound()
        if not m.is_learner:
            raise ErrMemberNotLearner()

    def check_update(self, member_id: int, peer_urls) -> None:
        if member_id in self.removed:
            raise ErrIDRemoved()
        if member_id not in self.members:
            raise ErrIDNotFound()
        urls = {u for m in self.members.values() if m.id != member_id for u in m.peer_urls}
        if urls & set(peer_urls):
            raise ErrPeerURLExists()

    # --- applying committed changes (inside the entry's batch tx) -----------------------------------
    def apply_conf_change(self, cc, pb) -> None:
        """Apply one committed conf change; idempotent (entries are re-applied after a restart)."""
        from fastkv.server.cluster import decode_context

        _, body = decode_context(cc.context)
        member = Member.from_json(body) if body else self.initial.get(cc.node_id)
        if cc.type == pb.CONF_CHANGE_REMOVE_NODE:
            old = self.members.pop(cc.node_id, None)
            if cc.node_id not in self.removed:
                self.removed.add(cc.node_id)
                self._write_removed(cc.node_id)
            if old is not None and self.on_change is not None:
                self.on_change("remove", old)
            return
        if cc.type == pb.CONF_CHANGE_UPDATE_NODE:
            if member is not None:
                self.update_peer_urls(cc.node_id, member.peer_urls)
            return
        if member is None:
            member = Member(id=cc.node_id)
        learner = cc.type == pb.CONF_CHANGE_ADD_LEARNER_NODE
        old = self.members.get(cc.node_id)
        if old is not None:
            if old.is_learner and not learner:  # promotion
                old.is_learner = False
                self._write(old)
                if self.on_change is not None:
                    self.on_change("update", old)
            return
        if cc.node_id in self.removed:
            return
        member.id = cc.node_id
        member.is_learner = learner
        self.members[member.id] = member
        self._write(member)
        if self.on_change is not None:
            self.on_change("add", member)

    def update_peer_urls(self, member_id: int, peer_urls) -> None:
        m = self.members.get(member_id)
        if m is not None:
            m.peer_urls = list(peer_urls)
            self._write(m)
            if self.on_change is not None:
                self.on_change("update", m)

    def update_attributes(self, member_id: int, name: str, client_urls) -> None:
        """A member published its name and client URLs (applied from the log, as etcd does)."""
        m = self.members.get(member_id)
        if m is not None and (m.name, m.client_urls) != (name, list(client_urls)):
            m.name, m.client_urls = name, list(client_urls)
            self._write(m)

    def set_cluster_version(self, version: str) -> None:
        """The leader decided the cluster version (applied from the log, as etcd's ClusterVersionSet)."""
        if version == self.cluster_version:
            return
        if self.cluster_version:
            log.info("updated the cluster version from %s to %s", _major_minor(self.cluster_version),
                     _major_minor(version))
        else:
            log.info("set initial cluster version to %s", _major_minor(version))
        self.cluster_version = version
        tx = self.backend.batch_tx()
        with tx:
            tx.unsafe_put(CLUSTER, CLUSTER_VERSION_KEY, version.encode())

    def _write(self, m: Member) -> None:
        tx = self.backend.batch_tx()
        with tx:
            tx.unsafe_put(MEMBERS, b"%x" % m.id, m.to_json())

    def _write_removed(self, member_id: int) -> None:
        tx = self.backend.batch_tx()
        with tx:
            tx.unsafe_delete(MEMBERS, b"%x" % member_id)
            tx.unsafe_put(MEMBERS_REMOVED, b"%x" % member_id, b"removed")
