"""Start an EtcdServer with its gRPC and HTTP listeners, and stop it on SIGTERM/SIGINT."""
from __future__ import annotations

import asyncio
import logging
import os
import signal

import grpc

from fastkv.api.services import add_services
from fastkv.server.config import host_port
from fastkv.server.etcdserver import EtcdServer
from fastkv.server.clientport import serve_client_port
from fastkv.server.http import serve_http

log = logging.getLogger("fastkv.serve")
GRPC_OVERHEAD_BYTES = 512 * 1024  # etcd accepts requests up to max-request-bytes plus this


async def start(cfg):
    """Start a member; returns (server, grpc_servers, http_servers)."""
    server = EtcdServer(cfg)
    await server.start()
    if cfg.client_frontend == "native":
        return await _start_native(cfg, server)
    direct = os.environ.get("FASTKV_CLIENT_PORT_RELAY", "1") == "0"
    secure_urls = [u for u in cfg.listen_client_urls if is_https(u)]
    # https:// URLs: grpcio terminates TLS itself (the relay would hide the client's certificate),
    # every server binding the URL (SO_REUSEPORT spreads connections over them); grpcio serves no
    # HTTP/1.1 there (/metrics, /health: use an http:// URL or --listen-metrics-urls)
    grpc_servers = GrpcServers(cfg, server, reuse_port=direct or bool(secure_urls))
    http_servers = []
    if secure_urls:
        creds = cfg.client_tls.grpc_server_credentials()  # --cipher-suites: see cli._client_tls
        for url in secure_urls:
            try:
                grpc_servers.add_secure_port(host_port(url), creds)
            except RuntimeError as exc:
                await server.stop()
                raise OSError(f"cannot listen for clients on {url} ({exc}); "
                              "pick another address with --listen-client-urls") from None
    plain_urls = [u for u in cfg.listen_client_urls if not is_https(u)]
    if direct:
        # measurement switch: gRPC binds the client URLs itself (SO_REUSEPORT spreads connections
        # over the servers; no HTTP there), to price the relay
        for url in plain_urls:
            grpc_servers.add_port(host_port(url))
        await grpc_servers.start()
        client_urls = []
    else:
        # gRPC listens on internal loopback ports; the client URLs are served by the front listener
        # (clientport.py), which relays gRPC there and answers /metrics, /health, /version itself.
        grpc_ports = grpc_servers.add_port("127.0.0.1:0")
        await grpc_servers.start()
        client_urls = plain_urls
    for url in client_urls:
        host, port = host_port(url).rsplit(":", 1)
        try:
            http_servers.append(await serve_client_port(server, host, int(port), grpc_ports))
        except OSError as exc:
            for h in http_servers:
                h.close()
            await grpc_servers.stop(None)
            await server.stop()
            raise OSError(f"cannot listen for clients on {url} ({exc.strerror or exc}); "
                          "pick another address with --listen-client-urls") from None
    http_servers += await _serve_metrics(cfg, server)
    log.info("fastkv member %x (%s) serving clients on %s, data dir %s", server.member_id, cfg.name,
             ",".join(cfg.listen_client_urls), cfg.data_dir)
    return server, grpc_servers, http_servers


async def _start_native(cfg, server):
    """The native front end (fastkv.frontend): gRPC and HTTP/1.1 on each client URL, no grpcio.
    Returns the same triple as start(); its listeners object has grpcio's stop(grace)."""
    from fastkv.frontend.listener import NativeListeners, make_frontend

    listeners = NativeListeners(make_frontend(server, max_request_bytes=cfg.max_request_bytes,
                                              max_concurrent_streams=cfg.max_concurrent_streams))
    http_servers = []
    # one context for every https:// URL (ALPN: see NativeListeners.listen; whether a client certificate is
    # required is etcd's rule, TLSInfo.server_context)
    ssl_context = cfg.client_tls.server_context() if cfg.client_tls is not None else None
    try:
        for url in cfg.listen_client_urls:
            host, port = host_port(url).rsplit(":", 1)
            try:
                await listeners.listen(host, int(port), ssl_context=ssl_context if is_https(url) else None)
            except OSError as exc:
                raise OSError(f"cannot listen for clients on {url} ({exc.strerror or exc}); "
                              "pick another address with --listen-client-urls") from None
        http_servers += await _serve_metrics(cfg, server)
    except OSError:
        await listeners.stop(0)
        for h in http_servers:
            h.close()
        await server.stop()
        raise
    log.info("fastkv member %x (%s) serving clients on %s (native front end), data dir %s", server.member_id,
             cfg.name, ",".join(cfg.listen_client_urls), cfg.data_dir)
    return server, listeners, http_servers


class GrpcServers:
    """cfg.grpc_servers grpcio asyncio servers with the same services over one EtcdServer.

    Why several: grpcio's asyncio server accepts calls one at a time (each new call is a round trip
    through its completion-queue poller thread), which caps one server's unary call rate far below
    what the member behind it sustains. Servers accept in parallel, so connections spread over
    several servers are served faster. They share the event loop and the member; nothing else
    differs between them."""

    def __init__(self, cfg, server, reuse_port: bool = False):
        limit = cfg.max_request_bytes + GRPC_OVERHEAD_BYTES
        options = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.max_concurrent_streams", 2**31 - 1),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ]
        self.servers = [grpc.aio.server(options=options) for _ in range(max(1, cfg.grpc_servers))]
        for g in self.servers:
            add_services(g, server)

    def add_secure_port(self, address: str, credentials) -> list[int]:
        return [g.add_secure_port(address, credentials) for g in self.servers]

    def add_port(self, address: str) -> list[int]:
        """Bind every server to `address` (port 0: each its own free port); returns the ports."""
        return [g.add_insecure_port(address) for g in self.servers]

    async def start(self) -> None:
        for g in self.servers:
            await g.start()

    async def stop(self, grace) -> None:
        await asyncio.gather(*(g.stop(grace) for g in self.servers))


async def _serve_metrics(cfg, server) -> list:
    """--listen-metrics-urls: plain HTTP, or for https:// URLs TLS with the client port's settings
    (etcd's rule; cli.py refuses an https:// one without a certificate)."""
    out = []
    try:
        for url in cfg.listen_metrics_urls:
            host, port = host_port(url).rsplit(":", 1)
            ctx = None
            if is_https(url):
                ctx = cfg.client_tls.server_context()
                ctx.set_alpn_protocols(["http/1.1"])
            out.append(await serve_http(server, host, int(port), ssl_context=ctx))
    except OSError:
        for h in out:
            h.close()
        raise
    return out


def is_https(url: str) -> bool:
    return url.startswith(("https://", "unixs://"))


async def shutdown(server, grpc_servers, http_servers) -> None:
    await grpc_servers.stop(grace=1.0)
    for h in http_servers:
        h.close()
    await server.stop()


def _reload_failpoints(path: str) -> None:
    from fastkv import failpoints

    try:
        with open(path) as f:
            spec = f.read().strip()
    except OSError:
        spec = ""
    try:
        failpoints.reload(spec)
        log.warning("failpoints now: %s", spec or "none")
    except ValueError as exc:
        log.error("failpoints file %s: %s", path, exc)


async def serve(cfg) -> None:
    server, grpc_servers, http_servers = await start(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if os.environ.get("FASTKV_FAILPOINTS_RELOAD"):
        # hidden, for fault injection: SIGUSR2 re-reads <data-dir>/failpoints (see fastkv.failpoints)
        loop.add_signal_handler(signal.SIGUSR2, _reload_failpoints, os.path.join(cfg.data_dir, "failpoints"))
    print(f"ready to serve client requests on {', '.join(cfg.listen_client_urls)}", flush=True)
    waits = [loop.create_task(stop.wait()), loop.create_task(server.stopping.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for t in waits:
        t.cancel()
    if server.removed_from_cluster:
        log.warning("the member has been permanently removed from the cluster")
    failed = server.fatal_error
    log.info("shutting down")
    await shutdown(server, grpc_servers, http_servers)
    if failed is not None:
        raise OSError(f"the member stopped after an internal failure ({failed!r}); its data dir is "
                      "intact: restart it, and report the log above if it happens again")
