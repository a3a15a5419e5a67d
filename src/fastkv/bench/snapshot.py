"""`fastkv bench snapshot`: what an etcd-format (bbolt) snapshot costs, against the LMDB copy.

Fills a fresh LMDB backend through the MVCC store with --keys distinct keys (--val-size bytes each,
every --overwrite-every'th key written twice, so the key bucket holds history too), then times, in
the same run and on the same data:

  bbolt   export_etcd_snapshot: what Maintenance.Snapshot streams (read one commit point, convert
          every row to etcd's encoding, write the bbolt file with the pure-Python writer);
  lmdb    backend.write_snapshot: LMDB's own compacting copy (C), the snapshot fastkv used to send
          and still uses for itself. The reference.

Each is run --repeat times into a file under --dir (then fsynced) and the best time is kept. The
bbolt file of the last run is checked with fastkv.backend.bbolt.check_bbolt and its row count
compared with the store. Figures: seconds and MB/s of each; ratio = bbolt time / lmdb time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from fastkv.bench._common import Progress, add_json_flag, emit, machine_info


def add_parser(sub) -> None:
    p = sub.add_parser("snapshot", help="etcd-format (bbolt) snapshot export vs LMDB copy, same data",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", type=int, default=100_000, help="distinct keys (default 100000)")
    p.add_argument("--val-size", type=int, default=256, help="value bytes (default 256)")
    p.add_argument("--overwrite-every", type=int, default=4,
                   help="write every n-th key a second time (default 4; 0 = never)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each snapshot kind; best kept (default 3)")
    p.add_argument("--dir", default=None, help="where the database and snapshot files go (default: system temp)")
    add_json_flag(p)
    p.set_defaults(func=run)


def _fill(path: str, keys: int, val: bytes, overwrite_every: int):
    from fastkv.backend import open_backend
    from fastkv.mvcc import KVStore

    be = open_backend("lmdb", path, batch_interval=0)
    kv = KVStore(be)
    kv.collect_events = False
    prog = Progress("fill", keys)
    for i in range(keys):
        k = b"bench/snapshot/%012d" % i
        kv.put_value(k, val)
        if overwrite_every and i % overwrite_every == 0:
            kv.put_value(k, val)
        if i % 4096 == 0:
            prog.update(i)
    be.force_commit()
    prog.close()
    return be, kv


def _timed(fn, path: str, repeat: int) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        with open(path, "wb") as f:
            size = fn(f)
            f.flush()
            os.fsync(f.fileno())
        best = min(best, time.perf_counter() - t0)
    return best, size


def run(args) -> int:
    from fastkv.backend.bbolt import check_bbolt, read_bbolt
    from fastkv.server.snapshot_export import export_etcd_snapshot

    root = tempfile.mkdtemp(prefix="fastkv-bench-snapshot-", dir=args.dir)
    try:
        be, kv = _fill(os.path.join(root, "db"), args.keys, os.urandom(args.val_size), args.overwrite_every)
        rows = len(be.batch_tx().unsafe_range(0, b"", b""))
        bbolt_path, lmdb_path = os.path.join(root, "snap.bbolt"), os.path.join(root, "snap.lmdb")
        lmdb_s, lmdb_size = _timed(be.write_snapshot, lmdb_path, args.repeat)
        bbolt_s, bbolt_size = _timed(lambda f: export_etcd_snapshot(be, f), bbolt_path, args.repeat)
        problems = check_bbolt(bbolt_path)
        exported_rows = len(read_bbolt(bbolt_path)[b"key"]) if not problems else -1
        revision = kv.current_revision
        be.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ok = not problems and exported_rows == rows
    ratio = bbolt_s / lmdb_s
    print(f"store               : {args.keys} keys x {args.val_size}-byte values, {rows} revisions "
          f"(current revision {revision})")
    print(f"lmdb copy (ref)     : {lmdb_s:8.3f} s  {lmdb_size / 1e6:8.1f} MB  {lmdb_size / 1e6 / lmdb_s:7.1f} MB/s")
    print(f"bbolt etcd snapshot : {bbolt_s:8.3f} s  {bbolt_size / 1e6:8.1f} MB  {bbolt_size / 1e6 / bbolt_s:7.1f} MB/s")
    print(f"ratio bbolt/lmdb time: {ratio:.1f}x   (best of {args.repeat}; file check: "
          f"{'ok' if ok else problems[:3] or f'{exported_rows} rows, expected {rows}'})")
    emit({"keys": args.keys, "val_size": args.val_size, "revisions": rows, "bbolt_s": bbolt_s,
          "bbolt_bytes": bbolt_size, "lmdb_s": lmdb_s, "lmdb_bytes": lmdb_size, "ratio_bbolt_to_lmdb": ratio,
          "checked": ok, "repeat": args.repeat, "machine": machine_info()}, args.json)
    return 0 if ok else 1
