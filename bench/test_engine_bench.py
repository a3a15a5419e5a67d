"""Engine benchmarks: embedded put/get vs raw py-lmdb, codec and write buffer vs their twins."""
from __future__ import annotations

import os

import lmdb
import pytest

import fastkv
from fastkv._native import load
from fastkv.mvcc import RangeOp

N = 20_000
KEYS = [b"%016d" % i for i in range(N)]
VAL = os.urandom(256)


@pytest.mark.benchmark(group="put-20k")
def test_raw_lmdb_put(benchmark, tmp_path):
    def run():
        env = lmdb.open(str(tmp_path / os.urandom(4).hex()), map_size=1 << 30)
        with env.begin(write=True) as txn:
            for k in KEYS:
                txn.put(k, VAL)
        env.close()

    benchmark.pedantic(run, rounds=5)


@pytest.mark.benchmark(group="put-20k")
def test_embedded_put_batched(benchmark, tmp_path):
    def run():
        db = fastkv.open(str(tmp_path / os.urandom(4).hex()), batch_interval=0)
        with db.batch():
            for k in KEYS:
                db.put(k, VAL)
        db.close()

    benchmark.pedantic(run, rounds=5)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("filled"))
    db = fastkv.open(path + "/fastkv", batch_interval=0)
    with db.batch():
        for k in KEYS:
            db.put(k, VAL)
    env = lmdb.open(path + "/raw", map_size=1 << 30)
    with env.begin(write=True) as txn:
        for k in KEYS:
            txn.put(k, VAL)
    yield db, env
    db.close()
    env.close()


@pytest.mark.benchmark(group="get-20k")
def test_raw_lmdb_get(benchmark, filled):
    _, env = filled

    def run():
        with env.begin() as txn:
            for k in KEYS:
                txn.get(k)

    benchmark(run)


@pytest.mark.benchmark(group="get-20k")
def test_embedded_get(benchmark, filled):
    db, _ = filled
    rng = db.kv.range

    def run():
        for k in KEYS:
            rng(RangeOp(k))

    benchmark(run)


@pytest.mark.parametrize("pure", [False, True], ids=["native", "twin"])
@pytest.mark.benchmark(group="mvcccodec-encode-decode-20k")
def test_mvcccodec(benchmark, pure):
    c = load("mvcccodec", pure=pure)

    def run():
        for i, k in enumerate(KEYS):
            c.decode_record(c.encode_record(k, VAL, i + 1, i + 1, 1, 0))
            c.rev_key(i + 1, 0)

    benchmark(run)


@pytest.mark.parametrize("pure", [False, True], ids=["native", "twin"])
@pytest.mark.benchmark(group="batchbuf-put-get-20k")
def test_batchbuf(benchmark, pure):
    m = load("batchbuf", pure=pure)

    def run():
        b = m.WriteBuffer(2)
        for k in KEYS:
            b.put(0, k, VAL)
        for k in KEYS:
            b.get(0, k)
        b.bucket_items(0)

    benchmark(run)
