"""Property test: random interleavings of grant, revoke, put, delete, renew, clock steps,
promote/demote, expiry (as the server runs it) and restarts (LMDB) against a plain model.

After every step the real KVStore + Lessor must agree with the model: lease ids and TTLs, each
lease's key set equals the live keys carrying its id, KV contents, and the current revision (a
revoke with keys costs exactly one revision). Expiry reports exactly the model's run-out leases in
(expiry, id) order. Time steps are whole seconds, so expiries compare exactly.
"""
from __future__ import annotations

import shutil
import tempfile

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fastkv.backend import open_backend
from fastkv.errors import ErrLeaseExist, ErrLeaseNotFound
from fastkv.lease import ErrNotPrimary
from fastkv.mvcc import DeleteOp, KVStore, PutOp, RangeOp, TxnOp

MIN_TTL = 2
INF = float("inf")
lease_ids = st.integers(min_value=1, max_value=3)
keys = st.sampled_from([b"a", b"b", b"c", b"d"])


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class LessorModel(RuleBasedStateMachine):
    kind = "memory"

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="fastkv-lease-model-")
        self.clock = Clock()
        self.backend = None
        self._open()
        self.m_leases: dict = {}  # id -> [ttl, expiry]
        self.m_kv: dict = {}  # key -> (value, lease)
        self.m_rev = 1
        self.m_primary = False
        self.n = 0

    # --- wiring as the server does it ----------------------------------------------------------------
    def _open(self):
        from fastkv.lease import Lessor

        self.backend = open_backend(self.kind, self.dir + "/db" if self.kind == "lmdb" else None, batch_interval=0)
        self.lessor = Lessor(self.backend, min_ttl=MIN_TTL, clock=self.clock, checkpoint_interval=0)
        self.kv = KVStore(self.backend, lessor=self.lessor)
        self.lessor.set_range_deleter(lambda ks: self.kv.txn(TxnOp(success=[DeleteOp(k) for k in ks])))
        live = self.kv.range(RangeOp(b"\x00", b"\x00")).kvs
        # what the open's scan found is what a full read of the live keys says (the server uses it)
        assert self.kv.restored_leases == {x.key: x.lease for x in live if x.lease}
        self.lessor.recover(self.kv.restored_leases.items())

    def teardown(self):
        try:
            self.backend.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- rules -------------------------------------------------------------------------------------
    @rule(lease_id=lease_ids, ttl=st.integers(min_value=-1, max_value=12))
    def grant(self, lease_id, ttl):
        if lease_id in self.m_leases:
            try:
                self.lessor.grant(lease_id, ttl)
                raise AssertionError("grant of an existing lease succeeded")
            except ErrLeaseExist:
                return
        ttl = max(ttl, MIN_TTL)
        assert self.lessor.grant(lease_id, ttl).ttl == ttl
        self.m_leases[lease_id] = [ttl, self.clock.now + ttl if self.m_primary else INF]

    @rule(lease_id=lease_ids)
    def revoke(self, lease_id):
        if lease_id not in self.m_leases:
            try:
                self.lessor.revoke(lease_id)
                raise AssertionError("revoke of a missing lease succeeded")
            except ErrLeaseNotFound:
                return
        self.lessor.revoke(lease_id)
        self._model_revoke(lease_id)

    def _model_revoke(self, lease_id):
        del self.m_leases[lease_id]
        doomed = [k for k, (_v, lease) in self.m_kv.items() if lease == lease_id]
        for k in doomed:
            del self.m_kv[k]
        if doomed:
            self.m_rev += 1

    @rule(key=keys, lease_id=st.integers(min_value=0, max_value=3))
    def put(self, key, lease_id):
        self.n += 1
        value = b"v%d" % self.n
        if lease_id and lease_id not in self.m_leases:
            try:
                self.kv.put(PutOp(key, value, lease=lease_id))
                raise AssertionError("put with a missing lease succeeded")
            except ErrLeaseNotFound:
                return
        self.kv.put(PutOp(key, value, lease=lease_id))
        self.m_kv[key] = (value, lease_id)
        self.m_rev += 1

    @rule(key=keys)
    def delete(self, key):
        self.kv.delete_range(DeleteOp(key))
        if self.m_kv.pop(key, None) is not None:
            self.m_rev += 1

    @rule(seconds=st.integers(min_value=0, max_value=6))
    def tick(self, seconds):
        self.clock.now += seconds

    @rule(extend=st.integers(min_value=0, max_value=2))
    def promote(self, extend):
        self.lessor.promote(float(extend))
        self.m_primary = True
        for entry in self.m_leases.values():
            entry[1] = self.clock.now + extend + entry[0]

    @rule()
    def demote(self):
        self.lessor.demote()
        self.m_primary = False
        for entry in self.m_leases.values():
            entry[1] = INF

    @rule(lease_id=lease_ids)
    def renew(self, lease_id):
        want = None
        if not self.m_primary:
            want = ErrNotPrimary
        elif lease_id not in self.m_leases or self.m_leases[lease_id][1] <= self.clock.now:
            want = ErrLeaseNotFound
        try:
            ttl = self.lessor.renew(lease_id)
        except (ErrNotPrimary, ErrLeaseNotFound) as exc:
            assert want is not None and isinstance(exc, want), (want, exc)
            return
        assert want is None, f"renew succeeded, expected {want}"
        entry = self.m_leases[lease_id]
        assert ttl == entry[0]
        entry[1] = self.clock.now + entry[0]

    @rule()
    def expire(self):
        """The server's loop: ask for run-out leases, propose and apply a revoke for each."""
        got = self.lessor.expired_leases(limit=1000)
        now = self.clock.now
        want = sorted((e[1], i) for i, e in self.m_leases.items() if e[1] <= now)
        assert got == [i for _t, i in want]
        for lease_id in got:
            self.lessor.revoke(lease_id)
            self._model_revoke(lease_id)

    @precondition(lambda self: self.kind == "lmdb")
    @rule()
    def restart(self):
        self.backend.close()
        self._open()
        self.m_primary = False
        for entry in self.m_leases.values():
            entry[1] = INF

    # --- invariants --------------------------------------------------------------------------------
    @invariant()
    def agrees_with_model(self):
        leases = self.lessor.leases()
        assert [(lease.id, lease.ttl) for lease in leases] == sorted((i, e[0]) for i, e in self.m_leases.items())
        for lease in leases:
            assert lease.keys == {k for k, (_v, lid) in self.m_kv.items() if lid == lease.id}
            assert lease.expiry == self.m_leases[lease.id][1]
        live = self.kv.range(RangeOp(b"\x00", b"\x00")).kvs
        assert {x.key: (x.value, x.lease) for x in live} == self.m_kv
        assert self.kv.current_revision == self.m_rev
        # the key -> lease map a put reads its old lease from (instead of the backend)
        for k in (b"a", b"b", b"c", b"d"):
            _v, lid = self.m_kv.get(k, (None, 0))
            assert self.lessor.lease_of(k) == lid


MemoryLessorModel = LessorModel


class LMDBLessorModel(LessorModel):
    kind = "lmdb"


TestLessorModelMemory = MemoryLessorModel.TestCase
TestLessorModelMemory.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
TestLessorModelLMDB = LMDBLessorModel.TestCase
TestLessorModelLMDB.settings = settings(max_examples=40, stateful_step_count=50, deadline=None)
