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
    """Start a member; returns (server, grpc_server, http_servers)."""
    server = EtcdServer(cfg)
    await server.start()
    limit = cfg.max_request_bytes + GRPC_OVERHEAD_BYTES
    grpc_server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.max_concurrent_streams", 2**31 - 1),
        ("grpc.so_reuseport", 0),
    ])
    add_services(grpc_server, server)
    # gRPC listens on an internal loopback port; the client URLs are served by the front listener
    # (clientport.py), which relays gRPC there and answers /metrics, /health, /version itself.
    http_servers = []
    if os.environ.get("FASTKV_CLIENT_PORT_RELAY", "1") == "0":
        # measurement switch: gRPC binds the client URLs itself (no HTTP there), to price the relay
        for url in cfg.listen_client_urls:
            grpc_server.add_insecure_port(host_port(url))
        await grpc_server.start()
        client_urls = []
    else:
        grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
        await grpc_server.start()
        client_urls = cfg.listen_client_urls
    for url in client_urls:
        host, port = host_port(url).rsplit(":", 1)
        try:
            http_servers.append(await serve_client_port(server, host, int(port), grpc_port))
        except OSError as exc:
            for h in http_servers:
                h.close()
            await grpc_server.stop(None)
            await server.stop()
            raise OSError(f"cannot listen for clients on {url} ({exc.strerror or exc}); "
                          "pick another address with --listen-client-urls") from None
    for url in cfg.listen_metrics_urls:
        host, port = host_port(url).rsplit(":", 1)
        http_servers.append(await serve_http(server, host, int(port)))
    log.info("fastkv member %x (%s) serving clients on %s, data dir %s", server.member_id, cfg.name,
             ",".join(cfg.listen_client_urls), cfg.data_dir)
    return server, grpc_server, http_servers


async def shutdown(server, grpc_server, http_servers) -> None:
    await grpc_server.stop(grace=1.0)
    for h in http_servers:
        h.close()
    await server.stop()


async def serve(cfg) -> None:
    server, grpc_server, http_servers = await start(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready to serve client requests on {', '.join(cfg.listen_client_urls)}", flush=True)
    await stop.wait()
    log.info("shutting down")
    await shutdown(server, grpc_server, http_servers)
