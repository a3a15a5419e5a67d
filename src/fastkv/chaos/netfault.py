"""Network partitions between members, through a TCP proxy in front of each member's peer port.

Each member advertises its proxy's port as its peer URL, so every peer connection *into* member B
is dialed through B's proxy, whoever dialed it. etcd's peer transport (rafthttp) names the dialer
in every request (header X-Server-From: <member id in hex>), and the request says which way the
raft messages flow on that connection:
  GET /raft/stream/...   the dialer reads messages the owner sends   (owner -> dialer)
  POST /raft, /raft/snapshot   the dialer sends messages to the owner (dialer -> owner)
  anything else (probing, version, members)                           (both ways)
Go's HTTP client keeps connections alive and reuses them for other requests, so the proxy asks
the member to close each connection after its first request (Connection: close), and a
connection's classification holds for all it carries.
So a set of blocked directed pairs (src, dst) -- "nothing src sends reaches dst" -- is enforced
exactly: a connection whose flow crosses a blocked pair is refused, or aborted when the rule comes
in. Isolating a member blocks both directions with every other member; a one-way loss blocks one.
Aborting (rather than silently dropping bytes) keeps each stream's framing intact: a peer sees a
broken connection and redials, as after a real network fault, and never a corrupted message.

The proxy is its own process (`python -m fastkv.chaos.netfault`), so copying bytes never competes
with the workload for the GIL; it takes one JSON command per line on stdin and exits when stdin
closes, so it cannot outlive the tool that started it.

fastkv's peer transport names its dialer in the HELLO frame that follows its preamble (see
fastkv.transport.frame): both its channels, stream and snapshot pipeline, carry raft messages from
the dialer to the owner (flow "in"). A connection that is neither passes with flow "both" and an
unknown dialer, so it cannot be blocked (TLS peer traffic, for one: the proxy cannot read it).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys

from fastkv.chaos.cluster import _LIVE

HEAD_LIMIT = 64 * 1024


class _Proxy:
    def __init__(self, routes: dict[str, tuple[int, int]]):
        self.routes = routes              # owner name -> (listen port, member's peer port)
        self.names: dict[str, str] = {}   # member id (hex) -> name
        self.blocked: set[tuple[str, str]] = set()
        self.conns: set = set()

    def crosses_block(self, owner: str, dialer_id: str | None, flow: str) -> bool:
        dialer = self.names.get(dialer_id or "")
        if dialer is None or not self.blocked:
            return False
        out_blocked = (owner, dialer) in self.blocked
        in_blocked = (dialer, owner) in self.blocked
        return {"in": in_blocked, "out": out_blocked}.get(flow, in_blocked or out_blocked)

    async def handle(self, owner: str, reader, writer):
        upstream_writer = None
        conn = None
        try:
            try:
                head, dialer_id, flow = await asyncio.wait_for(_read_head(reader), 5.0)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                head, dialer_id, flow = b"", None, "both"
            if self.crosses_block(owner, dialer_id, flow):
                return
            up_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.routes[owner][1])
            conn = (owner, dialer_id, flow, writer, upstream_writer)
            self.conns.add(conn)
            if head:
                upstream_writer.write(head)
            await asyncio.gather(self._pump(reader, upstream_writer, conn),
                                 self._pump(up_reader, writer, conn))
        except (OSError, RuntimeError):
            pass
        finally:
            if conn is not None:
                self.conns.discard(conn)
            for w in (writer, upstream_writer):
                if w is not None:
                    w.transport.abort()

    async def _pump(self, reader, writer, conn):
        try:
            while True:
                data = await reader.read(65536)
                if not data or self.crosses_block(conn[0], conn[1], conn[2]):
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, RuntimeError):  # the other side was aborted under us
            pass
        finally:
            conn[3].transport.abort()
            conn[4].transport.abort()

    def enforce(self):
        for conn in list(self.conns):
            if self.crosses_block(conn[0], conn[1], conn[2]):
                conn[3].transport.abort()
                conn[4].transport.abort()
                self.conns.discard(conn)


async def _read_head(reader) -> tuple[bytes, str | None, str]:
    """What the connection opens with (to forward as is), its dialer and its flow."""
    from fastkv.transport import frame as fr

    first = await reader.readexactly(len(fr.PREAMBLE))
    if first == fr.PREAMBLE:
        header = await reader.readexactly(fr.HEADER_SIZE)
        length, kind = fr.HEADER.unpack(header)
        if kind != fr.HELLO or not 1 <= length <= fr.CONTROL_MAX:
            return first + header, None, "both"
        payload = await reader.readexactly(length - 1)
        _version, _channel, _cluster, frm, _to = fr.parse_hello(payload)
        return first + header + payload, f"{frm:x}", "in"
    head = first + await reader.readuntil(b"\r\n\r\n")
    dialer, flow = _classify(head)
    return _one_request(head), dialer, flow


def _one_request(head: bytes) -> bytes:
    """The request head, asking the server to close the connection after answering it.

    A connection is classified by its first request only, so it must carry no other: Go's
    http.Transport keeps connections alive and etcd's prober shares its transport with the
    pipeline, so a probe's connection ("both" ways, no dialer named) would otherwise be reused
    for POST /raft and carry raft messages straight through a partition.
    """
    lines = head[:-4].split(b"\r\n")
    kept = [line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() != b"connection"]
    return b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n"


def _classify(head: bytes) -> tuple[str | None, str]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    method, path = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
    dialer = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-server-from":
            dialer = value.strip().lower()
    if method == "GET" and path.startswith("/raft/stream"):
        return dialer, "out"
    if method == "POST" and path.startswith("/raft"):
        return dialer, "in"
    return dialer, "both"


async def _serve(routes: dict[str, tuple[int, int]]):
    proxy = _Proxy(routes)
    servers = []
    for owner, (listen, _) in routes.items():
        servers.append(await asyncio.start_server(
            lambda r, w, owner=owner: proxy.handle(owner, r, w), "127.0.0.1", listen, limit=HEAD_LIMIT))
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print("ready", flush=True)
    while True:
        line = await stdin.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "ids":
            proxy.names = {k.lower(): v for k, v in cmd["map"].items()}
        elif cmd["cmd"] == "block":
            proxy.blocked = {tuple(p) for p in cmd["pairs"]}
        proxy.enforce()
        print("ok", flush=True)
    # stdin closed: the tool is done with us. Leave at once rather than cancel every connection's
    # task (which asyncio reports as noise); the kernel closes the sockets.
    sys.stdout.flush()
    os._exit(0)


def main(argv=None):
    p = argparse.ArgumentParser(description="peer-port proxy for `fastkv chaos` partitions (internal)")
    p.add_argument("--route", action="append", default=[], metavar="NAME:LISTEN:TARGET")
    args = p.parse_args(argv)
    routes = {}
    for r in args.route:
        name, listen, target = r.split(":")
        routes[name] = (int(listen), int(target))
    try:
        import uvloop
        uvloop.run(_serve(routes))
    except ImportError:
        asyncio.run(_serve(routes))


class PeerProxies:
    """Controls the proxy process for a cluster whose members advertise proxy ports."""

    def __init__(self, members):
        self.members = members
        self.proc: subprocess.Popen | None = None
        self.blocked: set[tuple[str, str]] = set()

    def start(self) -> None:
        cmd = [sys.executable, "-m", "fastkv.chaos.netfault"]
        for m in self.members:
            cmd += ["--route", f"{m.name}:{m.advertised_peer_port}:{m.peer_port}"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        _LIVE.add(self)
        if self.proc.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError("the peer proxy did not start")

    def _send(self, cmd: dict) -> None:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ok":
            raise RuntimeError("the peer proxy stopped answering")

    def set_member_ids(self, ids: dict[int, str]) -> None:
        self._send({"cmd": "ids", "map": {format(i, "x"): name for i, name in ids.items()}})

    def block(self, pairs) -> None:
        self.blocked = {tuple(p) for p in pairs}
        self._send({"cmd": "block", "pairs": sorted(self.blocked)})

    def heal(self) -> None:
        self.block(())

    def stop(self) -> None:
        _LIVE.discard(self)
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def isolate(name: str, names: list[str]) -> set[tuple[str, str]]:
    return {p for other in names if other != name for p in ((name, other), (other, name))}


def split(minority: list[str], names: list[str]) -> set[tuple[str, str]]:
    majority = [n for n in names if n not in minority]
    return {p for a in minority for b in majority for p in ((a, b), (b, a))}


if __name__ == "__main__":
    main()
