"""The native front end over TLS (an ssl.SSLContext handed to NativeListeners.listen): ALPN h2 for
gRPC clients, HTTP/1.1 sniffed after the handshake, a client without a valid certificate refused at
the handshake when the context requires one, and the client certificate's common name available on
the connection. The certificates come from a CA the test makes (cryptography)."""
from __future__ import annotations

import asyncio
import pathlib
import ssl
import threading
import urllib.error
import urllib.request

import grpc
import pytest
import uvloop
from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc
from fastkv.frontend.listener import NativeListeners, make_frontend
from fastkv.frontend.nullserver import null_methods
from fastkv.transport.certs import CertificateAuthority


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Server and client certificates from a CA the test makes, and a stranger's from another CA
    (fastkv.transport.certs, the project's one certificate maker)."""
    d = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(d / "ca", "test-ca")
    server = ca.issue("fastkv", ["localhost", "127.0.0.1"])
    client = ca.issue("alice", ())
    stranger = CertificateAuthority(d / "other", "other-ca").issue("mallory", ())
    files = {"ca.crt": ca.ca_file, "server.crt": server[0], "server.key": server[1], "client.crt": client[0],
             "client.key": client[1], "stranger.crt": stranger[0], "stranger.key": stranger[1]}
    return {name: pathlib.Path(path) for name, path in files.items()}


class _Served:
    """A native front end (null methods: no store) on its own uvloop thread, TLS on a free port."""

    def __init__(self, ctx):
        self.loop = uvloop.new_event_loop()
        self.ready = threading.Event()
        self.listeners = None
        self.port = 0
        self.thread = threading.Thread(target=self._run, args=(ctx,), daemon=True)
        self.thread.start()
        assert self.ready.wait(15)

    def _run(self, ctx):
        asyncio.set_event_loop(self.loop)

        async def start():
            self.listeners = NativeListeners(make_frontend(None, max_request_bytes=1 << 20, methods=null_methods()))
            self.port = await self.listeners.listen("127.0.0.1", 0, ssl_context=ctx)
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def common_names(self):
        fut = asyncio.run_coroutine_threadsafe(self._names(), self.loop)
        return fut.result(10)

    async def _names(self):
        return sorted(c.peer_common_name() or "" for c in self.listeners.fe.connections)

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.listeners.stop(0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _server_ctx(pki, require_client_cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server.crt"], pki["server.key"])
    if require_client_cert:
        ctx.load_verify_locations(pki["ca.crt"])
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _put(port, creds):
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as ch:
        return rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=10)


def test_grpc_over_tls_with_alpn_h2_and_https_on_the_same_port(pki):
    s = _Served(_server_ctx(pki, require_client_cert=False))
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=pki["ca.crt"].read_bytes())
        assert _put(s.port, creds) is not None
        client_ctx = ssl.create_default_context(cafile=str(pki["ca.crt"]))
        req = urllib.request.Request(f"https://127.0.0.1:{s.port}/v3/nope", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, context=client_ctx, timeout=10)
        assert err.value.code == 404 and err.value.read() == b"Not Found\n"
    finally:
        s.stop()


def test_client_cert_auth_refuses_strangers_and_names_the_verified_client(pki):
    s = _Served(_server_ctx(pki, require_client_cert=True))
    try:
        ca = pki["ca.crt"].read_bytes()
        key = pki["client.key"].read_bytes()
        for cert, cert_key in ((None, None), (pki["stranger.crt"].read_bytes(), pki["stranger.key"].read_bytes())):
            creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=cert_key,
                                                 certificate_chain=cert)
            with pytest.raises(grpc.RpcError) as err:
                _put(s.port, creds)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        good = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                            certificate_chain=pki["client.crt"].read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{s.port}", good) as ch:
            rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=10)
            assert "alice" in s.common_names()
    finally:
        s.stop()
