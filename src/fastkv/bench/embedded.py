"""`fastkv bench embedded`: the embedded store's put and range paths against raw py-lmdb.

Reference (same run, same keys and values, same filesystem): raw py-lmdb doing the same puts in one
large write transaction, and the same point reads / range scan in one read transaction. fastkv does
the puts inside `db.batch()` (shared commits, durable at the end of the block) and the reads through
its MVCC range (index lookup + record fetch + decode). Ratios are fastkv / raw; 1.0 would mean the
MVCC layer costs nothing. Both sides run --rounds times, interleaved (raw, fastkv, raw, fastkv...),
and each figure is the best round: on a shared machine that is the least disturbed measurement.

--breakdown adds where a put's time goes, component by component (below).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time

from fastkv.bench._common import add_json_flag, emit, machine_info


def add_parser(sub) -> None:
    from fastkv.bench import _embedded_breakdown

    p = sub.add_parser("embedded", help="embedded put/range throughput vs raw py-lmdb",
                       description=__doc__ + "\n" + _embedded_breakdown.__doc__,
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--ops", type=int, default=100_000, help="keys to write and read (default 100000)")
    p.add_argument("--key-size", type=int, default=16, help="key bytes (default 16)")
    p.add_argument("--val-size", type=int, default=256, help="value bytes (default 256)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each is reported (3)")
    p.add_argument("--dir", default=None, help="where to create the temporary databases")
    p.add_argument("--breakdown", action="store_true",
                   help="also time each part of a put in its own loop (us/put; JSON key 'breakdown_us')")
    add_json_flag(p)
    p.set_defaults(func=run)


def measure(n: int, key_size: int, val_size: int, root: str) -> dict:
    import lmdb

    import fastkv
    from fastkv.mvcc import RangeOp

    keys = [(b"%0*d" % (key_size, i))[-key_size:] for i in range(n)]
    val = os.urandom(val_size)
    out = {}

    # raw py-lmdb: the floor any LMDB-based store can reach
    env = lmdb.open(tempfile.mkdtemp(dir=root), map_size=1 << 34)
    t0 = time.perf_counter()
    with env.begin(write=True) as txn:
        for k in keys:
            txn.put(k, val)
    out["raw_put_per_s"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    with env.begin() as txn:
        for k in keys:
            txn.get(k)
    out["raw_get_per_s"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    with env.begin() as txn:
        rows = sum(1 for _ in txn.cursor())
    out["raw_scan_keys_per_s"] = rows / (time.perf_counter() - t0)
    env.close()

    db = fastkv.open(tempfile.mkdtemp(dir=root), batch_interval=0)
    t0 = time.perf_counter()
    with db.batch():
        put = db.put
        for k in keys:
            put(k, val)
    out["fastkv_put_per_s"] = n / (time.perf_counter() - t0)
    rng = db.kv.range
    t0 = time.perf_counter()
    for k in keys:
        rng(RangeOp(k))
    out["fastkv_get_per_s"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    r = rng(RangeOp(b"\x00", b"\x00"))
    out["fastkv_scan_keys_per_s"] = len(r.kvs) / (time.perf_counter() - t0)
    db.close()
    out["put_ratio"] = out["fastkv_put_per_s"] / out["raw_put_per_s"]
    out["get_ratio"] = out["fastkv_get_per_s"] / out["raw_get_per_s"]
    out["scan_ratio"] = out["fastkv_scan_keys_per_s"] / out["raw_scan_keys_per_s"]
    return out


def run(args) -> int:
    root = tempfile.mkdtemp(prefix="fastkv-bench-", dir=args.dir)
    try:
        rounds = [measure(args.ops, args.key_size, args.val_size, root) for _ in range(max(1, args.rounds))]
        parts = None
        if args.breakdown:
            from fastkv.bench._embedded_breakdown import breakdown

            parts = breakdown(args.ops, args.key_size, args.val_size, root, max(1, args.rounds))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    r = {k: max(x[k] for x in rounds) for k in rounds[0] if k.endswith("_per_s")}
    for name in ("put", "get", "scan_keys"):
        r[f"{name.split('_')[0]}_ratio"] = r[f"fastkv_{name}_per_s"] / r[f"raw_{name}_per_s"]
    print(f"{args.ops} keys of {args.key_size} bytes, {args.val_size}-byte values")
    print(f"{'':14}{'fastkv/s':>14}{'raw lmdb/s':>14}{'ratio':>8}")
    for name, label in (("put", "put"), ("get", "point get"), ("scan_keys", "range scan")):
        f, raw = r[f"fastkv_{name}_per_s"], r[f"raw_{name}_per_s"]
        print(f"{label:14}{f:14,.0f}{raw:14,.0f}{f / raw:8.2f}")
    if parts is not None:
        print("where a put's time goes (us/put, each part in its own loop, best of the rounds):")
        for name, us in parts.items():
            print(f"  {name:16}{us:8.3f}")
        r["breakdown_us"] = parts
    r.update({"ops": args.ops, "key_size": args.key_size, "val_size": args.val_size, "machine": machine_info()})
    emit(r, args.json)
    return 0
