"""--client-cert-auth with auth enabled: a request without a token is made as the user its verified
client certificate's common name names (etcd 3.4: AuthInfoFromTLS behind authInfoFromCtx), compared
step by step with real etcd given the same users, roles, flags and certificates: what the user may
do succeeds, what it may not is refused with etcd's error, no --user needed; a token still wins over
the certificate; etcd's JSON gateway never takes the certificate's CN (etcd 3.4 refuses such a
request with 400 and says the CN would be ignored).

Every step runs over the front end under test, the setup included (both serve the Auth RPCs and
tokens)."""
from __future__ import annotations

import base64
import json
import subprocess

import pytest

from tests.tls.conftest import etcdctl, need_etcd, norm

pytestmark = pytest.mark.etcd

SETUP = [
    ("user", "add", "root", "--new-user-password=rootpw"),
    ("user", "grant-role", "root", "root"),
    ("user", "add", "alice", "--new-user-password=alicepw"),
    ("role", "add", "reader"),
    ("role", "grant-permission", "reader", "read", "pub/", "--prefix"),
    ("role", "grant-permission", "reader", "readwrite", "alice/", "--prefix"),
    ("user", "grant-role", "alice", "reader"),
    ("put", "pub/a", "1"),
    ("put", "secret", "s"),
    ("auth", "enable"),
]

# (who: a certificate CN or None for no certificate, over "https" or "http", etcdctl args, needs the
# Auth service or tokens)
STEPS = [
    ("alice", "https", ("get", "pub/a"), False),
    ("alice", "https", ("put", "pub/a", "2"), False),
    ("alice", "https", ("put", "alice/x", "1"), False),
    ("alice", "https", ("get", "alice/", "--prefix"), False),
    ("alice", "https", ("get", "secret"), False),
    ("alice", "https", ("del", "alice/x"), False),
    ("alice", "https", ("txn", "--interactive=false"), False),
    ("alice", "https", ("compaction", "1"), False),
    ("alice", "https", ("member", "list"), False),
    ("alice", "https", ("user", "list"), True),
    ("alice", "https", ("--user", "root:rootpw", "put", "pub/a", "3"), True),  # the token wins
    ("alice", "https", ("--user", "alice:wrong", "get", "pub/a"), True),
    ("root", "https", ("put", "pub/b", "1"), False),
    ("root", "https", ("get", "pub/", "--prefix"), False),
    ("root", "https", ("get", "secret", "--print-value-only"), False),
    ("root", "https", ("user", "list"), True),
    (None, "http", ("get", "pub/a"), False),  # no certificate on the plaintext listener: anonymous
]


def _result(r: subprocess.CompletedProcess):
    if r.returncode == 0:
        return ("ok", norm(r.stdout.strip()))
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    return ("error", errors[-1] if errors else r.stderr.strip()[-200:])


def _run(srv, certs, frontend):
    out = []
    for who, scheme, args, _needs_auth_service in STEPS:
        ctl = certs.client(who) if who else ()
        endpoint = srv.https if scheme == "https" else srv.http
        out.append(((who, scheme) + args, _result(etcdctl(endpoint, *ctl, *args))))
    return out


def _gateway_range(srv, certs, cn):
    """curl over https to the gateway with a client certificate naming `cn` and no token."""
    cert, key = certs.clients[cn]
    body = json.dumps({"key": base64.b64encode(b"pub/a").decode()})
    p = subprocess.run(["curl", "-sS", "--cacert", certs.ca_file, "--cert", cert, "--key", key, "-X", "POST",
                        "-w", "\n%{http_code}", srv.https + "/v3/kv/range", "-d", body],
                       capture_output=True, text=True, timeout=30)
    payload, _, code = p.stdout.rpartition("\n")
    try:
        doc = json.loads(payload)
    except ValueError:
        return code, payload
    return code, {k: doc.get(k) for k in ("error", "code", "message")}


@pytest.mark.parametrize("frontend", ["grpcio", "native"])
def test_certificate_names_the_user_as_in_etcd(tmp_path, certs, servers, frontend):
    need_etcd()
    root = certs.client("root")
    results = {}
    for kind in ("etcd", "fastkv"):
        srv = servers.make("etcd" if kind == "etcd" else frontend, tmp_path, certs.server_flags())
        srv.start(root)
        for args in SETUP:
            r = etcdctl(srv.https, *root, *args)
            assert r.returncode == 0, (kind, args, r.stderr)
        steps = _run(srv, certs, frontend)
        gateway = _gateway_range(srv, certs, "root") if frontend == "native" else None
        results[kind] = (steps, gateway)
        srv.stop()
    etcd, ours = results["etcd"], results["fastkv"]
    for a, b in zip(etcd[0], ours[0]):
        assert a == b, f"etcd {a} != fastkv {b}"
    assert len(etcd[0]) == len(ours[0])
    assert etcd[1] == ours[1]
    # and the session shows what it is meant to: the CN is the user, with that user's rights
    answers = dict(etcd[0])
    assert answers[("alice", "https", "get", "pub/a")] == ("ok", "pub/a\n1")
    assert answers[("alice", "https", "put", "pub/a", "2")] == ("error", "Error: etcdserver: permission denied")
    assert answers[("alice", "https", "put", "alice/x", "1")] == ("ok", "OK")
    assert answers[("root", "https", "get", "secret", "--print-value-only")] == ("ok", "s")
    if etcd[1] is not None:  # the gateway refuses to act for a certificate's CN
        assert etcd[1] == ("400", "CommonName of client sending a request against gateway will be ignored "
                                  "and not used as expected\n")
