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


@pytest.fixture
def pki(tmp_path):
    """A throwaway CA issuing peer certificates (server and client auth, IP SAN 127.0.0.1 unless
    told otherwise): the project's one certificate maker."""
    from fastkv.transport.certs import CertificateAuthority

    return CertificateAuthority(tmp_path / "pki")


@pytest.fixture
def other_pki(tmp_path):
    from fastkv.transport.certs import CertificateAuthority

    return CertificateAuthority(tmp_path / "other-pki", "some-other-ca")
