"""`fastkv chaos`: fault injection and linearizability checking against an etcd-API cluster."""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from fastkv.chaos.kinds import ALL_KINDS

EPILOG = """\
examples:
  fastkv chaos --members 3 --duration 60 --seed 7          # real etcd, every fault kind
  fastkv chaos --runs 20 --duration 15 --faults kill,pause  # seeds 7..26
  fastkv chaos --target fastkv --members 1 --faults kill,pause
  fastkv chaos --endpoints 127.0.0.1:2379,127.0.0.1:22379  # your cluster: workload + checks, no faults
  fastkv chaos --corrupt-history                           # plant a stale read: the verdict must fail

Exit status 0 only when every run is clean: linearizable, no acknowledged write lost, watch
guarantees held, members converged. Histories (JSON lines) and violation reports (HTML) go to --out.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "chaos", help="break a cluster on a seeded schedule and check every answer (linearizability)",
        description="Run concurrent clients and watchers against a cluster speaking etcd's v3 API while "
        "faults fire on a schedule drawn from --seed; then heal, read back and check the whole history "
        "for linearizability, lost writes, watch guarantees and convergence.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=["etcd", "fastkv"], default="etcd",
                   help="what to launch: real etcd (default; `etcd` on PATH or ETCD_BIN) or `fastkv serve` "
                   "(--members of them, each with its own data dir)")
    p.add_argument("--endpoints", default="",
                   help="comma-separated client endpoints of a running cluster to test instead of launching "
                   "one (no faults then: the tool does not own its processes)")
    p.add_argument("--members", type=int, default=3, help="members to launch (default 3)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of workload per run (default 60)")
    p.add_argument("--seed", type=int, default=7, help="seed of the fault schedule and the workload (default 7)")
    p.add_argument("--runs", type=int, default=1, help="runs with seeds seed, seed+1, ... (default 1)")
    p.add_argument("--faults", default=",".join(ALL_KINDS),
                   help=f"comma-separated fault kinds from {', '.join(ALL_KINDS)}; 'none' for none "
                   "(default: all)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--keys", type=int, default=4, help="size of the contended key space (default 4)")
    p.add_argument("--watchers", type=int, default=2, help="watchers on the workload prefix (default 2)")
    p.add_argument("--out", default="chaos-out", help="directory for histories and reports (default chaos-out)")
    p.add_argument("--check-time-limit", type=float, default=120.0,
                   help="seconds the linearizability search may take before answering 'unknown' (default 120)")
    p.add_argument("--corrupt-history", action="store_true",
                   help="plant a stale read in the recorded history before checking (proves the checker bites)")
    p.add_argument("--check", metavar="HISTORY.jsonl",
                   help="only re-check a saved history (linearizability and watch guarantees) and exit")
    p.add_argument("--keep-data", action="store_true", help="keep the members' data dirs and logs")
    p.add_argument("--json", action="store_true", help="print one JSON object per run (and no table)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=main)


def _fmt(v) -> str:
    return "unknown" if v is None else ("yes" if v is True else "NO" if v is False else str(v))


def summary(v) -> str:
    rec = [r for r in v.recovery_seconds if r is not None]
    rows = [
        ("verdict", "CLEAN" if v.clean else "NOT CLEAN"),
        ("target", f"{v.target}, {v.members} member(s), seed {v.seed}, {v.duration:g}s"),
        ("operations", f"{v.ops} ({v.ok} ok, {v.unknown} writes unknown, {v.failed_reads} reads failed)"),
        ("faults", ", ".join(f"{k} x{n}" for k, n in sorted(v.faults.items())) or "none"),
        ("linearizable", f"{_fmt(v.linearizable)} (checked in {v.check_seconds:.2f}s)"),
        ("acked writes lost", f"{len(v.lost_writes)} of {v.durable_acked} fresh keys"),
        ("watch guarantees", f"{_fmt(v.watch_ok)} ({v.watch_events} events, {v.watch_resumes} resumes)"),
        ("converged", f"{_fmt(v.converged)} ({v.convergence})"),
        ("first write after leader loss",
         (f"max {max(rec):.2f}s, median {sorted(rec)[len(rec) // 2]:.2f}s over {len(rec)}" if rec else "n/a")
         + (f" ({len(v.recovery_seconds) - len(rec)} without a later write)" if len(rec) < len(v.recovery_seconds) else "")),
        ("history", v.history_path),
    ]
    if v.error:
        rows.insert(1, ("error", v.error))
    if v.corrupted_op:
        rows.append(("planted", v.corrupted_op))
    if v.violation_keys:
        rows.append(("violating keys", ", ".join(v.violation_keys)))
        rows.append(("report", v.report_path))
        rows.append(("failing sub-history", v.failing_note))
        rows += [("", line) for line in v.failing_history[:30]]
    for issue in v.watch_issues[:10]:
        rows.append(("watch issue", issue))
    for lost in v.lost_writes[:10]:
        rows.append(("lost", lost))
    for err in v.fault_errors[:10]:
        rows.append(("fault error", err))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {val}" for k, val in rows)


def check_file(path: str, time_limit: float, as_json: bool) -> int:
    from fastkv.chaos import linearize
    from fastkv.chaos.history import Op, load_jsonl
    from fastkv.chaos.watchcheck import WatchRecord, check_watches

    ops, watches, final = [], [], None
    try:
        for rec in load_jsonl(path):
            kind = rec.pop("type", "op")
            if kind == "op":
                ops.append(Op.from_json(rec))
            elif kind == "run":
                final = rec.get("final_revision") or None
            elif kind == "watch":
                watches.append(WatchRecord.from_json(rec))
    except (OSError, ValueError, TypeError) as exc:
        print(f"fastkv chaos: cannot read history {path}: {exc}", file=sys.stderr)
        return 2
    res = linearize.check(ops, time_limit=time_limit)
    wres = check_watches(ops, watches, final) if watches else None
    out = {"history": path, "ops": res.ops, "unknown": res.unknown, "keys": len(res.keys),
           "linearizable": res.linearizable, "check_seconds": round(res.elapsed, 3),
           "violation_keys": [k.key for k in res.violations],
           "failing_history": [o.describe() for o in (res.violations[0].failing if res.violations else [])],
           "watch_ok": None if wres is None else wres.ok,
           "watch_issues": [] if wres is None else [f"watcher {i.watcher}: {i.kind}: {i.detail}" for i in wres.issues]}
    if as_json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            if isinstance(v, list):
                for line in v[:30]:
                    print(f"  {k:<16}  {line}")
            else:
                print(f"  {k:<16}  {_fmt(v)}")
    return 0 if res.linearizable is True and (wres is None or wres.ok) else 1


def main(args) -> int:
    if args.check:
        return check_file(args.check, args.check_time_limit, args.json)
    from fastkv.chaos.cluster import ClusterError
    from fastkv.chaos.runner import RunConfig, run

    faults = [] if args.faults in ("", "none") else [f.strip() for f in args.faults.split(",") if f.strip()]
    bad = [f for f in faults if f not in ALL_KINDS]
    if bad:
        print(f"fastkv chaos: unknown fault kind(s) {', '.join(bad)}; choose from {', '.join(ALL_KINDS)}",
              file=sys.stderr)
        return 2
    if args.members < 1 or args.duration <= 0 or args.runs < 1:
        print("fastkv chaos: --members, --duration and --runs must be positive", file=sys.stderr)
        return 2

    def _interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()] or None
    all_clean = True
    verdicts = []
    for n in range(args.runs):
        cfg = RunConfig(target=args.target, members=args.members, duration=args.duration, seed=args.seed + n,
                        endpoints=endpoints, faults=faults, clients=args.clients, keys=args.keys,
                        watchers=args.watchers, out_dir=args.out, check_time_limit=args.check_time_limit,
                        corrupt_history=args.corrupt_history, keep_data=args.keep_data,
                        progress=not args.quiet and not args.json)
        try:
            v = asyncio.run(run(cfg))
        except ClusterError as exc:
            print(f"fastkv chaos: {exc}", file=sys.stderr)
            return 2
        verdicts.append(v)
        all_clean &= v.clean
        if args.json:
            print(json.dumps(v.to_json()), flush=True)
        else:
            print(summary(v), flush=True)
    if args.runs > 1 and not args.json:
        clean = sum(v.clean for v in verdicts)
        print(f"{clean} of {len(verdicts)} runs clean (seeds {args.seed}..{args.seed + args.runs - 1}); "
              f"{sum(v.ops for v in verdicts)} ops, {sum(v.unknown for v in verdicts)} unknown, "
              f"{sum(sum(v.faults.values()) for v in verdicts)} faults, "
              f"checker max {max(v.check_seconds for v in verdicts):.2f}s")
    return 0 if all_clean else 1
