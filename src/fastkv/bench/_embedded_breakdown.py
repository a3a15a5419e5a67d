"""Where an embedded put's time goes: `fastkv bench embedded --breakdown`.

Each component runs as its own loop over the same keys and values as the headline figure (so the
parts do not add up exactly: separate loops miss the cache effects of the combined path). Per put,
in microseconds, best of --rounds:

  raw_put             raw py-lmdb txn.put in one write txn, commit included (the reference)
  full_put            fastkv db.put inside db.batch(), commits included (the headline figure)
  put_value           KVStore.put_value in db.batch(): full_put without the DB.put layer
  db_put_layer        full_put - put_value: DB.put's checks and its PutResult
  put_result          PutResult(rev, None) alone (part of db_put_layer)
  fused_put           RevisionWriter.put alone: index + revision key + record + buffer, in C
  index_put           TreeIndex.put_versioned alone
  encode              rev_key + encode_record alone
  buffer_put          WriteBuffer.put alone (prepared keys and records)
  commit              the backend commits: buffer -> LMDB putmulti + sync, every batch_limit puts
  commit_floor        raw py-lmdb putmulti(append) of the same records, one synced txn per batch_limit
                      records: what any store writing these records in such batches pays
  lock                `with backend lock:` alone (put_value takes it once per put)
  put_value_rest      put_value - fused_put - commit: lock, quota check, counters, commit rule
"""
from __future__ import annotations

import os
import tempfile
import time

COMPONENTS = ("raw_put", "full_put", "put_value", "db_put_layer", "put_result", "fused_put", "index_put", "encode",
              "buffer_put", "commit", "commit_floor", "lock", "put_value_rest")


def _best(fn, rounds: int) -> float:
    return min(fn() for _ in range(rounds))


def breakdown(n: int, key_size: int, val_size: int, root: str, rounds: int = 3) -> dict:
    """Microseconds per put of each component (see the module docstring)."""
    import lmdb

    import fastkv
    from fastkv._native import load
    from fastkv.backend import KEY
    from fastkv.backend.base import DEFAULT_BATCH_LIMIT as LIMIT  # what fastkv.open uses
    from fastkv.mvcc.ops import PutResult

    codec, revindex, batchbuf = load("mvcccodec"), load("revindex"), load("batchbuf")
    keys = [(b"%0*d" % (key_size, i))[-key_size:] for i in range(n)]
    val = os.urandom(val_size)
    records = [(codec.rev_key(i + 2, 0), codec.encode_record(k, val, i + 2, i + 2, 1, 0)) for i, k in enumerate(keys)]

    def raw_put():
        env = lmdb.open(tempfile.mkdtemp(dir=root), map_size=1 << 34)
        t0 = time.perf_counter()
        with env.begin(write=True) as txn:
            for k in keys:
                txn.put(k, val)
        dt = time.perf_counter() - t0
        env.close()
        return dt

    def in_batch(use_kv: bool):
        def run():
            db = fastkv.open(tempfile.mkdtemp(dir=root), batch_interval=0)
            put = db.kv.put_value if use_kv else db.put
            t0 = time.perf_counter()
            with db.batch():
                for k in keys:
                    put(k, val)
            dt = time.perf_counter() - t0
            db.close()
            return dt
        return run

    def put_result():
        t0 = time.perf_counter()
        for i in range(n):
            PutResult(i, None)
        return time.perf_counter() - t0

    def fused_put():
        db = fastkv.open(tempfile.mkdtemp(dir=root), batch_interval=0)
        writer, buf, limit = db.kv._writer, db.backend._buffer, db.backend.batch_limit
        writer.set_index(revindex.TreeIndex())
        put, rev, dt = writer.put, 2, 0.0
        for s in range(0, n, limit):
            t0 = time.perf_counter()
            for k in keys[s:s + limit]:
                put(k, val, rev, 0, 0)
                rev += 1
            dt += time.perf_counter() - t0
            buf.clear()  # what a commit leaves behind, without the commit
        db.close()
        return dt

    def index_put():
        idx = revindex.TreeIndex()
        put = idx.put_versioned
        t0 = time.perf_counter()
        for i, k in enumerate(keys):
            put(k, i + 2, 0)
        return time.perf_counter() - t0

    def encode():
        rev_key, encode_record = codec.rev_key, codec.encode_record
        t0 = time.perf_counter()
        for i, k in enumerate(keys):
            rev_key(i + 2, 0)
            encode_record(k, val, i + 2, i + 2, 1, 0)
        return time.perf_counter() - t0

    def buffer_put():
        buf, dt = batchbuf.WriteBuffer(8), 0.0
        for s in range(0, n, LIMIT):
            t0 = time.perf_counter()
            for k, v in records[s:s + LIMIT]:
                buf.put(KEY, k, v)
            dt += time.perf_counter() - t0
            buf.clear()
        return dt

    def commit():
        db = fastkv.open(tempfile.mkdtemp(dir=root), batch_interval=0)
        be, dt = db.backend, 0.0
        buf, limit = be._buffer, be.batch_limit
        for s in range(0, n, limit):
            for k, v in records[s:s + limit]:
                buf.put(KEY, k, v)
            t0 = time.perf_counter()
            be.force_commit()
            dt += time.perf_counter() - t0
        db.close()
        return dt

    def commit_floor():
        env = lmdb.open(tempfile.mkdtemp(dir=root), map_size=1 << 34, max_dbs=2)
        db = env.open_db(b"key")
        t0 = time.perf_counter()
        for s in range(0, n, LIMIT):
            with env.begin(write=True) as txn:
                txn.cursor(db=db).putmulti(records[s:s + LIMIT], append=True)
        dt = time.perf_counter() - t0
        env.close()
        return dt

    def lock():
        db = fastkv.open(tempfile.mkdtemp(dir=root), batch_interval=0)
        lk = db.backend._lock
        t0 = time.perf_counter()
        for _ in keys:
            with lk:
                pass
        dt = time.perf_counter() - t0
        db.close()
        return dt

    measured = {"raw_put": raw_put, "full_put": in_batch(False), "put_value": in_batch(True), "put_result": put_result,
                "fused_put": fused_put, "index_put": index_put, "encode": encode, "buffer_put": buffer_put,
                "commit": commit, "commit_floor": commit_floor, "lock": lock}
    us = {name: _best(fn, rounds) / n * 1e6 for name, fn in measured.items()}
    us["db_put_layer"] = us["full_put"] - us["put_value"]
    us["put_value_rest"] = us["put_value"] - us["fused_put"] - us["commit"]
    return {name: us[name] for name in COMPONENTS}
