"""`fastkv bench auth-checks`: the CPU auth adds to one Put, in process, without a server.

Times, per Put, the auth work a member does with auth on (find the token's user, encode username
and auth revision into the proposal, decode them, check write permission through a non-root
user's key-range permissions when applying) against the same path with auth off (no token in the
metadata, anonymous proposal). Process CPU time, so a busy machine disturbs it little. Set the
difference beside the server CPU per Put that `fastkv bench put` or `bench compare` report
("server us/op") to see the share of a Put that auth costs.
"""
from __future__ import annotations

import argparse
import time

from fastkv.bench._common import add_json_flag, emit, machine_info


def add_parser(subparsers):
    p = subparsers.add_parser("auth-checks", help="CPU per Put of auth's token lookup and permission check",
                              description=__doc__.split("\n\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", type=int, default=100_000, help="puts per measurement (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="alternating off/on measurements (default: %(default)s)")
    add_json_flag(p)
    p.set_defaults(func=run_cli)
    return p


def run_cli(args) -> int:
    import statistics

    from fastkv.api.etcdpb import rpc_pb2
    from fastkv.api.etcdpb.authpb import auth_pb2
    from fastkv.auth.identity import auth_info_from_request
    from fastkv.auth.store import AuthStore
    from fastkv.auth.tokens import SimpleTokens
    from fastkv.backend.memory_backend import MemoryBackend
    from fastkv.server import request as rq
    from fastkv.server.auth_checks import AuthApplier

    store = AuthStore(MemoryBackend(), SimpleTokens(), 4)
    for r in (rpc_pb2.AuthUserAddRequest(name="root", hashedPassword="x"),
              rpc_pb2.AuthUserAddRequest(name="bench", hashedPassword="x")):
        store.user_add(r)
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
    store.role_add(rpc_pb2.AuthRoleAddRequest(name="bench"))
    store.role_grant_permission(rpc_pb2.AuthRoleGrantPermissionRequest(name="bench", perm=auth_pb2.Permission(
        permType=auth_pb2.Permission.READWRITE, key=b"\x00", range_end=b"\x00")))
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="bench", role="bench"))
    store.auth_enable()
    token = store.tokens.assign("bench", store.revision, prefix="abcdefghijklmnop", index=12)
    applier = AuthApplier(store, None)
    req = rpc_pb2.PutRequest(key=b"00012345", value=b"v" * 256)
    md_off, md_on = {"user-agent": "grpc-go/1.26"}, {"user-agent": "grpc-go/1.26", "token": token}
    n = args.ops

    def dispatch(kind, msg):
        return None

    def off():
        for i in range(n):
            auth_info_from_request(store, md_off)
            data = rq.encode(i, rq.PUT, req)
            rq.decode_with_auth(data)

    def on():
        for i in range(n):
            ai = auth_info_from_request(store, md_on)
            data = rq.encode(i, rq.PUT, req, ai.username, ai.revision)
            _id, kind, msg, user, rev = rq.decode_with_auth(data)
            applier.apply(i, kind, msg, user, rev, dispatch)

    times = {"off": [], "on": []}
    for _ in range(args.rounds):
        for name, fn in (("off", off), ("on", on)):
            t = time.process_time()
            fn()
            times[name].append((time.process_time() - t) / n * 1e6)
    result = {"off_us_per_put": statistics.median(times["off"]), "on_us_per_put": statistics.median(times["on"]),
              "runs": times, "machine": machine_info()}
    result["auth_us_per_put"] = result["on_us_per_put"] - result["off_us_per_put"]
    print(f"auth off {result['off_us_per_put']:.2f} us/put, auth on {result['on_us_per_put']:.2f} us/put: "
          f"auth adds {result['auth_us_per_put']:.2f} us of CPU per put (median of {args.rounds})")
    emit(result, args.json)
    return 0
