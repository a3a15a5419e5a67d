"""Client TLS details, each checked against real etcd 3.4 where etcd has the behaviour: invalid flag
combinations fail (etcd-style message, non-zero exit) on both; a Python grpcio client over TLS
against the native front end; curl over https to the gateway, /health and /metrics; --cipher-suites
restricting TLS 1.2 suites; client-transport-security in --config-file."""
from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys

import grpc
import pytest

from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc
from fastkv.netutil import free_port
from tests.tls.conftest import SRC, etcdctl, need_etcd

pytestmark = pytest.mark.etcd


def _run_server(kind, tmp_path, *flags, timeout=30):
    """Run etcd or `fastkv serve` with `flags`, expecting it to refuse to start; (exit code, output)."""
    peer = f"http://127.0.0.1:{free_port()}"
    common = ["--data-dir", str(tmp_path / f"{kind}-bad"), "--listen-peer-urls", peer,
              "--initial-advertise-peer-urls", peer, "--initial-cluster", f"default={peer}", *flags]
    argv = (["etcd", "--name", "default"] if kind == "etcd" else
            [sys.executable, "-m", "fastkv.cli", "serve"]) + common
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "still running"
    return p.returncode, p.stdout + p.stderr


def _bad_combinations(certs, port):
    https = ["--listen-client-urls", f"https://127.0.0.1:{port}", "--advertise-client-urls",
             f"https://127.0.0.1:{port}"]
    cert, key = certs.server
    return {
        "https without a certificate": (https, "TLS key/cert (--cert-file, --key-file) must be provided for "
                                               f"client url https://127.0.0.1:{port} with HTTPS scheme"),
        "unknown cipher suite": (https + ["--auto-tls", "--cipher-suites", "TLS_NOT_A_SUITE"],
                                 'unexpected TLS cipher suite "TLS_NOT_A_SUITE"'),
        "missing certificate file": (https + ["--cert-file", "/nonexistent/cert.pem", "--key-file", key],
                                     "open /nonexistent/cert.pem: no such file or directory"),
        "key without certificate": (https + ["--key-file", key], "--cert-file"),
        "key that is not the certificate's": (https + ["--cert-file", cert, "--key-file", certs.clients["root"][1]],
                                              "--key-file"),
    }


def test_invalid_flag_combinations_fail_like_etcd(tmp_path, certs):
    need_etcd()
    for name, (flags, message) in _bad_combinations(certs, free_port()).items():
        etcd_rc, etcd_out = _run_server("etcd", tmp_path, *flags)
        ours_rc, ours_out = _run_server("fastkv", tmp_path, *flags)
        assert etcd_rc not in (0, None), (name, etcd_rc, etcd_out[-500:])
        assert ours_rc not in (0, None), (name, ours_rc, ours_out[-500:])
        assert message in ours_out and "Traceback" not in ours_out, (name, ours_out[-800:])


@pytest.fixture
def native_tls(tmp_path, certs, servers):
    return servers.make("native", tmp_path, certs.server_flags()).start(certs.client("root"))


def _creds(certs, cn):
    def read(path):
        with open(path, "rb") as f:
            return f.read()

    if cn is None:
        return grpc.ssl_channel_credentials(read(certs.ca_file))
    cert, key = certs.clients[cn] if cn != "stranger" else certs.stranger
    return grpc.ssl_channel_credentials(read(certs.ca_file), read(key), read(cert))


def test_python_grpcio_client_over_tls_against_the_native_front_end(native_tls, certs):
    target = native_tls.https.removeprefix("https://")
    with grpc.secure_channel(target, _creds(certs, "alice")) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        put = kv.Put(rpc_pb2.PutRequest(key=b"py", value=b"tls", prev_kv=True), timeout=10)
        got = kv.Range(rpc_pb2.RangeRequest(key=b"py"), timeout=10)
        assert got.kvs[0].value == b"tls" and got.header.revision == put.header.revision
        status = rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=10)
        assert status.version == "3.4.23" and status.leader == status.header.member_id
    for who in (None, "stranger"):  # refused at the handshake: the call never reaches the server
        with grpc.secure_channel(target, _creds(certs, who)) as ch:
            with pytest.raises(grpc.RpcError) as err:
                rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"py"), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # the http:// listener beside it is plaintext gRPC
    with grpc.insecure_channel(native_tls.http.removeprefix("http://")) as ch:
        assert rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"py"), timeout=10).kvs[0].value == b"tls"


def _curl(certs, cn, url, *args):
    cert, key = certs.clients[cn]
    p = subprocess.run(["curl", "-sS", "--cacert", certs.ca_file, "--cert", cert, "--key", key,
                        "-w", "\n%{http_code} %{http_version}", *args, url],
                       capture_output=True, text=True, timeout=30)
    body, _, tail = p.stdout.rpartition("\n")
    return tail, body


def test_curl_over_https_gateway_health_metrics_match_etcd(tmp_path, certs, servers):
    """curl offers h2 and http/1.1; etcd (Go) serves either; the native listener's ALPN picks
    HTTP/1.1 for such clients, which the same answers come over."""
    need_etcd()
    answers = {}
    for kind in ("etcd", "native"):
        metrics_url = f"https://127.0.0.1:{free_port()}"  # etcd serves these with the client TLS settings
        srv = servers.make(kind, tmp_path, certs.server_flags() + ["--listen-metrics-urls", metrics_url])
        srv.start(certs.client("root"))
        put = _curl(certs, "alice", srv.https + "/v3/kv/put", "-X", "POST", "-d",
                    '{"key": "Zm9v", "value": "YmFy"}')
        rng = _curl(certs, "alice", srv.https + "/v3/kv/range", "-X", "POST", "-d", '{"key": "Zm9v"}')
        health = _curl(certs, "alice", srv.https + "/health")
        metrics = _curl(certs, "alice", srv.https + "/metrics")
        get = etcdctl(srv.https, *certs.client("root"), "get", "foo", "--print-value-only").stdout.strip()
        metrics_port = _curl(certs, "alice", metrics_url + "/health")
        plain = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                metrics_url.replace("https://", "http://") + "/health"],
                               capture_output=True, text=True, timeout=30).stdout
        srv.stop()
        put_doc, rng_doc = json.loads(put[1]), json.loads(rng[1])
        answers[kind] = {
            "put": (put[0].split()[0], sorted(put_doc), sorted(put_doc["header"])),
            "range": (rng[0].split()[0], [(kv["key"], kv["value"], kv["version"]) for kv in rng_doc["kvs"]]),
            "health": (health[0].split()[0], health[1]),
            "metrics": (metrics[0].split()[0], "etcd_server_has_leader 1" in metrics[1]),
            "etcdctl sees the gateway's write": get,
            "https metrics URL": (metrics_port[0].split()[0], metrics_port[1]),
            "plain HTTP to the https metrics URL answered": plain.strip() not in ("000", ""),
        }
    assert answers["etcd"] == answers["native"], answers
    assert answers["etcd"]["range"] == ("200", [("Zm9v", "YmFy", "1")])
    assert answers["etcd"]["health"] == answers["etcd"]["https metrics URL"] == ("200", '{"health":"true"}')


SUITE_GO, SUITE_OPENSSL = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"
OTHER_OPENSSL = "ECDHE-ECDSA-AES256-GCM-SHA384"


def _tls12_handshake(certs, url, cipher):
    """A TLS 1.2 handshake offering only `cipher`; the suite agreed, or None when refused."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(certs.ca_file)
    ctx.load_cert_chain(*certs.clients["root"])
    ctx.set_ciphers(cipher)
    try:
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                return s.cipher()[0]
    except (ssl.SSLError, ConnectionError):
        return None


@pytest.mark.parametrize("frontend", ["grpcio", "native"])
def test_cipher_suites_restrict_tls12_like_etcd(tmp_path, certs, servers, frontend):
    """grpcio takes its suites from GRPC_SSL_CIPHER_SUITES, read when it is imported: fastkv serve
    refuses --cipher-suites on grpcio unless that says the same (and then serves them)."""
    need_etcd()
    flags = certs.server_flags() + ["--cipher-suites", SUITE_GO]
    if frontend == "grpcio":
        rc, out = _run_server("fastkv", tmp_path, "--client-frontend", "grpcio", "--listen-client-urls",
                              f"https://127.0.0.1:{free_port()}", *flags)
        assert rc == 2 and f"GRPC_SSL_CIPHER_SUITES={SUITE_OPENSSL}" in out, out[-500:]
    seen = {}
    for kind in ("etcd", frontend):
        srv = servers.make(kind, tmp_path, flags)
        if kind == "grpcio":
            srv.env = {"GRPC_SSL_CIPHER_SUITES": SUITE_OPENSSL}
        srv.start(certs.client("root"))
        seen[kind] = (_tls12_handshake(certs, srv.https, SUITE_OPENSSL),
                      _tls12_handshake(certs, srv.https, OTHER_OPENSSL),
                      etcdctl(srv.https, *certs.client("root"), "put", "c", "1").stdout.strip())
        srv.stop()
    assert seen["etcd"] == seen[frontend] == (SUITE_OPENSSL, None, "OK")


def test_client_transport_security_from_config_file(tmp_path, certs, servers):
    """etcd's YAML keys (client-transport-security: cert-file, key-file, trusted-ca-file,
    client-cert-auth) give the same https:// listener as the flags."""
    cport, pport = free_port(), free_port()
    cert, key = certs.server
    cfg = tmp_path / "etcd.yaml"
    cfg.write_text(f"name: default\ndata-dir: {tmp_path / 'cfg-data'}\n"
                   f"listen-client-urls: https://127.0.0.1:{cport}\nadvertise-client-urls: https://127.0.0.1:{cport}\n"
                   f"listen-peer-urls: http://127.0.0.1:{pport}\ninitial-advertise-peer-urls: http://127.0.0.1:{pport}\n"
                   f"initial-cluster: default=http://127.0.0.1:{pport}\nclient-frontend: native\n"
                   f"cipher-suites: [{SUITE_GO}]\n"
                   "client-transport-security:\n"
                   f"  cert-file: {cert}\n  key-file: {key}\n  trusted-ca-file: {certs.ca_file}\n"
                   "  client-cert-auth: true\n")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "fastkv.cli", "serve", "--config-file", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        for line in proc.stdout:
            if line.startswith("ready to serve"):
                break
        url = f"https://127.0.0.1:{cport}"
        assert etcdctl(url, *certs.client("root"), "put", "y", "1").stdout.strip() == "OK"
        assert etcdctl(url, "--cacert", certs.ca_file, "get", "y", command_timeout="3s").returncode != 0
        assert _tls12_handshake(certs, url, OTHER_OPENSSL) is None
    finally:
        proc.terminate()
        proc.wait(15)
    bad = tmp_path / "bad.yaml"
    bad.write_text("client-transport-security:\n  cert-fiel: x\n")
    p = subprocess.run([sys.executable, "-m", "fastkv.cli", "serve", "--config-file", str(bad)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and "unknown client-transport-security key 'cert-fiel'" in p.stderr


def test_who_must_show_a_certificate_matches_etcd(tmp_path, certs, servers):
    """etcd's rules, whichever flags: --client-cert-auth without --trusted-ca-file checks client
    certificates against the system's CAs (ours is not one, so it is refused); --trusted-ca-file
    alone already requires a client certificate; --auto-tls drops --client-cert-auth."""
    need_etcd()
    cert, key = certs.server
    setups = {
        "client-cert-auth, no CA file": ["--cert-file", cert, "--key-file", key, "--client-cert-auth"],
        "CA file, no client-cert-auth": ["--cert-file", cert, "--key-file", key, "--trusted-ca-file", certs.ca_file],
        "auto-tls with client-cert-auth": ["--auto-tls", "--client-cert-auth", "--trusted-ca-file", certs.ca_file],
    }
    seen = {}
    for kind in ("etcd", "native"):
        for n, (name, flags) in enumerate(setups.items()):
            auto = name.startswith("auto")
            trust = ["--insecure-transport=false", "--insecure-skip-tls-verify"] if auto else ["--cacert", certs.ca_file]
            root = tmp_path / f"{kind}-{n}"
            root.mkdir()
            srv = servers.make(kind, root, flags, http=False).start_listening()
            cert_args = ["--cert", certs.clients["root"][0], "--key", certs.clients["root"][1]]
            with_cert = etcdctl(srv.https, *trust, *cert_args, "put", "x", "1").returncode == 0
            without = etcdctl(srv.https, *trust, "put", "x", "2", command_timeout="3s").returncode == 0
            srv.stop()
            seen[(kind, name)] = (with_cert, without)
    for name in setups:
        assert seen[("etcd", name)] == seen[("native", name)], (name, seen)
    assert seen[("etcd", "client-cert-auth, no CA file")] == (False, False)
    assert seen[("etcd", "CA file, no client-cert-auth")] == (True, False)
    assert seen[("etcd", "auto-tls with client-cert-auth")] == (True, True)
