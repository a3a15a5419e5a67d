"""Lease test rig: a real KVStore on a real backend (LMDB on disk and memory) with a Lessor
attached and wired the way the server wires it (range deleter = one KV txn of deletes; recover from
the KV store's leased keys). Time comes from a ManualClock, so every expiry is decided by the test.
"""
from __future__ import annotations

import pytest

from fastkv.backend import open_backend
from fastkv.lease import Lessor
from fastkv.mvcc import DeleteOp, KVStore, RangeOp, TxnOp

MIN_TTL = 2  # ceil(1.5 * a 1 s election timeout)


class ManualClock:
    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Member:
    """One member's storage: backend + KVStore + Lessor, and the events the store emitted."""

    def __init__(self, backend, clock, *, max_txn_ops: int = 128, **lessor_opts):
        self.backend = backend
        self.clock = clock
        lessor_opts.setdefault("min_ttl", MIN_TTL)
        self.lessor = Lessor(backend, clock=clock, **lessor_opts)
        self.kv = KVStore(backend, lessor=self.lessor, max_txn_ops=max_txn_ops)
        self.events: list = []  # (revision, [Event]) per write txn
        self.kv.observer = lambda events, rev: self.events.append((rev, list(events)))
        self.lessor.set_range_deleter(self.delete_keys)
        self.lessor.recover(self.leased_keys())

    def delete_keys(self, keys: list) -> None:
        """What the server passes as the range deleter: one txn, hence one revision."""
        self.kv.txn(TxnOp(success=[DeleteOp(k) for k in keys]))

    def leased_keys(self) -> list:
        return [(kv.key, kv.lease) for kv in self.kv.range(RangeOp(b"\x00", b"\x00")).kvs if kv.lease]

    def get(self, key: bytes):
        kvs = self.kv.range(RangeOp(key)).kvs
        return kvs[0] if kvs else None


@pytest.fixture(params=["lmdb", "memory"])
def backend_kind(request):
    return request.param


@pytest.fixture
def clock():
    return ManualClock()


def _member_factory(tmp_path, default_kind, clock):
    opened = []

    def make(reopen: bool = False, kind: str | None = None, **opts):
        kind = kind or default_kind
        if reopen:
            assert kind == "lmdb", "only the LMDB backend survives a reopen"
        batching = {"batch_limit": opts.pop("batch_limit")} if "batch_limit" in opts else {}
        be = open_backend(kind, str(tmp_path / "db") if kind == "lmdb" else None, batch_interval=0, **batching)
        opened.append(be)
        return Member(be, clock, **opts)

    return make, opened


def _close_all(opened) -> None:
    for be in opened:
        try:
            be.close()
        except Exception:
            pass


@pytest.fixture
def open_member(tmp_path, backend_kind, clock):
    """open_member(**opts) -> Member on a fresh backend of each kind (LMDB, memory)."""
    make, opened = _member_factory(tmp_path, backend_kind, clock)
    yield make
    _close_all(opened)


@pytest.fixture
def open_lmdb_member(tmp_path, clock):
    """open_lmdb_member(**opts) -> Member on LMDB; reopen=True opens the same directory again
    (close the previous member's backend first)."""
    make, opened = _member_factory(tmp_path, "lmdb", clock)
    yield make
    _close_all(opened)


@pytest.fixture
def member(open_member):
    return open_member()


@pytest.fixture
def wire_member(clock):
    """wire_member(backend, **opts) -> Member over a backend the test opened itself."""
    return lambda backend, **opts: Member(backend, clock, **opts)
