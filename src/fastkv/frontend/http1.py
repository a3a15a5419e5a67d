"""HTTP/1.1 on the client port: /metrics, /health, /version (as server/http.py answers them) and,
where a gateway is given, etcd's JSON gateway (POST /v3/..., /v3beta/...).

One request per connection (the response says Connection: close), as the grpcio-era client port
did; a request line and headers over 64 KiB, or a body over the gRPC message limit, closes the
connection.
"""
from __future__ import annotations

from fastkv.server.http import respond

MAX_HEAD = 64 * 1024

# etcd 3.4 (embed/serve.go) refuses gateway requests whose verified client certificate has a common
# name while --client-cert-auth and auth are on: the gateway would not act as that user, and etcd
# says so rather than answer as someone else
_CN_REFUSED_TEXT = b"CommonName of client sending a request against gateway will be ignored and not used as expected\n"
_CN_REFUSED = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"X-Content-Type-Options: nosniff\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
               % (len(_CN_REFUSED_TEXT), _CN_REFUSED_TEXT))


class Http1Handler:
    def __init__(self, server, max_body: int, gateway=None):
        self.server = server
        self.max_body = max_body
        # (server, method, path, body, conn, authorization header or None): answers on conn; or None
        self.gateway = gateway

    def data_received(self, conn, data: bytes) -> None:
        if conn.transport.is_closing():
            return
        buf = conn.pending
        buf += data
        end = buf.find(b"\r\n\r\n")
        sep = 4
        if end < 0:
            end, sep = buf.find(b"\n\n"), 2
        if end < 0:
            if len(buf) > MAX_HEAD:
                conn.transport.close()
            return
        head = bytes(buf[:end]).decode("latin-1")
        lines = head.split("\n")
        request_line = lines[0].strip()
        length = 0
        authorization = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    length = -1
            elif name == "authorization" and authorization is None:
                authorization = value.strip().encode("latin-1")
        if length < 0 or length > self.max_body:
            conn.transport.write(b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
            conn.transport.close()
            return
        if len(buf) < end + sep + length:
            return  # the body is still coming
        body = bytes(buf[end + sep:end + sep + length])
        buf.clear()
        parts = request_line.split()
        method = parts[0] if parts else ""
        path = parts[1].split("?", 1)[0] if len(parts) >= 2 else "/"
        if self.gateway is not None and (path.startswith("/v3/") or path.startswith("/v3beta/")):
            if conn.common_name and self.server.auth_store.enabled:
                conn.transport.write(_CN_REFUSED)
                conn.transport.close()
                return
            self.gateway(self.server, method, path, body, conn, authorization)
            return
        conn.transport.write(respond(self.server, request_line.encode("latin-1")))
        conn.transport.close()

    def connection_lost(self, conn) -> None:
        conn.pending.clear()
