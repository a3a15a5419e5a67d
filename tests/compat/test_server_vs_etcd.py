"""Differential test of `fastkv serve` against real etcd over gRPC: the random KV sequences of the
engine test (every Range/Put/DeleteRange/Txn/Compact flag and error), now through both servers.
Revisions, kvs, counts, errors must be equal; cluster/member ids and raft terms are cleared."""
from __future__ import annotations

import os
import random

import pytest

from fastkv.client.sync import EtcdClient
from tests.compat.test_engine_vs_etcd import Gen, _revision_after, _tie_insensitive, etcd_call

STEPS = int(os.environ.get("FASTKV_DIFF_STEPS", "600"))


@pytest.mark.etcd
def test_random_sequences_match_real_etcd_through_the_server(etcd_endpoint, fastkv_endpoint):
    seed = int(os.environ.get("FASTKV_DIFF_SEED", random.randrange(1 << 30)))
    gen = Gen(random.Random(seed))
    etcd, fkv = EtcdClient(etcd_endpoint), EtcdClient(fastkv_endpoint)
    try:
        for i in range(STEPS):
            method, req = gen.step()
            want = _tie_insensitive(method, req, etcd_call(etcd, method, req))
            got = _tie_insensitive(method, req, etcd_call(fkv, method, req))
            assert got == want, f"seed={seed} step={i} {method}\nrequest: {req}\netcd:   {want}\nfastkv: {got}"
            gen.rev = _revision_after(want, gen.rev)
    finally:
        etcd.close()
        fkv.close()
