"""Auth state survives: a restart of fastkv (users, roles, permissions and the enabled flag come
back from the backend), and `etcdctl snapshot save` from fastkv -> `etcdctl snapshot restore` ->
real etcd, which then enforces the same users, roles and permissions. The auth buckets of the
snapshot are compared with real etcd's after the same session (roles and auth byte for byte; users
except the bcrypt hash, which is salted).
"""
from __future__ import annotations

import os
import subprocess

import pytest

from fastkv.api.etcdpb.authpb import auth_pb2
from fastkv.backend.bbolt import read_bbolt
from tests.auth.conftest import FAST_BCRYPT, both, fastkv
from tests.compat.test_snapshot_restore_vs_etcd import _start_restored_etcd
from tests.conftest import stop_process

pytestmark = [pytest.mark.etcd, pytest.mark.usefixtures("client_frontend")]
ROOT = ("--user", "root:rootpw")
U1 = ("--user", "u1:p1")


def ctl(endpoint, *args, stdin=None):
    p = subprocess.run(["etcdctl", "--endpoints", endpoint.replace("http://", ""), *args], input=stdin,
                       capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=30)
    err = "\n".join(line for line in p.stderr.splitlines() if not line.startswith('{"level"'))
    return p.returncode, p.stdout, err


def ok(endpoint, *args):
    rc, out, err = ctl(endpoint, *args)
    assert rc == 0, (args, out, err)
    return out


def session(ep):
    ok(ep, "user", "add", "root:rootpw")
    ok(ep, "auth", "enable")
    for args in (("role", "add", "r1"), ("role", "grant-permission", "r1", "readwrite", "app/", "--prefix"),
                 ("role", "grant-permission", "r1", "read", "cfg"), ("role", "add", "r2"),
                 ("user", "add", "u1:p1"), ("user", "grant-role", "u1", "r1"), ("user", "grant-role", "u1", "r2"),
                 ("user", "add", "u2", "--no-password"), ("put", "app/x", "1"), ("put", "cfg", "c"),
                 ("put", "secret", "s")):
        ok(ep, *ROOT, *args)


def enforced(ep) -> list:
    """What a restarted or restored server must still answer, as (rc, stdout, stderr) triples."""
    return [ctl(ep, *U1, "get", "app/", "--prefix"), ctl(ep, *U1, "get", "cfg"), ctl(ep, *U1, "get", "secret"),
            ctl(ep, *U1, "put", "cfg", "no"), ctl(ep, "get", "app/x"), ctl(ep, *ROOT, "user", "list"),
            ctl(ep, *ROOT, "role", "get", "r1"), ctl(ep, *ROOT, "user", "get", "u1"),
            ctl(ep, *ROOT, "user", "get", "u2")]


def test_auth_survives_restart(tmp_path):
    data = tmp_path / "fkv"
    with fastkv(data, *FAST_BCRYPT) as ep:
        session(ep)
        before = enforced(ep)
    assert before[0][0] == 0 and before[2][0] == 1 and "permission denied" in before[2][2]
    with fastkv(data, *FAST_BCRYPT) as ep:
        assert enforced(ep) == before


def _users(rows):
    out = []
    for k, v in rows:
        u = auth_pb2.User()
        u.ParseFromString(v)
        assert bool(u.password) == (not u.options.no_password)
        u.password = b""
        out.append((k, u.SerializeToString()))
    return out


def test_snapshot_restore_into_real_etcd_keeps_auth(tmp_path):
    with both(tmp_path) as (etcd_ep, fkv_ep):
        files = {}
        for name, ep in (("etcd", etcd_ep), ("fastkv", fkv_ep)):
            session(ep)
            path = tmp_path / f"{name}.db"
            rc, out, err = ctl(ep, *U1, "snapshot", "save", str(path))
            assert rc != 0  # root only
            ok(ep, *ROOT, "snapshot", "save", str(path))
            files[name] = read_bbolt(path.read_bytes())
        expected = enforced(etcd_ep)
    ours, theirs = files["fastkv"], files["etcd"]
    assert ours[b"authRoles"] == theirs[b"authRoles"]
    assert ours[b"auth"] == theirs[b"auth"]
    assert _users(ours[b"authUsers"]) == _users(theirs[b"authUsers"])

    proc, ep = _start_restored_etcd(tmp_path / "fastkv.db", tmp_path / "restored")
    try:
        got = enforced(ep)
    finally:
        stop_process(proc)
    assert got == expected
