"""`fastkv bench memory`: resident memory of fastkv and real etcd holding the same keys.

Both servers start fresh (same single-member settings, their own data dirs, on loopback); the same
load generator writes --keys distinct keys of --key-size bytes with --val-size byte values to each
(sequential keys, so every put creates a key); then the servers' resident set sizes (VmRSS in
/proc/<pid>/status) are read, after --settle seconds so background work (backend commits, Go's
garbage collector) has run. The key count is checked with a count-only Range on both servers.
The ratio fastkv/etcd is the figure to read: below 1.0, fastkv holds the data in less memory.
"""
from __future__ import annotations

import argparse
import sys
import time

from fastkv.bench._common import add_json_flag, emit, machine_info


def add_parser(sub) -> None:
    from fastkv.bench._servers import ETCD_CMD, ETCD_INSTALL_HINT, FASTKV_CMD

    p = sub.add_parser("memory", help="resident memory of fastkv vs real etcd after writing N keys",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=f"Real etcd is needed on PATH (Debian/Ubuntu: {ETCD_INSTALL_HINT}).")
    p.add_argument("--keys", type=int, default=200_000, help="distinct keys to write (default 200000)")
    p.add_argument("--key-size", type=int, default=16, help="key bytes (default 16)")
    p.add_argument("--val-size", type=int, default=64, help="value bytes (default 64)")
    p.add_argument("--clients", type=int, default=64, help="concurrent writers (default 64)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds to wait before reading RSS (default 3)")
    p.add_argument("--etcd-cmd", default=ETCD_CMD, help="command template of the reference")
    p.add_argument("--fastkv-cmd", default=FASTKV_CMD, help="command template of fastkv")
    add_json_flag(p)
    p.set_defaults(func=run)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _fill(server, args) -> dict:
    from fastkv.bench import _loadgen
    from fastkv.client import EtcdClient

    before = rss_mib(server.pid)
    p = _loadgen.default_params("put")
    p.update(endpoints=[server.endpoint], clients=args.clients, total=args.keys, key_space=args.keys,
             sequential=True, key_size=args.key_size, val_size=args.val_size)
    r = _loadgen.run(p)
    time.sleep(args.settle)
    with EtcdClient(server.endpoint, timeout=30) as c:
        count = c.get(b"\0", range_end=b"\0", count_only=True).count
    return {"rss_before_mib": before, "rss_mib": rss_mib(server.pid), "keys": count, "put_rps": r["rps"],
            "errors": r["errors_total"]}


def run(args) -> int:
    import shutil

    from fastkv.bench._servers import ETCD_INSTALL_HINT, Server, ServerUnavailable

    if shutil.which(args.etcd_cmd.split()[0]) is None:
        print(f"fastkv bench memory: real etcd is not on PATH; install it with: {ETCD_INSTALL_HINT}",
              file=sys.stderr)
        return 2
    out = {"keys": args.keys, "key_size": args.key_size, "val_size": args.val_size, "machine": machine_info()}
    for name, template in (("etcd", args.etcd_cmd), ("fastkv", args.fastkv_cmd)):
        try:
            with Server(name, template) as server:
                print(f"{name}: writing {args.keys:,} keys ({args.key_size} B keys, {args.val_size} B values)...",
                      flush=True)
                out[name] = _fill(server, args)
        except ServerUnavailable as exc:
            print(f"fastkv bench memory: {exc}", file=sys.stderr)
            return 2
    for name in ("etcd", "fastkv"):
        r = out[name]
        print(f"{name:<8} RSS {r['rss_before_mib']:7.1f} MiB empty -> {r['rss_mib']:7.1f} MiB with "
              f"{r['keys']:,} keys ({r['put_rps']:,.0f} puts/s, {r['errors']} errors)")
        if r["keys"] != args.keys:
            print(f"fastkv bench memory: {name} holds {r['keys']:,} keys, expected {args.keys:,}", file=sys.stderr)
            return 1
    out["fastkv_rss_mib"], out["etcd_rss_mib"] = out["fastkv"]["rss_mib"], out["etcd"]["rss_mib"]
    out["rss_ratio"] = out["fastkv_rss_mib"] / out["etcd_rss_mib"]
    out["headline_result"] = f"{out['fastkv_rss_mib']:.0f} MiB RSS"
    out["headline_reference"] = f"etcd: {out['etcd_rss_mib']:.0f} MiB RSS"
    out["headline_ratio"] = f"x{out['rss_ratio']:.2f}"
    print(f"resident memory fastkv / etcd = {out['rss_ratio']:.2f} (lower is better)")
    emit(out, args.json)
    return 0
