"""The HTTP/1.1 side of the peer port: what a joining member or an operator asks a peer.

GET /members  the member list as JSON, like etcd's peer /members (with X-Etcd-Cluster-ID)
GET /version  {"etcdserver": ..., "etcdcluster": ...}
GET /health   {"health": "true"} or "false" (503 when unhealthy); etcd serves this on the client
              port only, fastkv also on the peer port
Other paths get etcd's "404 page not found", other methods its 405 "Method Not Allowed".

Answers come from callables the server provides; one request per connection (we answer with
`Connection: close`), heads capped at MAX_HEAD bytes.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("fastkv.transport")

MAX_HEAD = 16 << 10
HTTP_METHOD_PREFIXES = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")

ETCD_VERSION = {"etcdserver": "3.4.23", "etcdcluster": "3.4.0"}


@dataclass
class PeerHTTP:
    """The server's answers. `members()` returns etcd's member JSON objects:
    {"id": int, "name": str, "peerURLs": [...], "clientURLs": [...]} (isLearner when true).
    `health()` returns True when the member is healthy (has a leader, no alarm)."""
    members: Callable[[], list] | None = None
    version: Callable[[], dict] | None = None
    health: Callable[[], bool] | None = None
    # POST /leases (etcd's leasehttp): a follower forwards a client's keep-alive to the leader.
    # async fn(lease id) -> TTL (0: no such lease); raises when this member cannot renew (not leader)
    lease_renew: Callable | None = None
    # POST /leases/internal: a follower asks the leader for a lease's time to live.
    # async fn(LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse (TTL -1: no such lease)
    lease_time_to_live: Callable | None = None
    # POST /members/promote/<id>: a follower forwards MemberPromote to the leader, which alone knows
    # whether the learner is in sync. async fn(member id) -> the member list as etcd's JSON objects;
    # raises EtcdError with etcd's errors
    member_promote: Callable | None = None
    # POST /members/hashkv: the corruption check asks each peer for its HashKV at a revision.
    # async fn(HashKVRequest) -> HashKVResponse; raises EtcdError (future revision, compacted)
    hash_kv: Callable | None = None


# The POST routes a member asks the leader through (etcd: leasehttp and the peer member handler).
LEASES_PATH = b"/leases"                    # keep-alive: LeaseKeepAliveRequest -> LeaseKeepAliveResponse
LEASE_INTERNAL_PATH = b"/leases/internal"   # time-to-live: LeaseTimeToLiveRequest -> ...Response
PROMOTE_PREFIX = b"/members/promote/"       # + decimal member id, no body -> the member list as JSON
HASHKV_PATH = b"/members/hashkv"            # HashKVRequest -> HashKVResponse (etcd 3.5's peer path)
MAX_POST_BODY = 64  # each body is a lease id and a flag: anything longer is not one of ours


def post_request(head: bytes) -> tuple[bytes, int] | None:
    """For a POST to one of the routes above: (path, body length still to read); None for every
    other request (answered by `respond`)."""
    line, _, rest = head.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3 or parts[0] != b"POST":
        return None
    path = parts[1].split(b"?", 1)[0]
    if path not in (LEASES_PATH, LEASE_INTERNAL_PATH, HASHKV_PATH) and not path.startswith(PROMOTE_PREFIX):
        return None
    length = 0
    for h in rest.split(b"\r\n"):
        name, _, value = h.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return None
    return (path, length) if 0 <= length <= MAX_POST_BODY else None


def _text(status: str, text: str) -> bytes:
    return _response(status, text.encode() + b"\n", "text/plain; charset=utf-8")


async def answer_post(info: "PeerHTTP | None", path: bytes, body: bytes) -> bytes:
    """The response to a forwarded request (see the routes above). Errors as etcd's peer handlers
    give them: 404 for a lease or member that does not exist, 412 for a promote etcd refuses, 503
    when this member is not the one to ask (not the leader: the asker retries)."""
    from fastkv.api.etcdpb import rpc_pb2
    from fastkv.errors import EtcdError

    info = info or PeerHTTP()
    try:
        if path == LEASES_PATH and info.lease_renew is not None:
            req = rpc_pb2.LeaseKeepAliveRequest.FromString(body)
            ttl = await info.lease_renew(req.ID)
            if ttl <= 0:
                return _text("404 Not Found", "lease not found")
            resp = rpc_pb2.LeaseKeepAliveResponse(ID=req.ID, TTL=ttl)
            return _response("200 OK", resp.SerializeToString(), "application/protobuf")
        if path == LEASE_INTERNAL_PATH and info.lease_time_to_live is not None:
            req = rpc_pb2.LeaseTimeToLiveRequest.FromString(body)
            resp = await info.lease_time_to_live(req)
            return _response("200 OK", resp.SerializeToString(), "application/protobuf")
        if path == HASHKV_PATH and info.hash_kv is not None:
            resp = await info.hash_kv(rpc_pb2.HashKVRequest.FromString(body))
            return _response("200 OK", resp.SerializeToString(), "application/protobuf")
        if path.startswith(PROMOTE_PREFIX) and info.member_promote is not None:
            raw = path[len(PROMOTE_PREFIX):]
            if not raw.isdigit():
                return _text("404 Not Found", f"member {raw.decode('latin-1')} not found in cluster")
            members = await info.member_promote(int(raw))
            return _response("200 OK", json.dumps(members, separators=(",", ":")).encode() + b"\n")
    except EtcdError as exc:
        if exc.code == "NOT_FOUND":
            status = "404 Not Found"
        elif exc.message.startswith("etcdserver: can only promote"):   # not a learner / not in sync
            status = "412 Precondition Failed"
        elif exc.code == "OUT_OF_RANGE":   # a HashKV at a future or compacted revision
            status = "400 Bad Request"
        else:
            status = "503 Service Unavailable"
        return _text(status, exc.message)
    except Exception as exc:  # noqa: BLE001 - a bad body or a member in transition: the asker retries
        return _text("503 Service Unavailable", str(exc) or type(exc).__name__)
    return _text("404 Not Found", "404 page not found")


def could_be_http(prefix: bytes) -> bool:
    """True while `prefix` (the first bytes of a connection) may still be an HTTP request line."""
    return any(p.startswith(prefix[:len(p)]) for p in HTTP_METHOD_PREFIXES)


def _response(status: str, body: bytes, ctype: str = "application/json",
              extra: tuple = ()) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}",
            "Connection: close", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def respond(head: bytes, info: PeerHTTP | None, cluster_id: int) -> bytes:
    """The full response to one request head (bytes up to the blank line)."""
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return _response("400 Bad Request", b"400 Bad Request", "text/plain; charset=utf-8")
    method, target = parts[0], parts[1].split(b"?", 1)[0]
    info = info or PeerHTTP()
    cid = (f"X-Etcd-Cluster-ID: {cluster_id:x}",) if target == b"/members" else ()
    handlers = {b"/members": info.members, b"/version": info.version or (lambda: ETCD_VERSION),
                b"/health": info.health}
    if target not in handlers or handlers[target] is None:
        return _response("404 Not Found", b"404 page not found\n", "text/plain; charset=utf-8")
    if method != b"GET":
        return _response("405 Method Not Allowed", b"Method Not Allowed\n",
                         "text/plain; charset=utf-8", ("Allow: GET",))
    try:
        value = handlers[target]()
    except Exception:
        log.exception("peer HTTP handler for %s failed", target.decode("latin-1"))
        return _response("500 Internal Server Error", b"internal error\n", "text/plain; charset=utf-8")
    status = "200 OK"
    if target == b"/health":
        status = "200 OK" if value else "503 Service Unavailable"
        value = {"health": "true" if value else "false"}
    body = json.dumps(value, separators=(",", ":")).encode()
    if target == b"/members":
        body += b"\n"   # etcd writes this one with a JSON encoder, which ends the line
    return _response(status, body, extra=cid)
