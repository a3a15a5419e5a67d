"""Export fastkv's committed state as an etcd 3.4 snapshot: the bbolt file etcd's backend would hold.

`etcdctl snapshot save` against fastkv then yields a file that `etcdctl snapshot status` inspects and
`etcdctl snapshot restore` turns into a data dir real etcd starts from: the migration path from
fastkv back to etcd. What etcd 3.4 keeps in each bucket, and how fastkv's rows map onto it:

    key              revision key (8-byte BE main | "_" | 8-byte BE sub [| "t" for a tombstone]) ->
                     mvccpb.KeyValue. fastkv uses the same revision keys; its record (a packed header
                     + key + value, see _native/mvcccodec_py.py) becomes the protobuf. A tombstone's
                     KeyValue carries only the key, as etcd writes it.
    meta             consistent_index: u64 BE (the same bytes as fastkv's); finishedCompactRev and
                     scheduledCompactRev: a 17-byte revision key {main: compacted revision, sub: 0}
                     (fastkv keeps a bare u64); absent until the first compaction, as in etcd.
    lease            8-byte BE lease id -> leasepb.Lease {ID, TTL, RemainingTTL} (fastkv: two BE
                     int64s, granted TTL and checkpointed remaining TTL).
    members          member id in lower-case hex without padding -> JSON {"id", "peerURLs", "name",
                     "clientURLs"[, "isLearner"]}, from the running server's member list.
    members_removed  empty (fastkv removes no members yet).
    alarm            marshalled etcdserverpb.AlarmMember {memberID, alarm} -> empty value
                     (fastkv: 8-byte BE member id | 4-byte BE alarm type).
    cluster          clusterVersion -> "3.4.0".
    auth             authRevision -> u64 BE, and authEnabled -> b"\x01"/b"\x00" once auth was ever
                     enabled: fastkv's own auth bucket rows, which use etcd's keys and encodings
                     (see fastkv/auth/store.py); authRevision 1 if the bucket is empty, as a
                     fresh etcd 3.4 stores it.
    authUsers        user name -> authpb.User (bcrypt hash, sorted roles), fastkv's rows as they are.
    authRoles        role name -> authpb.Role, fastkv's rows as they are.

These encodings were checked against a snapshot of a fresh etcd 3.4.23; `etcdctl snapshot restore`
drops members, members_removed and cluster and writes the restored cluster's own.
"""
from __future__ import annotations

import json
import struct
from typing import BinaryIO, Iterable

from fastkv._native import load
from fastkv.api.etcdpb.etcdserverpb import rpc_pb2
from fastkv.api.etcdpb.leasepb import lease_pb2
from fastkv.api.etcdpb.mvccpb import kv_pb2
from fastkv.backend import ALARM, AUTH, AUTH_ROLES, AUTH_USERS, KEY, LEASE, META
from fastkv.backend.bbolt import write_bbolt

_codec = load("mvcccodec")

ETCD_CLUSTER_VERSION = "3.4.0"
_U64 = struct.Struct(">Q")
_LEASE_ROW = struct.Struct(">qq")   # fastkv's lease row: granted TTL, remaining TTL
_ALARM_KEY = struct.Struct(">QI")   # fastkv's alarm row key: member id, alarm type

# fastkv's meta keys (mvcc/kvstore.py) are etcd's names too
META_CONSISTENT_INDEX = b"consistent_index"
META_FINISHED_COMPACT = b"finishedCompactRev"
META_SCHEDULED_COMPACT = b"scheduledCompactRev"


def read_committed(backend) -> dict[int, list[tuple[bytes, bytes]]]:
    """Every row of the buckets the export needs, as of one commit point.

    Forces a commit, then reads while holding the backend's tx lock, so no write can land between
    the commit and the last row read: the rows are exactly one committed state (buffered writes
    are included by the forced commit, never half of them). Holds the lock for the read only."""
    tx = backend.batch_tx()
    with tx:
        tx.commit()
        return {b: tx.unsafe_range(b, b"", b"") for b in (KEY, META, LEASE, ALARM, AUTH, AUTH_USERS, AUTH_ROLES)}


def export_etcd_snapshot(backend, fileobj: BinaryIO, *, members: Iterable = (),
                         cluster_version: str = ETCD_CLUSTER_VERSION) -> int:
    """Write fastkv's committed state to `fileobj` as an etcd 3.4 bbolt database; returns its size.

    `members`: the cluster's members (objects with ID, name, peerURLs, clientURLs, isLearner, such
    as etcdserverpb.Member) for etcd's members bucket. The caller owns `fileobj` (a seekable file is
    written in place; anything else is buffered in memory first) and any fsync."""
    rows = read_committed(backend)
    buckets = {
        b"key": (_key_row(k, v) for k, v in rows[KEY]),
        b"meta": _meta_rows(dict(rows[META])),
        b"lease": sorted(_lease_row(k, v) for k, v in rows[LEASE]),
        b"members": sorted(_member_row(m) for m in members),
        b"members_removed": [],
        b"alarm": sorted(_alarm_row(k) for k, _v in rows[ALARM]),
        b"cluster": [(b"clusterVersion", cluster_version.encode())],
        b"auth": _auth_rows(rows[AUTH]),
        b"authUsers": sorted((bytes(k), bytes(v)) for k, v in rows[AUTH_USERS]),
        b"authRoles": sorted((bytes(k), bytes(v)) for k, v in rows[AUTH_ROLES]),
    }
    return write_bbolt(fileobj, buckets)


def _auth_rows(rows) -> list[tuple[bytes, bytes]]:
    out = {bytes(k): bytes(v) for k, v in rows}
    out.setdefault(b"authRevision", _U64.pack(1))
    return sorted(out.items())


def _key_row(rev: bytes, record: bytes) -> tuple[bytes, bytes]:
    _main, _sub, tombstone = _codec.parse_rev_key(rev)
    kv = _codec.decode_record(record)
    if tombstone:
        return rev, kv_pb2.KeyValue(key=kv.key).SerializeToString()
    return rev, kv_pb2.KeyValue(key=kv.key, create_revision=kv.create_revision, mod_revision=kv.mod_revision,
                                version=kv.version, value=kv.value, lease=kv.lease).SerializeToString()


def _meta_rows(meta: dict) -> list[tuple[bytes, bytes]]:
    out = []
    if META_CONSISTENT_INDEX in meta:
        out.append((META_CONSISTENT_INDEX, bytes(meta[META_CONSISTENT_INDEX])))
    if META_FINISHED_COMPACT in meta:
        compacted = _codec.rev_key(_U64.unpack(meta[META_FINISHED_COMPACT])[0], 0)
        # etcd records the compaction it scheduled before it finishes it; both name the same one
        out.append((META_FINISHED_COMPACT, compacted))
        out.append((META_SCHEDULED_COMPACT, compacted))
    return sorted(out)


def _lease_row(key: bytes, row: bytes) -> tuple[bytes, bytes]:
    (lease_id,) = struct.unpack(">q", key)
    ttl, remaining = _LEASE_ROW.unpack(row)
    return key, lease_pb2.Lease(ID=lease_id, TTL=ttl, RemainingTTL=remaining).SerializeToString()


def _member_row(m) -> tuple[bytes, bytes]:
    # Go's encoding/json of etcd's membership.Member: the id as a number, empty fields omitted
    doc: dict = {"id": m.ID, "peerURLs": list(m.peerURLs)}
    if getattr(m, "isLearner", False):
        doc["isLearner"] = True
    if m.name:
        doc["name"] = m.name
    if list(m.clientURLs):
        doc["clientURLs"] = list(m.clientURLs)
    return format(m.ID, "x").encode(), json.dumps(doc, separators=(",", ":")).encode()


def _alarm_row(key: bytes) -> tuple[bytes, bytes]:
    member_id, alarm = _ALARM_KEY.unpack(key)
    return rpc_pb2.AlarmMember(memberID=member_id, alarm=alarm).SerializeToString(), b""
