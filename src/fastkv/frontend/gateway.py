"""etcd's JSON gateway on the client port: HTTP/1.1 POST /v3/... (and /v3beta/...) with a JSON
body, answered as etcd 3.4's grpc-gateway does.

Mapping (grpc-gateway v1's default marshaler, which etcd 3.4 uses): protobuf JSON with the .proto
field names, bytes as base64, 64-bit integers as strings, enums by name, default values left out;
unknown fields in a request are an error. Errors come back as {"error", "message", "code"} with the
HTTP status grpc-gateway derives from the gRPC code. Streams (/v3/watch, /v3/lease/keepalive) answer
with chunked newline-delimited JSON, one {"result": ...} per response message. Calls go to the same
handlers as gRPC (frontend/methods.py, frontend/streams.py): no loopback gRPC hop.

Who makes a request: the `Authorization` header carries the token as it is (no "Bearer"), which
etcd's gateway forwards as the call's `authorization` metadata; it is checked as on gRPC. A client
certificate never names the user here: etcd's gateway calls the server over its own connection.
"""
from __future__ import annotations

import asyncio
import json
import logging

from google.protobuf import json_format

from fastkv.errors import EtcdError
from fastkv.frontend import status
from fastkv.frontend.calls import UnaryCall
from fastkv.frontend.connection import call_auth
from fastkv.frontend.methods import UNARY_METHODS
from fastkv.server.streams import decoded

log = logging.getLogger(__name__)

# grpc-gateway's route for each RPC (etcd 3.4's etcdserverpb/gw); both /v3/ and /v3beta/ prefixes
_ROUTES = {
    "kv/range": "KV/Range", "kv/put": "KV/Put", "kv/deleterange": "KV/DeleteRange", "kv/txn": "KV/Txn",
    "kv/compaction": "KV/Compact",
    "lease/grant": "Lease/LeaseGrant", "lease/revoke": "Lease/LeaseRevoke", "kv/lease/revoke": "Lease/LeaseRevoke",
    "lease/timetolive": "Lease/LeaseTimeToLive", "kv/lease/timetolive": "Lease/LeaseTimeToLive",
    "lease/leases": "Lease/LeaseLeases", "kv/lease/leases": "Lease/LeaseLeases",
    "cluster/member/add": "Cluster/MemberAdd", "cluster/member/remove": "Cluster/MemberRemove",
    "cluster/member/update": "Cluster/MemberUpdate", "cluster/member/list": "Cluster/MemberList",
    "cluster/member/promote": "Cluster/MemberPromote",
    "maintenance/alarm": "Maintenance/Alarm", "maintenance/status": "Maintenance/Status",
    "maintenance/defragment": "Maintenance/Defragment",
    # Hash and HashKV share this route; grpc-gateway serves the first registered, Hash
    "maintenance/hash": "Maintenance/Hash",
    "maintenance/transfer-leadership": "Maintenance/MoveLeader",
    "watch": "Watch/Watch", "lease/keepalive": "Lease/LeaseKeepAlive", "maintenance/snapshot": "Maintenance/Snapshot",
    "auth/enable": "Auth/AuthEnable", "auth/disable": "Auth/AuthDisable", "auth/authenticate": "Auth/Authenticate",
    "auth/user/add": "Auth/UserAdd", "auth/user/get": "Auth/UserGet", "auth/user/list": "Auth/UserList",
    "auth/user/delete": "Auth/UserDelete", "auth/user/changepw": "Auth/UserChangePassword",
    "auth/user/grant": "Auth/UserGrantRole", "auth/user/revoke": "Auth/UserRevokeRole",
    "auth/role/add": "Auth/RoleAdd", "auth/role/get": "Auth/RoleGet", "auth/role/list": "Auth/RoleList",
    "auth/role/delete": "Auth/RoleDelete", "auth/role/grant": "Auth/RoleGrantPermission",
    "auth/role/revoke": "Auth/RoleRevokePermission",
}
_BY_PATH = {m.path.decode(): m for m in UNARY_METHODS}

# grpc-gateway v1 runtime.HTTPStatusFromCode
_HTTP_STATUS = {
    0: "200 OK", 1: "408 Request Timeout", 2: "500 Internal Server Error", 3: "400 Bad Request",
    4: "504 Gateway Timeout", 5: "404 Not Found", 6: "409 Conflict", 7: "403 Forbidden",
    8: "429 Too Many Requests", 9: "412 Precondition Failed", 10: "409 Conflict", 11: "400 Bad Request",
    12: "501 Not Implemented", 13: "500 Internal Server Error", 14: "503 Service Unavailable",
    15: "500 Internal Server Error", 16: "401 Unauthorized",
}


def to_json(msg) -> bytes:
    d = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return json.dumps(d, separators=(",", ":")).encode()


def _response(status_line: str, body: bytes, ctype: str = "application/json") -> bytes:
    return (f"HTTP/1.1 {status_line}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


def _error(code: int, message: str) -> bytes:
    body = json.dumps({"error": message, "message": message, "code": code}, separators=(",", ":")).encode()
    return _response(_HTTP_STATUS.get(code, "500 Internal Server Error"), body)


def _headers(authorization):
    # the request's token as the native gRPC path hands it to call_auth: (token, authorization)
    return (None, authorization) if authorization else None


def handle(server, method: str, path: str, body: bytes, conn, authorization: bytes | None = None) -> None:
    """Answer one gateway request on `conn` (a ClientConnection in HTTP/1.1 mode); `authorization`:
    the request's Authorization header value, if any."""
    route = path.split("/", 2)[2] if path.count("/") >= 2 else ""
    rpc = _ROUTES.get(route.rstrip("/"))
    if rpc is None or method != "POST":
        # grpc-gateway answers an unknown /v3 path (or another method than POST) with http.Error's 404
        conn.transport.write(_response("404 Not Found", b"Not Found\n", "text/plain; charset=utf-8"))
        conn.transport.close()
        return
    grpc_path = "/etcdserverpb." + rpc
    if rpc in ("Watch/Watch", "Lease/LeaseKeepAlive"):
        _stream(server, grpc_path, body, conn, authorization)
        return
    if rpc == "Maintenance/Snapshot":
        conn.transport.write(_error(status.UNIMPLEMENTED, "fastkv: snapshot over the JSON gateway is not served; "
                                                          "use etcdctl snapshot save"))
        conn.transport.close()
        return
    m = _BY_PATH[grpc_path]
    try:
        req = json_format.Parse(body or b"{}", m.request())
    except (json_format.ParseError, ValueError, UnicodeDecodeError) as exc:
        conn.transport.write(_error(status.INVALID_ARGUMENT, str(exc)))
        conn.transport.close()
        return

    auth = None
    if authorization and m.authenticated:
        try:
            auth = call_auth(server, _headers(authorization), None)
        except EtcdError as exc:
            exc = m.auth_refusal(exc)
            conn.transport.write(_error(status.of_error(exc), exc.message))
            conn.transport.close()
            return

    def done(call, response, code, message):
        conn.calls.pop(-1, None)
        if conn.transport.is_closing():
            return
        if code == 0:
            conn.transport.write(_response("200 OK", to_json(response)))
        else:
            conn.transport.write(_error(code, message))
        conn.transport.close()

    call = UnaryCall(conn.loop, m.handler(server, req, auth), done, -1)
    conn.calls[-1] = call
    call.start()


def _stream(server, grpc_path: str, body: bytes, conn, authorization) -> None:
    from fastkv.frontend.streams import STREAM_METHODS

    m = next(x for x in STREAM_METHODS if x.path.decode() == grpc_path)
    try:
        # a body may carry several request objects one after another (grpc-gateway reads a stream)
        decoder = json.JSONDecoder()
        text = body.decode() if body else "{}"
        reqs, pos = [], 0
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            obj, pos = decoder.raw_decode(text, pos)
            reqs.append(json_format.ParseDict(obj, m.request()))
    except (json_format.ParseError, ValueError, UnicodeDecodeError) as exc:
        conn.transport.write(_error(status.INVALID_ARGUMENT, str(exc)))
        conn.transport.close()
        return

    async def requests():
        for r in reqs:
            yield r
        if grpc_path.endswith("/Watch"):
            await asyncio.Event().wait()  # a watch stays open until the client goes away

    async def run():
        t = conn.transport
        t.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            async for resp in m.handler(server, requests(), lambda: call_auth(server, _headers(authorization), None)):
                chunk = b'{"result":' + to_json(decoded(resp)) + b"}\n"
                t.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                while conn.paused and not t.is_closing():
                    await asyncio.sleep(0.01)
                if t.is_closing():
                    return
        except asyncio.CancelledError:
            return
        except Exception as exc:  # EtcdError and others: a last error object, as grpc-gateway sends
            code, message = (status.of_error(exc), exc.message) if isinstance(exc, EtcdError) else (13, str(exc))
            chunk = json.dumps({"error": {"grpc_code": code, "http_code": 0, "message": message}},
                               separators=(",", ":")).encode() + b"\n"
            t.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        t.write(b"0\r\n\r\n")
        t.close()

    task = conn.loop.create_task(run())

    class _Handle:
        def cancel(self):
            task.cancel()

        def writable(self):
            pass

    conn.streams[-1] = _Handle()
