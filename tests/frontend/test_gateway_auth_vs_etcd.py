"""etcd's auth through the JSON gateway, against real etcd 3.4 and fastkv's native front end: the
same session of POSTs to /v3/auth/* (and /v3beta/), with and without an `Authorization: <token>`
header, compared step by step (HTTP status and JSON body; tokens, ids and terms normalised).
Enable auth, authenticate (right and wrong password), put with and without a token, permission
denied, an invalid token, user/role management, disable auth again. One step goes through curl,
as users call the gateway.
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.auth.conftest import FAST_BCRYPT, fastkv, real_etcd
from tests.frontend.test_gateway_vs_etcd import normalise as normalise_fields

pytestmark = pytest.mark.etcd

_VARYING = {"cluster_id", "member_id", "raft_term", "revision", "token", "dbSize", "dbSizeInUse", "leader",
            "raftIndex", "raftTerm", "raftAppliedIndex"}


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def post(endpoint, path, body, token=None):
    headers = {"Authorization": token} if token else {}
    req = urllib.request.Request(endpoint + path, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def curl(endpoint, path, body, token):
    out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-X", "POST", "-H", f"Authorization: {token}",
                          endpoint + path, "-d", json.dumps(body)], capture_output=True, timeout=30, check=True)
    raw, _, code = out.stdout.rpartition(b"\n")
    return int(code), raw


def watch_first(endpoint, path, body, token):
    """The first result line of a streamed /v3/watch (the create's answer), as (200, line)."""
    cmd = ["curl", "-sN", "-m", "20", "-X", "POST", endpoint + path, "-d", json.dumps(body)]
    if token:
        cmd[2:2] = ["-H", f"Authorization: {token}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
    finally:
        proc.kill()
        proc.wait()
    return 200, line


def normalise(value):
    return normalise_fields(value, _VARYING)


def session(endpoint):
    """-> [(step, HTTP status, normalised JSON)]; the tokens it gets are used as the steps go."""
    out = []
    tokens = {}

    def step(name, path, body, who=None, via=post):
        token = {"root": lambda: tokens["root"], "u": lambda: tokens["u"],
                 "bogus": lambda: "not.a.token", None: lambda: None}[who]()
        code, raw = via(endpoint, path, body, token)
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
        if name.startswith("authenticate ") and code == 200:
            tokens[name.split()[1]] = parsed["token"]
        out.append((name, code, normalise(parsed)))

    step("add root", "/v3/auth/user/add", {"name": "root", "password": "rootpw"})
    step("add root again", "/v3/auth/user/add", {"name": "root", "password": "x"})
    step("add role root", "/v3/auth/role/add", {"name": "root"})
    step("grant root", "/v3/auth/user/grant", {"user": "root", "role": "root"})
    step("add role r", "/v3/auth/role/add", {"name": "r"})
    step("grant perm", "/v3/auth/role/grant",
         {"name": "r", "perm": {"permType": "READWRITE", "key": b64("k/"), "range_end": b64("k0")}})
    step("grant read x", "/v3beta/auth/role/grant", {"name": "r", "perm": {"permType": "READ", "key": b64("x")}})
    step("add u", "/v3/auth/user/add", {"name": "u", "password": "upw"})
    step("grant u", "/v3/auth/user/grant", {"user": "u", "role": "r"})
    step("grant u missing role", "/v3/auth/user/grant", {"user": "u", "role": "nope"})
    step("enable", "/v3/auth/enable", {})
    step("enable again, anonymous", "/v3/auth/enable", {})
    step("authenticate wrong", "/v3/auth/authenticate", {"name": "root", "password": "wrong"})
    step("authenticate nobody", "/v3/auth/authenticate", {"name": "nobody", "password": "x"})
    step("authenticate root", "/v3/auth/authenticate", {"name": "root", "password": "rootpw"})
    step("authenticate u", "/v3beta/auth/authenticate", {"name": "u", "password": "upw"})
    step("put anonymous", "/v3/kv/put", {"key": b64("k/1"), "value": b64("v")})
    step("put as root", "/v3/kv/put", {"key": b64("x"), "value": b64("root's")}, "root")
    step("put as u, allowed", "/v3/kv/put", {"key": b64("k/1"), "value": b64("u's")}, "u")
    step("put as u, denied", "/v3/kv/put", {"key": b64("x"), "value": b64("no")}, "u")
    step("get as u, curl", "/v3/kv/range", {"key": b64("x")}, "u", via=curl)
    step("get as u, denied", "/v3/kv/range", {"key": b64("a")}, "u")
    step("txn as u, denied", "/v3/kv/txn",
         {"success": [{"request_put": {"key": b64("k/2"), "value": b64("v")}},
                      {"request_delete_range": {"key": b64("x")}}]}, "u")
    step("put, invalid token", "/v3/kv/put", {"key": b64("k/1"), "value": b64("v")}, "bogus")
    step("range, invalid token", "/v3/kv/range", {"key": b64("k/1")}, "bogus")
    step("watch as u, allowed", "/v3/watch", {"create_request": {"key": b64("k/1")}}, "u", via=watch_first)
    step("watch as u, denied", "/v3/watch", {"create_request": {"key": b64("a")}}, "u", via=watch_first)
    step("watch, invalid token", "/v3/watch", {"create_request": {"key": b64("k/1")}}, "bogus", via=watch_first)
    step("watch anonymous", "/v3/watch", {"create_request": {"key": b64("k/1")}}, None, via=watch_first)
    step("status ignores the token", "/v3/maintenance/status", {}, "bogus")
    step("alarm, invalid token", "/v3/maintenance/alarm", {}, "bogus")
    step("defragment as u", "/v3/maintenance/defragment", {}, "u")
    step("user list anonymous", "/v3/auth/user/list", {})
    step("user list as u", "/v3/auth/user/list", {}, "u")
    step("user list as root", "/v3/auth/user/list", {}, "root")
    step("role list", "/v3/auth/role/list", {}, "root")
    step("user get u", "/v3/auth/user/get", {"name": "u"}, "root")
    step("role get r", "/v3/auth/role/get", {"role": "r"}, "root")
    step("role get missing", "/v3/auth/role/get", {"role": "nope"}, "root")
    step("revoke perm x", "/v3/auth/role/revoke", {"role": "r", "key": b64("x")}, "root")
    step("revoke perm again", "/v3/auth/role/revoke", {"role": "r", "key": b64("x")}, "root")
    step("get x as u after revoke", "/v3/kv/range", {"key": b64("x")}, "u")
    step("changepw u", "/v3/auth/user/changepw", {"name": "u", "password": "new"}, "root")
    step("authenticate u old password", "/v3/auth/authenticate", {"name": "u", "password": "upw"})
    step("revoke role", "/v3/auth/user/revoke", {"name": "u", "role": "r"}, "root")
    step("delete role", "/v3/auth/role/delete", {"role": "r"}, "root")
    step("delete user", "/v3/auth/user/delete", {"name": "u"}, "root")
    step("delete user again", "/v3/auth/user/delete", {"name": "u"}, "root")
    step("disable as nobody", "/v3/auth/disable", {})
    step("disable, invalid token", "/v3/auth/disable", {}, "bogus")
    step("disable as root", "/v3/auth/disable", {}, "root")
    step("get after disable", "/v3/kv/range", {"key": b64("x")})
    step("no AuthStatus route in 3.4", "/v3/auth/status", {})
    return out


def test_gateway_auth_session_matches_etcd(tmp_path):
    if shutil.which("curl") is None:
        pytest.fail("curl is needed: apt-get install -y curl")
    with real_etcd(tmp_path / "etcd", *FAST_BCRYPT) as e:
        want = session(e)
    with fastkv(tmp_path / "fkv", *FAST_BCRYPT, "--client-frontend", "native") as f:
        got = session(f)
    diffs = [f"step {w[0]!r}\n  etcd:   {w[1:]}\n  fastkv: {g[1:]}" for w, g in zip(want, got) if w != g]
    assert not diffs, "\n".join(diffs)
    assert len(got) == len(want)
    # the session saw each kind of answer (a script that only ever failed would compare equal too)
    codes = {c for _n, c, _b in want}
    assert {200, 400, 401, 403, 404}.issubset(codes) or {200, 401, 403}.issubset(codes), codes
