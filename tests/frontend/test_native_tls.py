"""The native front end over TLS (an ssl.SSLContext handed to NativeListeners.listen): ALPN h2 for
gRPC clients, HTTP/1.1 sniffed after the handshake, a client without a valid certificate refused at
the handshake when the context requires one, and the client certificate's common name available on
the connection. The certificates come from a CA the test makes (cryptography)."""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
import urllib.error
import urllib.request

import grpc
import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc
from fastkv.frontend.listener import NativeListeners, make_frontend
from fastkv.frontend.nullserver import null_methods


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject_cn, issuer_cn, key, issuer_key, *, ca=False, san=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject_cn)).issuer_name(_name(issuer_cn))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(obj):
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", "test-ca", ca_key, ca_key, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _cert("fastkv", "test-ca", srv_key, ca_key,
                san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = _cert("alice", "test-ca", cli_key, ca_key)
    other_ca_key = ec.generate_private_key(ec.SECP256R1())
    stranger = _cert("mallory", "other-ca", cli_key, other_ca_key)
    files = {}
    for name, obj in {"ca.crt": ca, "server.crt": srv, "server.key": srv_key, "client.crt": cli,
                      "client.key": cli_key, "stranger.crt": stranger}.items():
        (d / name).write_bytes(_pem(obj))
        files[name] = d / name
    return files


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
        for cert in (None, pki["stranger.crt"].read_bytes()):
            creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key if cert else None,
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
