"""The applier: runs committed raft entries against the MVCC store, the lessor and the alarms.

Every member applies the same entries in the same order and gets the same state; the member that
proposed an entry also resolves the waiting request with the result. An entry at or below the
store's consistent index was already applied before a restart (its effects are in the backend) and is
skipped: that is what makes replaying the WAL after a crash apply each entry exactly once.

Results are protobuf responses (headers carry only the revision; the gRPC layer fills in cluster,
member and term) or an EtcdError, which the waiting request raises.
"""
from __future__ import annotations

import logging
import struct

from fastkv.api import convert
from fastkv.api.etcdpb import rpc_pb2
from fastkv.backend import ALARM
from fastkv.errors import EtcdError, ErrCorrupt, ErrNoSpace
from fastkv.mvcc.ops import txn_has_puts
from fastkv.server import request as rq

log = logging.getLogger(__name__)

NOSPACE = rpc_pb2.NOSPACE
CORRUPT = rpc_pb2.CORRUPT
# With a CORRUPT alarm raised, etcd's applier refuses every write it is handed (its corrupt applier
# wraps the others, so this refusal comes before NOSPACE's); reads do not go through the applier.
_REFUSED_WHEN_CORRUPT = frozenset((rq.PUT, rq.DELETE_RANGE, rq.TXN, rq.COMPACT, rq.LEASE_GRANT, rq.LEASE_REVOKE))
_ALARM_KEY = struct.Struct(">QI")


class Alarms:
    """Active alarms, persisted in the backend's alarm bucket (member id, alarm type)."""

    def __init__(self, backend):
        self._tx = backend.batch_tx()
        self.active: set[tuple[int, int]] = set()
        self._types: frozenset = frozenset()  # alarm types raised by any member: has() is per request
        self.load()

    def load(self) -> None:
        """(Re)read the alarm bucket (start, and after a snapshot replaced the backend)."""
        self.active = set()
        with self._tx as tx:
            for k, _v in tx.unsafe_range(ALARM, b"", b""):
                self.active.add(_ALARM_KEY.unpack(k))
        self._changed()

    def _changed(self) -> None:
        self._types = frozenset(a for _m, a in self.active)

    def activate(self, member_id: int, alarm: int) -> None:
        with self._tx as tx:
            tx.unsafe_put(ALARM, _ALARM_KEY.pack(member_id, alarm), b"")
        self.active.add((member_id, alarm))
        self._changed()

    def deactivate(self, member_id: int, alarm: int) -> bool:
        if (member_id, alarm) not in self.active:
            return False
        with self._tx as tx:
            tx.unsafe_delete(ALARM, _ALARM_KEY.pack(member_id, alarm))
        self.active.discard((member_id, alarm))
        self._changed()
        return True

    def has(self, alarm: int) -> bool:
        return alarm in self._types

    def members(self, alarm: int | None = None) -> list:
        return [rpc_pb2.AlarmMember(memberID=m, alarm=a) for m, a in sorted(self.active)
                if alarm in (None, rpc_pb2.NONE) or a == alarm]


class Applier:
    def __init__(self, kv, lessor, alarms: Alarms, wait):
        self.kv = kv
        self.lessor = lessor
        self.alarms = alarms
        self.wait = wait
        self.applied_index = kv.consistent_index
        self._batch_tx = kv.backend.batch_tx()
        self.membership = None  # the server's Membership, for members' published attributes
        self.applied_by_kind: dict = {}  # request kind -> entries applied (etcd_mvcc_*_total)
        # the auth layer (server/auth_checks.AuthApplier): admin checks, auth proposals, permission
        # checks on writes; None = no auth store (embedded uses, tests of the applier alone)
        self.auth = None

    def apply_normal(self, index: int, data: bytes) -> None:
        """Apply one normal entry (empty data = the leader's no-op at the start of its term)."""
        if index <= self.kv.consistent_index:
            return
        request_id = 0
        result = None
        # One tx block around the whole entry, consistent index first (as etcd): a backend commit
        # (the interval committer, or the batch limit reached inside an op) can then only ever hold
        # an entry completely, together with its index, so replay after a crash neither re-applies
        # it (a put twice: a revision hole) nor skips part of it.
        with self._batch_tx:
            self.kv.set_consistent_index(index)
            if data:
                try:
                    request_id, kind, msg, username, auth_rev = rq.decode_with_auth(data)
                    if self.auth is None:
                        result = self._dispatch(kind, msg)
                    else:
                        result = self.auth.apply(index, kind, msg, username, auth_rev, self._dispatch)
                except EtcdError as exc:
                    result = exc
                except ValueError as exc:  # not a request we know: refuse it, identically on every member
                    log.error("entry %d is not a valid request: %s", index, exc)
                    result = exc
        self.applied_index = index
        if request_id:
            self.wait.trigger(request_id, result)

    def mark_applied(self, index: int) -> None:
        """A conf change (or other non-request entry) at `index` was applied."""
        if index > self.kv.consistent_index:
            with self._batch_tx:
                self.kv.set_consistent_index(index)
        self.applied_index = max(self.applied_index, index)

    def _dispatch(self, kind: int, msg):
        kv = self.kv
        self.applied_by_kind[kind] = self.applied_by_kind.get(kind, 0) + 1
        if kind in _REFUSED_WHEN_CORRUPT and self.alarms.has(CORRUPT):
            raise ErrCorrupt()
        nospace = self.alarms.has(NOSPACE)
        if kind == rq.PUT:
            if nospace:
                raise ErrNoSpace()
            return convert.put_response(kv.put(convert.put_op(msg)))
        if kind == rq.DELETE_RANGE:
            return convert.delete_response(kv.delete_range(convert.delete_op(msg)))
        if kind == rq.TXN:
            t = convert.txn_op(msg)
            if nospace and txn_has_puts(t):
                raise ErrNoSpace()
            return convert.txn_response(kv.txn(t))
        if kind == rq.COMPACT:
            rev = kv.compact(msg.revision)
            return rpc_pb2.CompactionResponse(header=rpc_pb2.ResponseHeader(revision=rev))
        if kind == rq.LEASE_GRANT:
            if nospace:
                raise ErrNoSpace()
            lease = self.lessor.grant(msg.ID, msg.TTL)
            return rpc_pb2.LeaseGrantResponse(ID=lease.id, TTL=lease.ttl)
        if kind == rq.LEASE_REVOKE:
            self.lessor.revoke(msg.ID)
            return rpc_pb2.LeaseRevokeResponse()
        if kind == rq.LEASE_CHECKPOINT:
            for cp in msg.checkpoints:
                self.lessor.apply_checkpoint(cp.ID, cp.remaining_TTL)
            return rpc_pb2.LeaseCheckpointResponse()
        if kind == rq.ALARM:
            return self._alarm(msg)
        if kind == rq.MEMBER_ATTRIBUTES:
            if self.membership is not None:
                self.membership.update_attributes(msg.ID, msg.name, msg.clientURLs)
            return rpc_pb2.MemberListResponse()
        if kind == rq.CLUSTER_VERSION_SET:
            if self.membership is not None:
                self.membership.set_cluster_version(msg.version)
            return rpc_pb2.StatusResponse()
        raise ValueError(f"unknown request kind {kind}")

    def _alarm(self, msg):
        resp = rpc_pb2.AlarmResponse()
        if msg.action == rpc_pb2.AlarmRequest.GET:
            resp.alarms.extend(self.alarms.members(msg.alarm))
        elif msg.action == rpc_pb2.AlarmRequest.ACTIVATE:
            if msg.alarm != rpc_pb2.NONE:
                if msg.alarm == CORRUPT and not self.alarms.has(CORRUPT):
                    log.warning("detected data corruption (member %x raised the CORRUPT alarm); the "
                                "cluster now refuses writes until the alarm is disarmed", msg.memberID)
                self.alarms.activate(msg.memberID, msg.alarm)
                resp.alarms.append(rpc_pb2.AlarmMember(memberID=msg.memberID, alarm=msg.alarm))
        elif msg.action == rpc_pb2.AlarmRequest.DEACTIVATE:
            if self.alarms.deactivate(msg.memberID, msg.alarm):
                resp.alarms.append(rpc_pb2.AlarmMember(memberID=msg.memberID, alarm=msg.alarm))
        return resp
