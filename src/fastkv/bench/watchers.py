"""`fastkv bench watchers`: memory per idle connection and per watcher, and watch event fan-out,
for fastkv (native and grpcio front ends) and real etcd, each started fresh as a single member.

For each server, in this order, on one fresh process:

 1. baseline: after a few warm-up calls (puts, ranges, one watch created and cancelled, so code
    that loads on first use is not charged to watchers), wait --settle s and read VmRSS;
 2. idle connections: open --idle-connections client connections; each completes the HTTP/2
    handshake and one unary Range, then stays open and silent. RSS growth / connections;
 3. watchers on distinct keys: one more connection, one Watch stream (etcd's clientv3 puts every
    watch of a client on one stream unless contexts differ), --watchers watchers, each on its own
    key; every create must be acknowledged. RSS growth / watchers: the cost of a watcher that
    brings its own key into the server's watch index (the common case of many watches);
 4. watchers on one key: --watchers more watchers on the same stream, all on the fan-out key.
    RSS growth / watchers: a watcher that shares its key with others;
 5. fan-out: --puts puts to the fan-out key from a second connection (up to --put-inflight in
    flight at a time); every one of the step-4 watchers must receive every put's event. Events per
    second = events delivered / (last event received - first put sent). Events missing at the
    deadline are reported (and the run fails), never hidden; so are extra events, and events on
    the distinct-key watchers (there must be none).

RSS is VmRSS from /proc/<pid>/status after --settle s (background work, Go's garbage collector, has
run); growth is a difference of two readings, so small runs are dominated by page and heap-arena
granularity: read per-item figures from runs of thousands.

The client is one Python process driving plain sockets with the h2 library (fastkv.bench._h2client),
not grpcio: its CPU per received message is small, and the run reports the client's and the
server's CPU over the fan-out (in cores). A server near 1.0 core (fastkv's event loop is one
thread) or the client near 1.0 says which side bounds the events/s figure; when neither is, other
processes on the machine took the CPU, or the server paces delivery itself. The server's CPU per
event delivered is the figure that depends least on what else runs on the machine.

Both fastkv columns pass --client-frontend explicitly. The table's ratios are fastkv/etcd: below
1.0, fastkv uses less memory; above 1.0, fastkv delivers more events per second.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

from fastkv.bench._common import Progress, add_json_flag, emit, machine_info

SERVERS = ("native", "grpcio", "etcd")
LABELS = {"native": "fastkv native", "grpcio": "fastkv grpcio", "etcd": "etcd"}
FANOUT_KEY = b"fastkv-bench/watchers/fanout"
KEY_PREFIX = b"fastkv-bench/watchers/key/"
WATCH = "/etcdserverpb.Watch/Watch"
PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
# (JSON key, row label, format, compared with etcd): the table's rows, in order
FIGURES = (("bytes_per_idle_connection", "bytes per idle connection", "{:,.0f}", True),
           ("bytes_per_watcher_distinct_keys", "bytes per watcher (distinct keys)", "{:,.0f}", True),
           ("bytes_per_watcher_one_key", "bytes per watcher (one shared key)", "{:,.0f}", True),
           ("bytes_per_watcher_all", "bytes per watcher (both phases together)", "{:,.0f}", True),
           ("fanout_events_per_s", "fan-out events/s delivered", "{:,.0f}", True),
           ("fanout_server_cpu_us_per_event", "fan-out server CPU us per event", "{:.2f}", True),
           ("fanout_server_cpu_cores", "fan-out server CPU cores", "{:.2f}", False),
           ("fanout_client_cpu_cores", "fan-out client CPU cores", "{:.2f}", False),
           ("fanout_events_per_message", "fan-out events per watch message", "{:,.1f}", False))
RATIOS = [f for f in FIGURES if f[3]]


def add_parser(sub) -> None:
    from fastkv.bench._servers import ETCD_CMD, ETCD_INSTALL_HINT, FASTKV_CMD

    p = sub.add_parser("watchers", help="memory per watcher and per idle connection, and watch event fan-out, "
                                        "fastkv vs real etcd",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=f"Real etcd is needed on PATH (Debian/Ubuntu: {ETCD_INSTALL_HINT}). Example, small: "
                              "fastkv bench watchers --watchers 2000 --idle-connections 200 --puts 20")
    p.add_argument("--watchers", type=int, default=10_000,
                   help="watchers per phase on one connection, one Watch stream (default 10000)")
    p.add_argument("--idle-connections", type=int, default=1_000,
                   help="client connections that make one call and stay idle (default 1000)")
    p.add_argument("--puts", type=int, default=200, help="puts to the fan-out key (default 200)")
    p.add_argument("--put-inflight", type=int, default=0,
                   help="puts in flight at a time on the writer's connection (default 0: all at once)")
    p.add_argument("--servers", default=",".join(SERVERS),
                   help="which columns to run, comma-separated from native,grpcio,etcd (default all; the "
                        "ratios need etcd)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to wait before each RSS reading (default 2)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="deadline in seconds for each phase: creates acknowledged, events delivered (default 300)")
    p.add_argument("--etcd-cmd", default=ETCD_CMD, help="command template of the reference")
    p.add_argument("--fastkv-cmd", default=FASTKV_CMD,
                   help="command template of fastkv (--client-frontend is appended per column)")
    p.add_argument("--plot", metavar="PNG", help="also draw the fastkv/etcd ratios as a bar chart (needs matplotlib)")
    add_json_flag(p)
    p.set_defaults(func=run)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """user+system CPU of process pid (all its threads), from /proc/<pid>/stat."""
    import os

    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_fd_limit(need: int) -> dict:
    """Raise this process's soft limit on open files to the hard limit (servers started later
    inherit it); say whether `need` descriptors fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised = False
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft, raised = hard, True
    if soft != resource.RLIM_INFINITY and soft < need:
        raise SystemExit(f"fastkv bench watchers: needs about {need} open files but the limit is {soft} (hard "
                         f"{hard}); raise it (ulimit -Hn / limits.conf) or pass fewer --idle-connections")
    return {"nofile_soft": soft, "nofile_hard": hard, "raised_soft_to_hard": raised}


class _WatchStream:
    """One Watch stream: acknowledged creates (in order) and events counted per watch id."""

    def __init__(self, conn):
        from fastkv.api.etcdpb import rpc_pb2

        self._parse = rpc_pb2.WatchResponse.FromString
        self.created: list[int] = []
        self.refused: list[str] = []
        self.events: dict[int, int] = {}
        self.total_events = 0
        self.last_event_at = 0.0
        self.stream = conn.call(WATCH, self._on_message)

    def _on_message(self, raw: bytes) -> None:
        r = self._parse(raw)
        n = len(r.events)
        if n:
            self.events[r.watch_id] = self.events.get(r.watch_id, 0) + n
            self.total_events += n
            self.last_event_at = time.monotonic()
        if r.created:
            if r.canceled or r.watch_id < 0:
                self.refused.append(r.cancel_reason or f"watch_id {r.watch_id}")
            self.created.append(r.watch_id)

    def create(self, key: bytes) -> None:
        from fastkv.client import ops

        self.stream.send(ops.watch_create(key).SerializeToString())


class _Failed(Exception):
    pass


def _measure(server, args, label: str) -> dict:
    from fastkv.api.etcdpb import rpc_pb2
    from fastkv.bench._h2client import H2GrpcConnection, Pump, unary

    pid = server.pid
    pump = Pump()
    conns = []

    def connect():
        c = H2GrpcConnection(server.endpoint, timeout=args.timeout)
        pump.add(c)
        conns.append(c)
        return c

    def settled_rss() -> int:
        # keep reading the sockets while waiting: a server must not be stalled on a full window
        pump.until(lambda: False, args.settle)
        return rss_bytes(pid)

    out: dict = {}
    try:
        writer = connect()
        range_req = rpc_pb2.RangeRequest(key=b"fastkv-bench/watchers/probe").SerializeToString()
        for i in range(10):
            unary(pump, writer, PUT, rpc_pb2.PutRequest(key=b"fastkv-bench/watchers/warm%d" % i,
                                                       value=b"v").SerializeToString(), args.timeout)
            unary(pump, writer, RANGE, range_req, args.timeout)
        warm = _WatchStream(writer)
        warm.create(b"fastkv-bench/watchers/warm")
        writer.flush()
        if not pump.until(lambda: warm.created, args.timeout):
            raise _Failed("the warm-up watch was never acknowledged")
        warm.stream.send(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(
            watch_id=warm.created[0])).SerializeToString())
        writer.flush()
        out["rss_baseline"] = base = settled_rss()

        # idle connections: handshake + one unary call each, then silence
        prog = Progress(f"{label}: idle connections", args.idle_connections)
        for i in range(args.idle_connections):
            unary(pump, connect(), RANGE, range_req, args.timeout)
            prog.update(i + 1)
        prog.close()
        out["rss_idle_connections"] = rss_idle = settled_rss()
        out["bytes_per_idle_connection"] = (rss_idle - base) / max(1, args.idle_connections)
        print(f"{label}: {args.idle_connections:,} idle connections: RSS +{(rss_idle - base) / 2**20:.1f} MiB",
              flush=True)

        # watchers on distinct keys, then on the fan-out key, on one stream of one connection
        watch_conn = connect()
        ws = _WatchStream(watch_conn)
        rss_prev, t0 = rss_idle, time.monotonic()
        for phase, key_of in (("distinct_keys", lambda i: KEY_PREFIX + b"%08d" % i),
                              ("one_key", lambda i: FANOUT_KEY)):
            want = len(ws.created) + args.watchers
            prog = Progress(f"{label}: watchers ({phase.replace('_', ' ')})", args.watchers)
            for i in range(args.watchers):
                ws.create(key_of(i))
                if i % 256 == 255:  # let acknowledgements drain while creating
                    watch_conn.flush()
                    pump.once(0)
                    prog.update(len(ws.created) - want + args.watchers)
            watch_conn.flush()
            if not pump.until(lambda: len(ws.created) >= want or ws.stream.ended, args.timeout,
                              tick=lambda: prog.update(len(ws.created) - want + args.watchers)):
                raise _Failed(f"only {len(ws.created) - want + args.watchers:,} of {args.watchers:,} watch creates "
                              f"were acknowledged within {args.timeout:g} s")
            prog.close()
            if ws.stream.ended:
                raise _Failed(f"the Watch stream ended: gRPC status {ws.stream.status} {ws.stream.message}")
            if ws.refused:
                raise _Failed(f"{len(ws.refused)} watch creates were refused, e.g. {ws.refused[0]}")
            out[f"create_s_{phase}"] = time.monotonic() - t0
            out[f"rss_watchers_{phase}"] = rss = settled_rss()
            out[f"bytes_per_watcher_{phase}"] = (rss - rss_prev) / max(1, args.watchers)
            print(f"{label}: {args.watchers:,} watchers on {phase.replace('_', ' ')}: RSS "
                  f"+{(rss - rss_prev) / 2**20:.1f} MiB ({out[f'create_s_{phase}']:.1f} s to create)", flush=True)
            rss_prev, t0 = rss, time.monotonic()
        if len(set(ws.created)) != len(ws.created):
            raise _Failed("the server gave the same watch id to two watchers")
        distinct_ids, fanout_ids = ws.created[:args.watchers], ws.created[args.watchers:]
        out["bytes_per_watcher_all"] = (rss_prev - rss_idle) / (2 * args.watchers)
        messages0 = ws.stream.messages

        # fan-out: --puts puts from the writer connection, events counted on the watch connection
        put_req = rpc_pb2.PutRequest(key=FANOUT_KEY, value=b"fan-out-value-16").SerializeToString()
        expected = args.puts * args.watchers
        inflight = args.put_inflight if args.put_inflight > 0 else args.puts
        puts = []
        client_cpu0, server_cpu0 = _own_cpu(), cpu_seconds(pid)
        t_start = time.monotonic()

        def feed_puts() -> None:
            open_puts = sum(1 for s in puts if not s.ended)
            while len(puts) < args.puts and open_puts < inflight:
                puts.append(writer.call(PUT, lambda raw: None, put_req, end=True))
                open_puts += 1
            writer.flush()

        prog = Progress(f"{label}: fan-out events", expected)
        feed_puts()
        done = pump.until(lambda: ws.total_events >= expected or ws.stream.ended, args.timeout,
                          tick=lambda: (feed_puts(), prog.update(ws.total_events)))
        prog.close()
        t_end = ws.last_event_at if done and ws.total_events else time.monotonic()
        wall = max(t_end - t_start, 1e-9)
        client_cpu, server_cpu = _own_cpu() - client_cpu0, cpu_seconds(pid) - server_cpu0
        in_time = sum(ws.events.get(w, 0) for w in fanout_ids)  # the rate counts these only
        # a moment more to catch duplicates or late events beyond the expected count
        pump.until(lambda: False, min(0.5, args.settle))
        puts_ok = sum(1 for s in puts if s.ended and s.status == 0)
        per = [ws.events.get(w, 0) for w in fanout_ids]
        out.update({
            "puts_sent": len(puts), "puts_ok": puts_ok, "events_expected": expected,
            "events_delivered": sum(per), "events_missing": sum(max(0, args.puts - n) for n in per),
            "events_extra": sum(max(0, n - args.puts) for n in per),
            "events_on_distinct_key_watchers": sum(ws.events.get(w, 0) for w in distinct_ids),
            "watchers_short": sum(1 for n in per if n < args.puts),
            "fanout_messages": ws.stream.messages - messages0, "fanout_s": wall,
            "fanout_events_per_s": in_time / wall,
            "fanout_events_per_message": sum(per) / max(1, ws.stream.messages - messages0),
            "fanout_client_cpu_cores": client_cpu / wall, "fanout_server_cpu_cores": server_cpu / wall,
            "fanout_server_cpu_us_per_event": 1e6 * server_cpu / max(1, in_time),
        })
        print(f"{label}: fan-out {out['events_delivered']:,} of {expected:,} events in {wall:.2f} s = "
              f"{out['fanout_events_per_s']:,.0f} events/s ({out['fanout_messages']:,} messages; server "
              f"{out['fanout_server_cpu_cores']:.2f} cores = {out['fanout_server_cpu_us_per_event']:.2f} us CPU per "
              f"event, client {out['fanout_client_cpu_cores']:.2f} cores)",
              flush=True)
        problems = []
        if puts_ok != args.puts:
            bad = next((s for s in puts if s.status != 0), None)
            problems.append(f"{args.puts - puts_ok} puts failed" +
                            (f" (gRPC status {bad.status} {bad.message})" if bad else ""))
        if out["events_missing"]:
            problems.append(f"{out['events_missing']:,} events missing on {out['watchers_short']:,} watchers after "
                            f"{args.timeout:g} s")
        if out["events_extra"]:
            problems.append(f"{out['events_extra']:,} events delivered more than once")
        if out["events_on_distinct_key_watchers"]:
            problems.append(f"{out['events_on_distinct_key_watchers']} events reached watchers of other keys")
        out["problems"] = problems
        return out
    finally:
        for c in conns:
            c.close()
        pump.close()


def _own_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _table(out: dict, names: list[str]) -> list[list[str]]:
    has_etcd = "etcd" in names and "etcd" in out
    others = [n for n in names if n != "etcd"] if has_etcd else []
    rows = [["figure"] + [LABELS[n] for n in names] + [f"{LABELS[n]} / etcd" for n in others]]
    for key, label, spec, compared in FIGURES:
        row = [label] + [spec.format(out[n][key]) for n in names]
        for n in others:
            ratio = out.get(f"{n}_etcd_{key}_ratio")
            row.append(f"{ratio:.2f}" if ratio is not None else ("n/a" if compared else ""))
        rows.append(row)
    return rows


def _plot(path: str, out: dict, names: list[str]) -> None:
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    others = [n for n in names if n != "etcd"]
    width = 0.8 / max(1, len(others))
    for j, n in enumerate(others):
        vals = [out.get(f"{n}_etcd_{key}_ratio") or 0.0 for key, _, _, _ in RATIOS]
        ax.bar([i + j * width for i in range(len(RATIOS))], vals, width, label=LABELS[n])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks([i + width * (len(others) - 1) / 2 for i in range(len(RATIOS))])
    ax.set_xticklabels([textwrap.fill(label, 18) for _, label, _, _ in RATIOS], fontsize=7)
    ax.set_ylabel("fastkv / etcd")
    ax.set_title(f"{out['watchers']:,} watchers, {out['idle_connections']:,} idle connections, {out['puts']} puts "
                 "(memory, CPU: lower is better; events/s: higher)", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(args) -> int:
    import shutil

    from fastkv.bench._servers import ServerUnavailable, Server

    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    bad = [n for n in names if n not in SERVERS]
    if bad or not names:
        print(f"fastkv bench watchers: --servers takes names from {','.join(SERVERS)} (got {args.servers!r})",
              file=sys.stderr)
        return 2
    if min(args.watchers, args.puts) < 1 or args.idle_connections < 0:
        print("fastkv bench watchers: --watchers and --puts must be at least 1, --idle-connections at least 0",
              file=sys.stderr)
        return 2
    if "etcd" in names and shutil.which(args.etcd_cmd.split()[0]) is None:
        from fastkv.bench._servers import ETCD_INSTALL_HINT

        print(f"fastkv bench watchers: real etcd is not on PATH; install it with: {ETCD_INSTALL_HINT} "
              "(or pass --servers native,grpcio)", file=sys.stderr)
        return 2
    out: dict = {"watchers": args.watchers, "idle_connections": args.idle_connections, "puts": args.puts,
                 "put_inflight": args.put_inflight or args.puts, "servers": names, "machine": machine_info(),
                 "fd_limit": raise_fd_limit(args.idle_connections + 100)}
    if out["fd_limit"]["raised_soft_to_hard"]:
        print(f"raised this process's open-file limit to its hard limit, {out['fd_limit']['nofile_soft']} (the "
              "servers started from here inherit it)", flush=True)
    failed = False
    for name in names:
        template = args.etcd_cmd if name == "etcd" else f"{args.fastkv_cmd} --client-frontend {name}"
        try:
            with Server(name, template) as server:
                print(f"{LABELS[name]}: started ({' '.join(server.argv[-2:]) if name != 'etcd' else 'etcd'})",
                      flush=True)
                out[name] = _measure(server, args, LABELS[name])
        except ServerUnavailable as exc:
            print(f"fastkv bench watchers: {exc}", file=sys.stderr)
            return 2
        except (_Failed, RuntimeError, OSError) as exc:
            print(f"fastkv bench watchers: {LABELS[name]}: {exc}", file=sys.stderr)
            return 1
        for p in out[name]["problems"]:
            print(f"fastkv bench watchers: {LABELS[name]}: {p}", file=sys.stderr)
            failed = True
    for n in names:
        for key, _, _, compared in FIGURES:
            out[f"{n}_{key}"] = out[n][key]
            if compared and "etcd" in names and n != "etcd":
                ref = out["etcd"][key]
                out[f"{n}_etcd_{key}_ratio"] = out[n][key] / ref if ref > 0 else None
    rows = _table(out, names)
    out["table"] = rows
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for r in rows:
        print("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
    print("ratios: memory and CPU below 1.0 = fastkv uses less; events/s above 1.0 = fastkv delivers more")
    if "native" in names and "etcd" in names:
        r = out["native_etcd_bytes_per_watcher_distinct_keys_ratio"]
        out["headline_result"] = f"{out['native_bytes_per_watcher_distinct_keys']:,.0f} B/watcher, " \
                                 f"{out['native_fanout_events_per_s']:,.0f} events/s"
        out["headline_reference"] = f"etcd: {out['etcd_bytes_per_watcher_distinct_keys']:,.0f} B/watcher, " \
                                    f"{out['etcd_fanout_events_per_s']:,.0f} events/s"
        ev = out["native_etcd_fanout_events_per_s_ratio"]
        out["headline_ratio"] = (f"memory x{r:.2f}" if r is not None else "memory n/a") + f", events/s x{ev:.2f}"
    if args.plot and "etcd" in names and len(names) > 1:
        try:
            _plot(args.plot, out, names)
            print(f"chart: {args.plot}")
        except ImportError:
            print("fastkv bench watchers: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
    emit(out, args.json)
    return 1 if failed else 0
