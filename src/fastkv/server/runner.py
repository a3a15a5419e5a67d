"""Start an EtcdServer with its client front end and HTTP listeners, and stop it on SIGTERM/SIGINT.

This is where a member is put together (etcd's embed): it picks the front end named by
--client-frontend, the native one (fastkv.frontend) or the grpcio reference (fastkv.api), and
imports only the one it runs; the server core below never imports grpc."""
from __future__ import annotations

import asyncio
import logging
import os
import signal

from fastkv.server.config import host_port
from fastkv.server.etcdserver import EtcdServer
from fastkv.server.http import serve_http

log = logging.getLogger("fastkv.serve")


async def start(cfg):
    """Start a member; returns (server, grpc_servers, http_servers)."""
    server = EtcdServer(cfg)
    await server.start()
    if cfg.client_frontend == "native":
        return await _start_native(cfg, server)
    # the grpcio reference front end: the only place a member imports grpc
    from fastkv.api.grpcio_frontend import start_grpcio

    return await start_grpcio(cfg, server)


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
                if is_unix(url):
                    await listeners.listen_unix(unix_socket_path(url), ssl_context=ssl_context if is_https(url) else None)
                    continue
                await listeners.listen(host, int(port), ssl_context=ssl_context if is_https(url) else None)
            except OSError as exc:
                raise OSError(f"cannot listen for clients on {url} ({exc.strerror or exc}); "
                              "pick another address with --listen-client-urls") from None
        http_servers += await serve_metrics(cfg, server)
    except OSError:
        await listeners.stop(0)
        for h in http_servers:
            h.close()
        await server.stop()
        raise
    log.info("fastkv member %x (%s) serving clients on %s (native front end), data dir %s", server.member_id,
             cfg.name, ",".join(cfg.listen_client_urls), cfg.data_dir)
    return server, listeners, http_servers


async def serve_metrics(cfg, server) -> list:
    """--listen-metrics-urls: plain HTTP, or for https:// URLs TLS with the client port's settings
    (etcd's rule; cli.py refuses an https:// one without a certificate)."""
    out = []
    try:
        for url in cfg.listen_metrics_urls:
            host, port = host_port(url).rsplit(":", 1)
            ctx = check = None  # etcd serves these with the client TLS settings and its listener checks
            if is_https(url):
                ctx = cfg.client_tls.server_context()
                ctx.set_alpn_protocols(["http/1.1"])
                check = cfg.client_tls.listener_refusal
            out.append(await serve_http(server, host, int(port), ssl_context=ctx, tls_check=check))
    except OSError:
        for h in out:
            h.close()
        raise
    return out


def is_https(url: str) -> bool:
    return url.startswith(("https://", "unixs://"))


def is_unix(url: str) -> bool:
    return url.startswith(("unix://", "unixs://"))


def unix_socket_path(url: str) -> str:
    """etcd's unix:// URLs name the socket file by their host:port ("unix://localhost:2379" is
    the file "localhost:2379", relative to the working directory)."""
    return url.split("://", 1)[1].rstrip("/")


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
