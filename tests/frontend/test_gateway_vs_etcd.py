"""etcd's JSON gateway on the native front end's client port, compared with real etcd 3.4: the same
POSTs against fresh servers give the same HTTP status and the same JSON (member/cluster ids, raft
terms and sizes normalised); the streamed watch gives the same newline-delimited results."""
from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest


pytestmark = pytest.mark.etcd

_VARYING = {"cluster_id", "member_id", "raft_term", "leader", "dbSize", "dbSizeInUse", "raftIndex", "raftTerm",
            "raftAppliedIndex", "ID"}


def post(endpoint, path, body):
    req = urllib.request.Request(endpoint + path, data=body.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def normalise(value, varying=_VARYING):
    """`value` with the fields that differ between any two servers (ids, terms, sizes) as "X"."""
    if isinstance(value, dict):
        return {k: ("X" if k in varying else normalise(v, varying)) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v, varying) for v in value]
    return value


SEQUENCE = [
    ("/v3/kv/put", '{"key":"Zm9v","value":"YmFy"}'),
    ("/v3/kv/put", '{"key":"Zm9v","value":"YmF6","prev_kv":true}'),
    ("/v3/kv/range", '{"key":"Zm9v"}'),
    ("/v3beta/kv/range", '{"key":"Zm9v","range_end":"Zm9w","count_only":true}'),
    ("/v3/kv/range", '{"key":"Zm9v","revision":"99"}'),
    ("/v3/kv/put", '{"key":"","value":"YmFy"}'),
    ("/v3/kv/txn", '{"compare":[{"key":"Zm9v","target":"VALUE","result":"EQUAL","value":"YmF6"}],'
                   '"success":[{"request_put":{"key":"dHhu","value":"MQ=="}}]}'),
    ("/v3/kv/deleterange", '{"key":"dHhu","prev_kv":true}'),
    ("/v3/kv/compaction", '{"revision":"2"}'),
    ("/v3/kv/range", '{"key":"Zm9v","revision":"1"}'),
    ("/v3/lease/revoke", '{"ID":"12345"}'),
    ("/v3/lease/timetolive", '{"ID":"12345"}'),
    ("/v3/maintenance/alarm", '{}'),
    ("/v3/maintenance/status", '{}'),
    ("/v3/cluster/member/list", '{}'),
    ("/v3/no/such/route", '{}'),
]


def run(endpoint):
    out = []
    for path, body in SEQUENCE:
        code, raw = post(endpoint, path, body)
        try:
            parsed = normalise(json.loads(raw))
        except ValueError:
            parsed = raw
        if isinstance(parsed, dict) and "version" in parsed:
            parsed["version"] = "X"
        if isinstance(parsed, dict) and "members" in parsed:
            parsed["members"] = len(parsed["members"])
        out.append((path, code, parsed))
    return out


def test_gateway_unary_sequence_matches_etcd(native, etcd_endpoint):
    want = run(etcd_endpoint)
    got = run(native)
    diffs = [f"{w[0]}\n  etcd:   {w[1:]}\n  fastkv: {g[1:]}" for w, g in zip(want, got) if w != g]
    assert not diffs, "\n".join(diffs)


def test_gateway_unknown_field_is_invalid_argument(native, etcd_endpoint):
    for ep in (etcd_endpoint, native):
        code, raw = post(ep, "/v3/kv/range", '{"kee":"Zm9v"}')
        assert code == 400 and json.loads(raw)["code"] == 3


def watch_lines(endpoint, n, put):
    proc = subprocess.Popen(["curl", "-sN", "-m", "20", "-X", "POST", endpoint + "/v3/watch", "-d",
                             '{"create_request":{"key":"dw==","prev_kv":true}}'], stdout=subprocess.PIPE)
    lines = []
    try:
        first = proc.stdout.readline()
        lines.append(first)
        threading.Thread(target=put, daemon=True).start()
        while len(lines) < n:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
    finally:
        proc.kill()
        proc.wait()
    return [normalise(json.loads(l)) for l in lines]


def test_gateway_watch_streams_newline_delimited_results(native, etcd_endpoint):
    def putter(ep):
        def go():
            time.sleep(0.2)
            post(ep, "/v3/kv/put", '{"key":"dw==","value":"MQ=="}')
            post(ep, "/v3/kv/put", '{"key":"dw==","value":"Mg=="}')
        return go

    want = watch_lines(etcd_endpoint, 3, putter(etcd_endpoint))
    got = watch_lines(native, 3, putter(native))
    for r in want + got:  # watch ids are per stream: both start at 0
        r["result"].pop("watch_id", None)
    assert got == want and len(got) == 3
