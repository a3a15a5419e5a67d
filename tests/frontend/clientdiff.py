"""Shared by the tests that run a foreign etcd client program against fastkv and real etcd.

Each program (tests/frontend/nodeclient/sequence.js on grpc-js, tests/frontend/goclient/main.go on
etcd's clientv3 and grpc-go) makes one fixed sequence of calls and prints `[[step, result], ...]`
as JSON, with revisions relative to the first write and ids normalised. The tests run it against
a fresh fastkv (native front end) and a fresh real etcd and compare step by step. The programs'
toolchains and packages are cached under ~/.cache (XDG_CACHE_HOME), outside the repository.
"""
from __future__ import annotations

import json
import subprocess

# What a correct program run must show, checked on real etcd's output before the comparison, so
# a program that silently stopped exercising something cannot make the comparison pass: the
# watch saw its three events, and each error step carries etcd's gRPC code.
EXPECTED_ERROR_CODES = {
    "revoke unknown lease": 5,  # NOT_FOUND
    "get compacted revision": 11,  # OUT_OF_RANGE
    "get future revision": 11,
    "put empty key": 3,  # INVALID_ARGUMENT
    "txn duplicate key": 3,
}

def run_sequence(cmd: list[str], endpoint: str, env: dict | None = None, timeout: float = 120) -> list:
    proc = subprocess.run([*cmd, endpoint], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, (f"{cmd[0]} against {endpoint} exited with {proc.returncode}\n"
                                  f"stderr:\n{proc.stderr[-4000:]}\nstdout:\n{proc.stdout[-2000:]}")
    try:
        return json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(f"{cmd[0]} printed no JSON ({exc}):\n{proc.stdout[-2000:]}") from exc


def check_reference_run(steps: list) -> None:
    """Sanity checks on real etcd's output: the sequence really ran what it claims."""
    by_name = dict(steps)
    assert len(by_name) == len(steps), "step names must be unique"
    for name, code in EXPECTED_ERROR_CODES.items():
        assert by_name[name].get("error", {}).get("code") == code, (name, by_name[name])
    events = by_name["watch"]["events"]
    assert [e["kv"]["value"] for e in events] == ["one", "two", ""], events
    assert by_name["get leased key"]["kvs"][0]["lease"] == "lease1", by_name["get leased key"]
    assert by_name["get leased key after revoke"]["kvs"] == []


def assert_same_steps(etcd: list, fastkv: list) -> None:
    want, got = dict(etcd), dict(fastkv)
    assert list(want) == list(got), f"steps differ:\n  etcd:   {list(want)}\n  fastkv: {list(got)}"
    diffs = [f"{name}\n  etcd:   {json.dumps(want[name], sort_keys=True)}\n  fastkv: {json.dumps(got[name], sort_keys=True)}"
             for name in want if want[name] != got[name]]
    assert not diffs, f"{len(diffs)} of {len(want)} steps differ:\n" + "\n".join(diffs)
