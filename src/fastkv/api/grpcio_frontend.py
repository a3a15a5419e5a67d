"""The grpcio reference front end: etcd's services on grpcio asyncio servers (`--client-frontend
grpcio`), kept beside the native front end to compare against and to run the suites over.

Plain http:// client URLs are served by the relay listener (server/clientport.py), which answers
HTTP/1.1 itself and relays gRPC connections to internal grpcio servers; https:// URLs are bound by
grpcio itself, which terminates TLS (the relay would hide the client's certificate).
"""
from __future__ import annotations

import asyncio
import logging
import os

import grpc

from fastkv.api.services import add_services
from fastkv.frontend.listener import GRPC_OVERHEAD_BYTES
from fastkv.server.clientport import serve_client_port
from fastkv.server.config import host_port
from fastkv.server.runner import is_https, is_unix, serve_metrics, unix_socket_path

log = logging.getLogger("fastkv.serve")


def grpc_server_credentials(tls):
    """grpcio's credentials for a TLSInfo's settings. grpcio has no per-server cipher list;
    TLSInfo.grpc_cipher_env() gives the process-wide one (see cli._client_tls)."""
    key, chain, roots = tls.server_credential_bytes()
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=roots,
                                       require_client_auth=tls.verifies_clients())


async def start_grpcio(cfg, server):
    """Serve `server` (started) on cfg's client URLs; returns (server, grpc_servers, http_servers)."""
    direct = os.environ.get("FASTKV_CLIENT_PORT_RELAY", "1") == "0"
    unix_urls = [u for u in cfg.listen_client_urls if is_unix(u)]
    secure_urls = [u for u in cfg.listen_client_urls if is_https(u) and not is_unix(u)]
    # https:// URLs: grpcio terminates TLS itself (the relay would hide the client's certificate),
    # every server binding the URL (SO_REUSEPORT spreads connections over them); grpcio serves no
    # HTTP/1.1 there (/metrics, /health: use an http:// URL or --listen-metrics-urls)
    grpc_servers = GrpcServers(cfg, server, reuse_port=direct or bool(secure_urls))
    http_servers = []
    if secure_urls:
        creds = grpc_server_credentials(cfg.client_tls)  # --cipher-suites: see cli._client_tls
        for url in secure_urls:
            try:
                grpc_servers.add_secure_port(host_port(url), creds)
            except RuntimeError as exc:
                await server.stop()
                raise OSError(f"cannot listen for clients on {url} ({exc}); "
                              "pick another address with --listen-client-urls") from None
    for url in unix_urls:
        # a unix socket file takes one listener: the first grpcio server serves it (no HTTP/1.1 there)
        path = "unix:" + unix_socket_path(url)
        if is_https(url):
            grpc_servers.servers[0].add_secure_port(path, grpc_server_credentials(cfg.client_tls))
        else:
            grpc_servers.servers[0].add_insecure_port(path)
    plain_urls = [u for u in cfg.listen_client_urls if not is_https(u) and not is_unix(u)]
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
    http_servers += await serve_metrics(cfg, server)
    log.info("fastkv member %x (%s) serving clients on %s, data dir %s", server.member_id, cfg.name,
             ",".join(cfg.listen_client_urls), cfg.data_dir)
    return server, grpc_servers, http_servers




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
