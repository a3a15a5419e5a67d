"""etcdctl over client TLS against fastkv (both client front ends) and against real etcd 3.4 started
with the same flags and certificates, compared: the same session gives the same answers over
https://, the plain http:// listener beside it keeps working, and the same clients are refused
(no client certificate, a certificate from another CA, a server checked against the wrong CA)."""
from __future__ import annotations

import subprocess
import time

import pytest

from tests.tls.conftest import ETCDCTL, _env, etcdctl, need_etcd
from tests.tls.conftest import norm as _norm

pytestmark = pytest.mark.etcd

FRONTENDS = ["grpcio", "native"]


def _watch_replay(endpoint: str, ctl_args, key: str, want_lines: int) -> list:
    """`etcdctl watch --rev 1 KEY` until it has printed `want_lines` lines (or 20 s)."""
    proc = subprocess.Popen([ETCDCTL, "--endpoints", endpoint, *ctl_args, "watch", "--rev", "1", key],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env())
    buf = b""
    deadline = time.monotonic() + 20
    try:
        import os
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        while buf.count(b"\n") < want_lines and time.monotonic() < deadline:
            if sel.select(timeout=0.5):
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
    finally:
        proc.kill()
        proc.wait()
    lines = buf.decode().splitlines()
    return lines


def _session(srv, certs) -> list:
    """What etcdctl says over https:// (root's certificate) and http://, step by step."""
    tls = certs.client("root")
    out = []

    def step(endpoint, *args, ctl=tls):
        r = etcdctl(endpoint, *ctl, *args)
        out.append((args, r.returncode == 0, _norm(r.stdout.strip()) if r.returncode == 0 else ""))

    s = srv.https
    step(s, "put", "k1", "v1")
    step(s, "put", "k2", "v2")
    step(s, "get", "k", "--prefix")
    step(s, "txn", "--interactive=false", ctl=tls)  # empty txn from no stdin: success with no ops
    step(s, "del", "k2")
    step(s, "get", "k", "--prefix", "--keys-only")
    step(srv.http, "get", "k1", ctl=())  # the plaintext listener beside the TLS one
    step(srv.http, "put", "plain", "p", ctl=())
    step(s, "get", "plain")
    r = etcdctl(s, *tls, "member", "list")
    members = [line.split(", ") for line in r.stdout.strip().splitlines()]
    # id, started, name, peer URLs, client URLs, learner: the advertised client URLs keep their schemes
    out.append(("member list", r.returncode == 0, [(m[1], m[2], _norm(m[4]), m[5]) for m in members]))
    r = etcdctl(s, *tls, "endpoint", "status")
    st = r.stdout.strip().split(", ")
    out.append(("endpoint status", r.returncode == 0, (_norm(st[0]), st[2], st[4], st[5])))
    out.append(("watch", _watch_replay(s, tls, "k1", 3)))
    return out


def _txn(endpoint, ctl_args) -> tuple:
    p = subprocess.run([ETCDCTL, "--endpoints", endpoint, *ctl_args, "txn"], text=True, capture_output=True,
                       env=_env(), timeout=30,
                       input='value("k1") = "v1"\n\nput k3 from-txn\n\nput k3 other\n\n')
    return p.returncode, p.stdout.strip()


def _refusals(srv, certs) -> dict:
    """Who is refused over https://: each entry is True when etcdctl failed."""
    s = srv.https
    cert, key = certs.clients["alice"]
    s_cert, s_key = certs.stranger
    return {
        "no client certificate": etcdctl(s, "--cacert", certs.ca_file, "get", "k1",
                                         command_timeout="3s").returncode != 0,
        "certificate from another CA": etcdctl(s, "--cacert", certs.ca_file, "--cert", s_cert, "--key", s_key,
                                               "get", "k1", command_timeout="3s").returncode != 0,
        "server checked against the wrong CA": etcdctl(s, "--cacert", certs.other_ca_file, "--cert", cert,
                                                       "--key", key, "get", "k1",
                                                       command_timeout="3s").returncode != 0,
        "plaintext gRPC to the TLS port": etcdctl(s.replace("https://", "http://"), "get", "k1",
                                                  command_timeout="3s").returncode != 0,
        "a good certificate": etcdctl(s, *certs.client("alice"), "get", "k1").returncode != 0,
    }


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_etcdctl_over_tls_matches_etcd(tmp_path, certs, servers, frontend):
    need_etcd()
    results = {}
    for kind in ("etcd", frontend):
        srv = servers.make(kind, tmp_path, certs.server_flags()).start(certs.client("root"))
        session = _session(srv, certs)
        txn = _txn(srv.https, certs.client("root"))
        after_txn = etcdctl(srv.https, *certs.client("root"), "get", "k3").stdout
        refused = _refusals(srv, certs)
        results[kind] = (session, txn, after_txn, refused)
        srv.stop()
    etcd, ours = results["etcd"], results[frontend]
    for a, b in zip(etcd[0], ours[0]):
        assert a == b, (a, b)
    assert len(etcd[0]) == len(ours[0])
    assert etcd[1:] == ours[1:]
    # the session did what it says (not only the same on both)
    assert etcd[0][2][2] == "k1\nv1\nk2\nv2" and etcd[0][-1] == ("watch", ["PUT", "k1", "v1"])
    assert etcd[1] == (0, "SUCCESS\n\nOK") and etcd[2].split() == ["k3", "from-txn"]
    assert etcd[3] == {"no client certificate": True, "certificate from another CA": True,
                       "server checked against the wrong CA": True, "plaintext gRPC to the TLS port": True,
                       "a good certificate": False}


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_auto_tls_matches_etcd(tmp_path, servers, frontend):
    """--auto-tls: a self-signed certificate kept in <data-dir>/fixtures/client (reused on restart);
    clients reach it with --insecure-skip-tls-verify and cannot verify it otherwise."""
    need_etcd()
    results = {}
    for kind in ("etcd", frontend):
        srv = servers.make(kind, tmp_path, ["--auto-tls"], http=False)
        # etcdctl 3.4 speaks TLS without certificate flags only with --insecure-transport=false
        skip = ["--insecure-transport=false", "--insecure-skip-tls-verify"]
        srv.start(skip)
        put = etcdctl(srv.https, *skip, "put", "a", "1")
        get = etcdctl(srv.https, *skip, "get", "a")
        verified = etcdctl(srv.https, "--insecure-transport=false", "get", "a",
                           command_timeout="3s")  # checked against the system's CAs
        cert = f"{srv.data_dir}/fixtures/client/cert.pem"
        with open(cert, "rb") as f:
            first = f.read()
        srv.stop()
        srv.start(skip)
        with open(cert, "rb") as f:
            reused = f.read() == first
        again = etcdctl(srv.https, *skip, "get", "a", "--print-value-only").stdout.strip()
        srv.stop()
        results[kind] = (put.stdout, get.stdout, verified.returncode != 0, reused, again)
    assert results["etcd"] == results[frontend] == ("OK\n", "a\n1\n", True, True, "1")
