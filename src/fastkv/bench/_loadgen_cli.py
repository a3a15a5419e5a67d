"""Command-line plumbing shared by the load-generator subcommands (put, range, txn-put, watch,
lease-keepalive): the common options, running the engine, printing, --plot and --json."""
from __future__ import annotations

import argparse
import sys
import time

from fastkv.bench._common import Progress, add_json_flag, emit, machine_info

EPILOG = """\
Output: throughput, latency min/p50/p90/p99/p99.9/max, an ASCII latency histogram, errors by gRPC
code, and the generator's own CPU use (user+sys of all its processes) with the request rate it could
drive alone on every core: if that ceiling is close to the measured rate, the generator, not the
server, is the limit. With --json the last stdout line is one JSON object (rps, p50_ms, p99_ms,
errors, ...). A progress bar is shown on stderr when it is a terminal.
Works against any etcd v3 endpoint (real etcd or `fastkv serve`)."""


class ProgressBar(Progress):
    """fastkv.bench._common.Progress drawn as a bar with the live rate (still only on a terminal)."""

    WIDTH = 30

    def __init__(self, label: str, total: int):
        super().__init__(label, total)
        self._t0 = None  # set on the first update: the engine calls it only once the run has started

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        if now - self._last < 0.1 and done < self.total:
            return
        self._last = now
        frac = min(1.0, done / self.total)
        fill = int(self.WIDTH * frac)
        rate = done / (now - self._t0) if now > self._t0 else 0.0
        sys.stderr.write(f"\r{self.label} [{'#' * fill}{'.' * (self.WIDTH - fill)}] {100 * frac:5.1f}% "
                         f"{done:,}/{self.total:,}  {rate:,.0f}/s ")
        sys.stderr.flush()


def add_parser(subparsers, workload: str, help_text: str, description: str):
    from fastkv.bench._loadgen import default_params

    d = default_params(workload)
    p = subparsers.add_parser(workload, help=help_text, description=description, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("connection")
    g.add_argument("--endpoints", default=",".join(d["endpoints"]),
                   help="comma-separated etcd v3 gRPC endpoints (default: %(default)s)")
    g.add_argument("--conns", type=int, default=d["conns"],
                   help="gRPC connections per generator process, shared by its clients (default: %(default)s)")
    g.add_argument("--procs", type=int, default=d["procs"],
                   help="generator processes (default: 0 = one per CPU, at most 4)")
    g.add_argument("--timeout", type=float, default=d["timeout"], help="per-request deadline in s (default: %(default)s)")
    g.add_argument("--user", default="", metavar="NAME:PASSWORD",
                   help="authenticate as this user (auth enabled on the server) and send the token with "
                        "every request (unary workloads)")
    if workload in ("put", "range", "txn-put"):
        g.add_argument("--generator", choices=("python", "go"), default=d["generator"],
                       help="what sends the requests: python = grpcio worker processes (default); go = worker "
                            "processes on etcd 3.4's own Go client (clientv3, as etcd's tools/benchmark), built "
                            "on first use from Debian's golang-go and golang-etcd-server-dev")
    g.add_argument("--loop", choices=("uvloop", "asyncio"), default=d["loop"],
                   help="event loop of the generator processes (default: %(default)s; uvloop costs less CPU "
                        "per request, see `fastkv bench client-paths`)")
    g.add_argument("--server-pid", type=int, action="append", default=[], metavar="PID",
                   help="also report the CPU time of this (local) server process over the run; repeatable")
    if workload != "watch":
        g.add_argument("--null-server", nargs="?", const="grpcio", choices=("grpcio", "native"), default=None,
                       help="ignore --endpoints: run against a local Python gRPC server that answers every "
                            "call at once and does nothing (grpcio, the default: the floor cost of a grpcio "
                            "server in Python, see fastkv/bench/_nullserver.py; native: fastkv's own HTTP/2 "
                            "front end, see fastkv/frontend/nullserver.py)")
    g = p.add_argument_group("load")
    if workload != "watch":
        g.add_argument("--clients", type=int, default=d["clients"],
                       help="concurrent clients (requests in flight), spread over the processes (default: %(default)s)")
        g.add_argument("--total", type=int, default=d["total"], help="requests to send (default: %(default)s)")
        g.add_argument("--rate", type=float, default=0.0,
                       help="open loop: send this many requests/s in total, latency counted from each "
                            "request's scheduled time; 0 = closed loop, each client sends as soon as its "
                            "previous request returns (default)")
    if workload in ("put", "range", "txn-put"):
        g.add_argument("--key-size", type=int, default=d["key_size"], help="key length in bytes (default: %(default)s)")
    if workload != "lease-keepalive":
        g.add_argument("--val-size", type=int, default=d["val_size"], help="value length in bytes (default: %(default)s)")
    if workload in ("put", "range", "txn-put"):
        g.add_argument("--key-space-size", dest="key_space", type=int, default=d["key_space"],
                       help="number of distinct keys (default: %(default)s)")
        g.add_argument("--sequential-keys", dest="sequential", action="store_true",
                       help="walk the key space in order instead of picking keys at random")
        g.add_argument("--seed", type=int, default=d["seed"], help="seed of the random key choice (default: %(default)s)")
    if workload == "range":
        g.add_argument("--consistency", choices=("l", "s"), default="l",
                       help="l = linearizable (default), s = serializable (member-local) reads")
        g.add_argument("--no-prefill", dest="prefill", action="store_false",
                       help="do not put every key of the key space before measuring")
    if workload == "txn-put":
        g.add_argument("--txn-ops", type=int, default=d["txn_ops"], help="puts per txn (default: %(default)s)")
    if workload == "lease-keepalive":
        g.add_argument("--lease-ttl", type=int, default=d["lease_ttl"], help="TTL of each client's lease in s")
    if workload == "watch":
        g.add_argument("--watchers", type=int, default=d["watchers"], help="watchers on the key (default: %(default)s)")
        g.add_argument("--streams", type=int, default=d["streams"],
                       help="watch streams the watchers are spread over (default: %(default)s)")
        g.add_argument("--puts", type=int, default=d["puts"], help="puts to the watched key (default: %(default)s)")
        g.add_argument("--put-rate", type=float, default=d["put_rate"], help="puts per second (default: %(default)s)")
    g = p.add_argument_group("output")
    g.add_argument("--plot", metavar="FILE.png", help="save the latency histogram and throughput over time")
    add_json_flag(g)
    p.set_defaults(func=lambda args: run_cli(args, workload))
    return p


def params_from_args(args, workload: str) -> dict:
    from fastkv.bench._loadgen import default_params

    p = default_params(workload)
    for k in p:
        if hasattr(args, k):
            p[k] = getattr(args, k)
    p["endpoints"] = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    return p


def run_cli(args, workload: str) -> int:
    from fastkv.bench import _loadgen, _loadgen_report

    p = params_from_args(args, workload)
    null = None
    try:
        _loadgen.validate(p)
        expected = p["watchers"] * p["puts"] if workload == "watch" else p["total"]
        server_pids = list(args.server_pid)
        if getattr(args, "null_server", None):
            from fastkv.bench._nullserver import NullServer

            if args.null_server == "native":
                from fastkv.frontend.nullserver import serve_forever

                null = NullServer(serve_forever, "native null server").__enter__()
            else:
                null = NullServer().__enter__()
            p["endpoints"], server_pids = [null.endpoint], [null.pid]
        result = _loadgen.run(p, progress=ProgressBar(workload, expected), server_pids=server_pids)
    except (ValueError, _loadgen.LoadgenError) as exc:
        print(f"fastkv bench {workload}: {exc}", file=sys.stderr)
        return 2
    finally:
        if null is not None:
            null.__exit__(None, None, None)
    if null is not None:
        result["null_server"] = True
        result["null_server_kind"] = args.null_server
    result["machine"] = machine_info()
    for line in _loadgen_report.render_text(result):
        print(line)
    if args.plot:
        _loadgen_report.plot(result, args.plot)
        print(f"  plot written to {args.plot}")
    emit(result, args.json)
    return 1 if result["errors_total"] and not result["ok"] else 0
