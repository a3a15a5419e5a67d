"""/metrics, /health and /version over HTTP/1.1 on asyncio (for --listen-metrics-urls; https:// ones
with the client TLS settings, as etcd does)."""
from __future__ import annotations

import asyncio
import json
import logging

log = logging.getLogger(__name__)


async def serve_http(server, host: str, port: int, ssl_context=None, tls_check=None) -> asyncio.AbstractServer:
    """Serve host:port; with `ssl_context`, over TLS (an https:// --listen-metrics-urls URL), where
    `await tls_check(ssl_object, peername)` (TLSInfo.listener_refusal: etcd's revocation list,
    allowed hostname and client SAN check) says why a client may not stay, or None."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if tls_check is not None:
                reason = await tls_check(writer.get_extra_info("ssl_object"), writer.get_extra_info("peername"))
                if reason is not None:
                    log.warning("refused metrics connection from %s: %s", writer.get_extra_info("peername"), reason)
                    writer.transport.abort()
                    return
            line = await asyncio.wait_for(reader.readline(), 10)
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            writer.write(respond(server, line))
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port, ssl=ssl_context)


def respond(server, request_line: bytes) -> bytes:
    """The whole HTTP/1.1 response to a request whose first line is `request_line`."""
    parts = request_line.decode("latin-1").split()
    path = parts[1].split("?", 1)[0] if len(parts) >= 2 else "/"
    status, ctype, body = route(server, path)
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n".encode() + body)


def route(server, path: str):
    if path == "/metrics":
        return "200 OK", "text/plain; version=0.0.4", server.metrics_text().encode()
    if path == "/health":
        ok = bool(server.raft.leader) and not server.alarms.active
        # etcd 3.4's body exactly (no "reason" field before 3.5; compact JSON)
        body = json.dumps({"health": "true" if ok else "false"}, separators=(",", ":")).encode()
        if not ok:  # etcd answers an unhealthy member through http.Error, which adds a newline
            body += b"\n"
        return ("200 OK" if ok else "503 Service Unavailable"), "application/json", body
    if path == "/version":
        return "200 OK", "application/json", server.version_json().encode()
    return "404 Not Found", "text/plain", b"404 page not found\n"
