"""`fastkv bench compare`: the same workloads against a fresh real etcd and a fresh fastkv, side by side.

Both servers start once, on loopback, with the same single-member settings and their own fresh data
dirs. Each round runs every workload against both, alternating which goes first (A B, then B A, ...):
on a shared, noisy machine this cancels slow drift and any advantage of going first. Ratios are
fastkv / etcd, taken per round (paired) and reported as the median with the min..max spread, so a
reader can tell a real difference from noise.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys

from fastkv.bench._common import add_json_flag, emit, machine_info

DEFAULT_WORKLOADS = "put,range,txn-put,lease-keepalive,watch"


def add_parser(subparsers):
    from fastkv.bench._servers import ETCD_CMD, ETCD_INSTALL_HINT, FASTKV_CMD

    p = subparsers.add_parser(
        "compare", help="run the same workloads against fresh real etcd and fresh fastkv; table + chart",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Real etcd is needed on PATH (Debian/Ubuntu: {ETCD_INSTALL_HINT}).\n"
               "Server commands are templates with {data_dir}, {client_url}, {peer_url}.\n"
               "Exit status: 0 ok, 2 when a server cannot be started (the message says why).")
    p.add_argument("--workloads", default=DEFAULT_WORKLOADS,
                   help="comma-separated subset of put,range,txn-put,lease-keepalive,watch (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of every workload on both servers (default: 3)")
    p.add_argument("--members", type=int, default=1,
                   help="cluster size: with more than 1, a local etcd cluster and a local fastkv cluster of "
                        "that many members (etcd's flags, loopback), the load sent through each leader "
                        "(default: 1; --etcd-cmd/--fastkv-cmd then do not apply)")
    p.add_argument("--fastkv-flags", default="",
                   help="with --members > 1: extra `fastkv serve` flags for every fastkv member, e.g. "
                        "'--client-frontend grpcio' (the reference front end)")
    p.add_argument("--etcd-cmd", default=ETCD_CMD, help="command template of the reference (default: %(default)s)")
    p.add_argument("--fastkv-cmd", default=FASTKV_CMD, help="command template of fastkv (default: %(default)s)")
    p.add_argument("--fastkv-name", default="fastkv", help="label of the --fastkv-cmd server in the output")
    p.add_argument("--work-dir", help="where the data dirs and server logs go (default: a temporary dir, removed)")
    p.add_argument("--tls", action="store_true",
                   help="serve clients over TLS: a throwaway CA, a server certificate and a client certificate "
                        "(CN root) are made, both servers get etcd's --cert-file/--key-file/--trusted-ca-file/"
                        "--client-cert-auth and the load generator connects with the client certificate; a "
                        "third server, fastkv in plaintext, runs the same rounds as the reference for the cost "
                        "of TLS (single member only)")
    p.add_argument("--client-frontend", choices=("grpcio", "native"),
                   help="append `--client-frontend X` to the fastkv command (default: fastkv serve's own default)")
    p.add_argument("--ready-timeout", type=float, default=30.0,
                   help="seconds a server may take to answer its first Range (default: %(default)s)")
    g = p.add_argument_group("load (same meaning as in `fastkv bench put --help`)")
    g.add_argument("--generator", choices=("python", "go"), default="python",
                   help="python = grpcio worker processes (default); go = worker processes on etcd 3.4's Go "
                        "client (clientv3), built on first use from Debian's golang-go and "
                        "golang-etcd-server-dev; runs put, range and txn-put")
    g.add_argument("--clients", type=int, default=64)
    g.add_argument("--conns", type=int, default=2)
    g.add_argument("--procs", type=int, default=0)
    g.add_argument("--total", type=int, default=10000)
    g.add_argument("--rate", type=float, default=0.0)
    g.add_argument("--key-size", type=int, default=8)
    g.add_argument("--val-size", type=int, default=256)
    g.add_argument("--key-space-size", dest="key_space", type=int, default=None,
                   help="default: 100000 (range: 1000)")
    g.add_argument("--consistency", choices=("l", "s"), default="l")
    g.add_argument("--watchers", type=int, default=100)
    g.add_argument("--puts", type=int, default=200)
    g.add_argument("--put-rate", type=float, default=100.0)
    g = p.add_argument_group("output")
    g.add_argument("--plot", metavar="FILE.png", help="bar chart of throughput and p99 latency per workload")
    add_json_flag(g)
    p.set_defaults(func=run_cli)
    return p


def _params(args, workload: str, endpoint: str) -> dict:
    from fastkv.bench._loadgen import default_params

    p = default_params(workload)
    for k in ("clients", "conns", "procs", "total", "rate", "key_size", "val_size", "consistency",
              "watchers", "puts", "put_rate", "generator"):
        p[k] = getattr(args, k)
    if args.key_space is not None:
        p["key_space"] = args.key_space
    p["endpoints"] = [endpoint]
    return p


def summarize(per_server: dict, names: tuple[str, str]) -> dict:
    """Paired per-round ratios (B / A) of rps and latency, median and spread."""
    a, b = (per_server[n] for n in names)
    out = {}
    for metric in ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_op"):
        ratios = [y / x for x, y in zip(a[metric], b[metric]) if x > 0]
        out[f"ratio_{metric}"] = statistics.median(ratios) if ratios else None
        out[f"ratio_{metric}_min"] = min(ratios) if ratios else None
        out[f"ratio_{metric}_max"] = max(ratios) if ratios else None
        for n in names:
            out.setdefault(n, {})[f"{metric}_median"] = statistics.median(per_server[n][metric])
    return out


def run_cli(args) -> int:
    from fastkv.bench import _loadgen
    from fastkv.bench._servers import ETCD_INSTALL_HINT, Server, ServerUnavailable

    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in workloads if w not in _loadgen.WORKLOADS]
    if bad or not workloads or args.rounds < 1:
        print(f"fastkv bench compare: unknown workload(s) {bad} or --rounds < 1", file=sys.stderr)
        return 2
    if args.generator == "go":
        from fastkv.bench import _goload

        unsupported = [w for w in workloads if w not in _goload.WORKLOADS]
        if unsupported:
            print(f"fastkv bench compare: --generator go runs {', '.join(_goload.WORKLOADS)}, not "
                  f"{', '.join(unsupported)}; pass --workloads (e.g. --workloads put,range,txn-put)",
                  file=sys.stderr)
            return 2
        try:
            _goload.binary()  # build (or find) the worker before any server starts
        except _goload.GoloadUnavailable as exc:
            print(f"fastkv bench compare: {exc}", file=sys.stderr)
            return 2
    etcd_prog = args.etcd_cmd.split()[0]
    if shutil.which(etcd_prog) is None:
        print(f"fastkv bench compare: real etcd ({etcd_prog}) is not on PATH; install it with: "
              f"{ETCD_INSTALL_HINT}", file=sys.stderr)
        return 2
    names = ("etcd", args.fastkv_name if args.fastkv_name != "etcd" else "etcd-b")
    servers: dict[str, Server] = {}
    if args.members < 1:
        print("fastkv bench compare: --members must be at least 1", file=sys.stderr)
        return 2
    if args.tls and args.members > 1:
        print("fastkv bench compare: --tls runs single members only (drop --members)", file=sys.stderr)
        return 2
    fastkv_cmd = args.fastkv_cmd + (f" --client-frontend {args.client_frontend}" if args.client_frontend else "")
    certs = None
    plain = names[1] + "-plain"  # with --tls: the same fastkv without TLS, the reference for TLS's cost
    all_names = names + ((plain,) if args.tls else ())
    if args.tls:
        import tempfile

        from fastkv.bench._servers import BenchCertificates

        certs = BenchCertificates(tempfile.mkdtemp(prefix="fastkv-bench-pki-", dir=args.work_dir))

    def make(name, template, kind, tls=None):
        if args.members > 1:
            from fastkv.bench._servers import ClusterServer

            import shlex

            extra = shlex.split(args.fastkv_flags) if kind == "fastkv" else []
            return ClusterServer(name, kind, args.members, args.work_dir, max(args.ready_timeout, 60.0),
                                 extra_flags=extra)
        return Server(name, template, args.work_dir, args.ready_timeout, tls=tls)

    try:
        servers[names[0]] = make(names[0], args.etcd_cmd, "etcd", certs).start()
        try:
            servers[names[1]] = make(names[1], fastkv_cmd, "fastkv", certs).start()
            if args.tls:
                servers[plain] = make(plain, fastkv_cmd, "fastkv").start()
        except ServerUnavailable as exc:
            print(f"fastkv bench compare: {names[1]} is not available, nothing to compare against.\n  {exc}\n"
                  f"  (`fastkv serve` arrives with the server; until then point --fastkv-cmd at another "
                  f"etcd-compatible server)", file=sys.stderr)
            return 2
        for name, s in servers.items():
            print(f"{name:<8} pid {s.pid} at {s.endpoint}: {' '.join(s.argv)}")
        print(f"load generator: {args.generator}")
        runs = {w: {n: {"rps": [], "p50_ms": [], "p99_ms": [], "server_cpu_us_per_op": [], "errors": 0,
                        "server_cpu_cores": [], "client_cpu_cores": []}
                    for n in all_names} for w in workloads}
        for rnd in range(args.rounds):
            order = all_names if rnd % 2 == 0 else all_names[::-1]
            for w in workloads:
                for n in order:
                    params = _params(args, w, servers[n].endpoint)
                    if n != plain and certs is not None:
                        params["tls"] = certs.client()
                    r = _loadgen.run(params,
                                     server_pids=getattr(servers[n], "pids", [servers[n].pid]))
                    slot = runs[w][n]
                    slot["rps"].append(r["rps"])
                    slot["p50_ms"].append(r["p50_ms"])
                    slot["p99_ms"].append(r["p99_ms"])
                    slot["errors"] += r["errors_total"]
                    slot["server_cpu_cores"].append(r.get("server_cpu_cores") or 0.0)
                    slot["server_cpu_us_per_op"].append(r.get("server_cpu_us_per_op") or 0.0)
                    slot["client_cpu_cores"].append(r["client_cpu_cores"])
                    unit = r.get("unit", "req")
                    print(f"  round {rnd + 1}/{args.rounds} {w:<16} {n:<8} {r['rps']:>10,.0f} {unit}/s  "
                          f"p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms  errors {r['errors_total']}  "
                          f"CPU server {r.get('server_cpu_cores') or 0:.2f} / generator {r['client_cpu_cores']:.2f} cores",
                          flush=True)
    except (ServerUnavailable, _loadgen.LoadgenError) as exc:
        print(f"fastkv bench compare: {exc}", file=sys.stderr)
        return 2
    finally:
        for s in servers.values():
            s.cleanup()
        if certs is not None and args.work_dir is None:
            import os
            import shutil as _shutil

            _shutil.rmtree(os.path.dirname(certs.ca), ignore_errors=True)

    result = {"servers": list(names), "rounds": args.rounds, "members": args.members, "workloads": {},
              "generator": args.generator,
              "machine": machine_info(),
              "params": {k: v for k, v in vars(args).items() if k != "func"}}
    result["tls"] = bool(args.tls)
    for w in workloads:
        result["workloads"][w] = {**summarize(runs[w], names), "runs": runs[w]}
        if args.tls:
            result["workloads"][w]["tls_vs_plaintext"] = summarize(runs[w], (plain, names[1]))
    for line in render_table(result):
        print(line)
    if args.tls:
        print(f"\nthe cost of TLS: {names[1]} over TLS / {plain} (the same server in plaintext), median of "
              f"paired rounds (spread)")
        for w, s in result["workloads"].items():
            t = s["tls_vs_plaintext"]
            print(f"{w:<16} rps x{t['ratio_rps']:.2f} ({t['ratio_rps_min']:.2f}..{t['ratio_rps_max']:.2f})  "
                  f"{plain} {t[plain]['rps_median']:,.0f}/s, {names[1]} {t[names[1]]['rps_median']:,.0f}/s")
    if args.plot:
        plot(result, args.plot)
        print(f"plot written to {args.plot}")
    emit(result, args.json)
    return 0


def render_table(result: dict) -> list[str]:
    a, b = result["servers"]
    head = (f"{'workload':<16} {a + ' rps':>12} {b + ' rps':>12} {'ratio':>6} {'spread':>11}  "
            f"{a + ' p99':>9} {b + ' p99':>9} {'ratio':>6} {'spread':>11}  "
            f"{a + ' us/op':>9} {b + ' us/op':>9} {'ratio':>6} {'spread':>11}")
    gen = {"go": "Go (etcd's clientv3)", "python": "Python (grpcio)"}.get(result.get("generator", "python"))
    lines = ["", f"{b} / {a}, median of {result['rounds']} paired round(s), load from the {gen} generator; "
                 f"spread = min..max of the "
                 f"per-round ratios. rps: higher is better for {b}; p99 (ms) and us/op (server CPU "
                 "microseconds per operation, the figure least disturbed by a busy machine): lower is better.",
             head, "-" * len(head)]
    for w, s in result["workloads"].items():
        def fmt(x, spec):
            return format(x, spec) if x is not None else "n/a"
        def block(metric, spec):
            return (f"{format(s[a][metric + '_median'], spec)} {format(s[b][metric + '_median'], spec)} "
                    f"{fmt(s['ratio_' + metric], '>6.2f')} "
                    f"{fmt(s['ratio_' + metric + '_min'], '.2f') + '..' + fmt(s['ratio_' + metric + '_max'], '.2f'):>11}")
        lines.append(f"{w:<16} {block('rps', '>12,.0f')}  {block('p99_ms', '>9.2f')}  "
                     f"{block('server_cpu_us_per_op', '>9.0f')}")
        errs = {n: s["runs"][n]["errors"] for n in (a, b) if s["runs"][n]["errors"]}
        if errs:
            lines.append(f"{'':<16} errors: {errs}")
    return lines


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = result["servers"]
    wls = list(result["workloads"])
    xs = range(len(wls))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, metric, label in ((axes[0], "rps", "throughput (ops/s, higher is better)"),
                              (axes[1], "p99_ms", "p99 latency (ms, lower is better)")):
        for k, (name, color) in enumerate(((a, "tab:gray"), (b, "tab:blue"))):
            vals = [result["workloads"][w]["runs"][name][metric] for w in wls]
            med = [statistics.median(v) for v in vals]
            err = [[m - min(v) for m, v in zip(med, vals)], [max(v) - m for m, v in zip(med, vals)]]
            ax.bar([x + (k - 0.5) * 0.38 for x in xs], med, width=0.38, yerr=err, capsize=3,
                   label=name, color=color)
        for x, w in zip(xs, wls):
            r = result["workloads"][w].get(f"ratio_{metric}")
            if r is not None:
                top = max(max(result["workloads"][w]["runs"][n][metric]) for n in (a, b))
                ax.annotate(f"x{r:.2f}", (x, top), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(wls, rotation=15)
        ax.set_title(label)
        ax.legend()
    fig.suptitle(f"{b} vs {a}: median of {result['rounds']} alternating rounds (bars: min..max)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
