"""Fixtures for the peer transport tests: real sockets on 127.0.0.1, several PeerTransports on one
event loop (uvloop by default, as the server runs; some tests also run on asyncio's own loop).

Tests are plain functions that build a coroutine and hand it to `run(coro, loop=...)`; clusters are
async context managers that always stop every transport they started.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import time
import types

import pytest
import uvloop

from fastkv._native import load
from fastkv.transport import PeerTransport, TransportConfig

pb = load("raftpb")
CLUSTER_ID = 0x5EED


class RecordingSink:
    """A RaftSink that records what the transport hands back into raft."""

    def __init__(self, removed=()):
        self.got = []
        self.unreachable = []
        self.snapshot_status = []
        self.snapshots = []
        self.removed = set(removed)
        self.on_process = None

    def process(self, m):
        self.got.append(m)
        if self.on_process is not None:
            self.on_process(m)

    def report_unreachable(self, member_id):
        self.unreachable.append(member_id)

    def report_snapshot(self, member_id, failed):
        self.snapshot_status.append((member_id, failed))

    def is_id_removed(self, member_id):
        return member_id in self.removed

    def snapshot_received(self, msg, path):
        self.snapshots.append((msg, path))


def run(coro, loop: str = "uvloop", timeout: float = 120):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro
    if loop == "uvloop":
        return uvloop.run(bounded())
    return asyncio.run(bounded())


async def wait_for(cond, timeout: float = 20.0, what: str = "condition"):
    """Poll `cond()` until true; generous deadline for a loaded 2-core machine."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


class Cluster:
    def __init__(self, tmp_path, n, *, config=None, scheme="http", server_tls=None,
                 client_tls=None, cluster_ids=None, seed=1):
        self.tmp_path = tmp_path
        self.n = n
        self.config = config
        self.scheme = scheme
        self.server_tls = server_tls or {}
        self.client_tls = client_tls or {}
        self.cluster_ids = cluster_ids or {}
        self.seed = seed
        self.tr: dict[int, PeerTransport] = {}
        self.sink: dict[int, RecordingSink] = {}
        self.url: dict[int, str] = {}
        self.removed_calls: dict[int, int] = {}

    def make(self, i, port=0, sink=None):
        def on_removed(i=i):
            self.removed_calls[i] = self.removed_calls.get(i, 0) + 1
        tr = PeerTransport(i, self.cluster_ids.get(i, CLUSTER_ID), snap_dir=str(self.tmp_path / f"snap{i}"),
                           server_tls=self.server_tls.get(i), client_tls=self.client_tls.get(i),
                           config=self.config or TransportConfig(backoff_initial=0.02, backoff_cap=0.3),
                           rng=random.Random(self.seed * 100 + i), on_removed=on_removed)
        self.tr[i] = tr
        self.sink[i] = sink or self.sink.get(i) or RecordingSink()
        return tr

    async def __aenter__(self):
        for i in range(1, self.n + 1):
            tr = self.make(i)
            (_h, port), = await tr.serve([f"{self.scheme}://127.0.0.1:0"])
            self.url[i] = f"{self.scheme}://127.0.0.1:{port}"
        for i, tr in self.tr.items():
            for j in self.tr:
                if j != i:
                    tr.add_peer(j, [self.url[j]])
            tr.start(self.sink[i])
        return self

    async def connected(self, pairs=None, timeout=20.0):
        pairs = pairs or [(i, j) for i in self.tr for j in self.tr if i != j]
        await wait_for(lambda: all(self.tr[i].active_since(j) is not None for i, j in pairs),
                       timeout, f"streams {pairs} active")

    async def stop(self, i):
        tr = self.tr.pop(i)
        tr.stop()
        await tr.wait_closed()

    async def restart(self, i):
        """A new PeerTransport for member i on the same port (the member came back)."""
        port = int(self.url[i].rsplit(":", 1)[1])
        self.sink[i] = RecordingSink()
        tr = self.make(i)
        await tr.serve([f"{self.scheme}://127.0.0.1:{port}"])
        for j in list(self.tr):
            if j != i:
                tr.add_peer(j, [self.url[j]])
        tr.start(self.sink[i])
        return tr

    async def __aexit__(self, *exc):
        for tr in self.tr.values():
            tr.stop()
        for tr in self.tr.values():
            with contextlib.suppress(Exception):
                await tr.wait_closed()


@pytest.fixture
def kit(tmp_path):
    """Helpers for a test: kit.run, kit.cluster(n, ...), kit.wait_for, kit.pb, kit.Sink."""
    return types.SimpleNamespace(
        run=run, wait_for=wait_for, pb=pb, Sink=RecordingSink, CLUSTER_ID=CLUSTER_ID,
        cluster=lambda n, **kw: Cluster(tmp_path, n, **kw), tmp_path=tmp_path)


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_kind(request):
    return request.param


class PKI:
    """A throwaway CA issuing peer certificates (server and client auth, IP SAN 127.0.0.1)."""

    def __init__(self, root, name="fastkv-test-ca"):
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        self._x509, self._hashes, self._ser, self._ec, self._oid = x509, hashes, serialization, ec, NameOID
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self._now = now
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=2))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.ca_file = str(root / "ca.pem")
        with open(self.ca_file, "wb") as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str) -> tuple[str, str]:
        import datetime
        import ipaddress
        x509, ec, NameOID = self._x509, self._ec, self._oid
        from cryptography.x509.oid import ExtendedKeyUsageOID
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(self._now - datetime.timedelta(hours=1))
                .not_valid_after(self._now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(self.key, self._hashes.SHA256()))
        cert_file, key_file = str(self.root / f"{cn}.pem"), str(self.root / f"{cn}-key.pem")
        with open(cert_file, "wb") as f:
            f.write(cert.public_bytes(self._ser.Encoding.PEM))
        with open(key_file, "wb") as f:
            f.write(key.private_bytes(self._ser.Encoding.PEM, self._ser.PrivateFormat.PKCS8,
                                      self._ser.NoEncryption()))
        return cert_file, key_file


@pytest.fixture
def pki(tmp_path):
    return PKI(tmp_path / "pki")


@pytest.fixture
def other_pki(tmp_path):
    return PKI(tmp_path / "other-pki", name="some-other-ca")
