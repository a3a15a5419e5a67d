"""`fastkv bench auth-put`: what turning auth on costs Put throughput, on fastkv and on real etcd.

Both servers start fresh (single member, loopback) with a root user. Each round measures Put on
each server twice, with auth off (anonymous requests) and with auth on (requests carry root's
simple token; every write is permission-checked when applied), alternating which server and which
state goes first. Reported per server: auth-on / auth-off throughput (and server CPU per op),
median of the paired rounds with the min..max spread. etcd's own ratio, measured in the same run,
is the reference.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys

from fastkv.bench._common import add_json_flag, emit, machine_info

ROOT_PASSWORD = "bench-root"


def add_parser(subparsers):
    from fastkv.bench._servers import ETCD_CMD, ETCD_INSTALL_HINT, FASTKV_CMD

    p = subparsers.add_parser(
        "auth-put", help="Put throughput with auth on vs off, fastkv and real etcd side by side",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Real etcd is needed on PATH (Debian/Ubuntu: {ETCD_INSTALL_HINT}).\n"
               "Exit status: 0 ok, 2 when a server cannot be started (the message says why).")
    p.add_argument("--rounds", type=int, default=3, help="paired off/on rounds per server (default: 3)")
    p.add_argument("--etcd-cmd", default=ETCD_CMD, help="command template of the reference (default: %(default)s)")
    p.add_argument("--fastkv-cmd", default=FASTKV_CMD, help="command template of fastkv (default: %(default)s)")
    g = p.add_argument_group("load (same meaning as in `fastkv bench put --help`)")
    g.add_argument("--clients", type=int, default=64)
    g.add_argument("--conns", type=int, default=2)
    g.add_argument("--procs", type=int, default=0)
    g.add_argument("--total", type=int, default=10000)
    g.add_argument("--val-size", type=int, default=256)
    add_json_flag(p.add_argument_group("output"))
    p.set_defaults(func=run_cli)
    return p


def _root_setup(endpoint: str) -> None:
    import grpc

    from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc
    from fastkv.api.etcdpb.authpb import auth_pb2

    with grpc.insecure_channel(endpoint.replace("http://", "")) as ch:
        a = rpc_pb2_grpc.AuthStub(ch)
        a.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password=ROOT_PASSWORD), timeout=30)
        a.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="root"), timeout=30)
        a.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=30)
        # the benchmark's user is not root: root skips the key-range check, which is what is priced
        a.UserAdd(rpc_pb2.AuthUserAddRequest(name="bench", password=ROOT_PASSWORD), timeout=30)
        a.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="bench"), timeout=30)
        a.RoleGrantPermission(rpc_pb2.AuthRoleGrantPermissionRequest(name="bench", perm=auth_pb2.Permission(
            permType=auth_pb2.Permission.READWRITE, key=b"\x00", range_end=b"\x00")), timeout=30)
        a.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="bench", role="bench"), timeout=30)


def _set_auth(endpoint: str, on: bool) -> None:
    import grpc

    from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc

    with grpc.insecure_channel(endpoint.replace("http://", "")) as ch:
        a = rpc_pb2_grpc.AuthStub(ch)
        if on:
            a.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=30)
        else:
            try:
                token = a.Authenticate(rpc_pb2.AuthenticateRequest(name="root", password=ROOT_PASSWORD),
                                       timeout=30).token
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:  # auth is off already
                    return
                raise
            a.AuthDisable(rpc_pb2.AuthDisableRequest(), timeout=30, metadata=(("token", token),))


def _params(args, endpoint: str, on: bool) -> dict:
    from fastkv.bench._loadgen import default_params

    p = default_params("put")
    for k in ("clients", "conns", "procs", "total", "val_size"):
        p[k] = getattr(args, k)
    p["endpoints"] = [endpoint]
    p["user"] = f"bench:{ROOT_PASSWORD}" if on else ""
    return p


def _spread(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)} if xs else None


def run_cli(args) -> int:
    from fastkv.bench import _loadgen
    from fastkv.bench._servers import ETCD_INSTALL_HINT, Server, ServerUnavailable

    if args.rounds < 1:
        print("fastkv bench auth-put: --rounds must be >= 1", file=sys.stderr)
        return 2
    if shutil.which(args.etcd_cmd.split()[0]) is None:
        print(f"fastkv bench auth-put: real etcd is not on PATH; install it with: {ETCD_INSTALL_HINT}",
              file=sys.stderr)
        return 2
    names = ("etcd", "fastkv")
    servers: dict = {}
    runs = {n: {"off_rps": [], "on_rps": [], "off_us_per_op": [], "on_us_per_op": [], "errors": 0} for n in names}
    try:
        for n, cmd in zip(names, (args.etcd_cmd, args.fastkv_cmd)):
            servers[n] = Server(n, cmd, None, 30.0).start()
            _root_setup(servers[n].endpoint)
        for rnd in range(args.rounds):
            for n in (names if rnd % 2 == 0 else names[::-1]):
                states = (False, True) if rnd % 2 == 0 else (True, False)
                for on in states:
                    _set_auth(servers[n].endpoint, on)
                    r = _loadgen.run(_params(args, servers[n].endpoint, on), server_pids=[servers[n].pid])
                    tag = "on" if on else "off"
                    runs[n][f"{tag}_rps"].append(r["rps"])
                    runs[n][f"{tag}_us_per_op"].append(r.get("server_cpu_us_per_op") or 0.0)
                    runs[n]["errors"] += r["errors_total"]
                    print(f"  round {rnd + 1}/{args.rounds} {n:<7} auth {tag:<3} {r['rps']:>9,.0f} puts/s  "
                          f"p99 {r['p99_ms']:7.2f} ms  server {r.get('server_cpu_us_per_op') or 0:5.0f} us/op  "
                          f"errors {r['errors_total']}", flush=True)
                _set_auth(servers[n].endpoint, False)
    except (ServerUnavailable, _loadgen.LoadgenError) as exc:
        print(f"fastkv bench auth-put: {exc}", file=sys.stderr)
        return 2
    finally:
        for s in servers.values():
            s.cleanup()
    result = {"rounds": args.rounds, "machine": machine_info(), "servers": {},
              "params": {k: v for k, v in vars(args).items() if k != "func"}}
    for n in names:
        r = runs[n]
        result["servers"][n] = {
            "runs": r,
            "on_off_rps": _spread([on / off for on, off in zip(r["on_rps"], r["off_rps"]) if off]),
            "on_off_us_per_op": _spread([on / off for on, off in zip(r["on_us_per_op"], r["off_us_per_op"]) if off]),
        }
    for n in names:  # flat keys, for bench/results.py's tables
        s = result["servers"][n]
        for metric in ("on_off_rps", "on_off_us_per_op"):
            for stat in ("median", "min", "max"):
                result[f"{n}_{metric}" + ("" if stat == "median" else f"_{stat}")] = s[metric][stat]
        result[f"{n}_off_rps"] = statistics.median(runs[n]["off_rps"])
        result[f"{n}_on_rps"] = statistics.median(runs[n]["on_rps"])
    print()
    print(f"auth on / auth off, median of {args.rounds} paired round(s) (min..max):")
    for n in names:
        s = result["servers"][n]
        print(f"  {n:<7} puts/s {s['on_off_rps']['median']:.2f} ({s['on_off_rps']['min']:.2f}.."
              f"{s['on_off_rps']['max']:.2f})   server us/op {s['on_off_us_per_op']['median']:.2f} "
              f"({s['on_off_us_per_op']['min']:.2f}..{s['on_off_us_per_op']['max']:.2f})   errors {runs[n]['errors']}")
    emit(result, args.json)
    return 0
