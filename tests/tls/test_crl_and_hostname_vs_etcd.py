"""etcd's --client-crl-file and --client-cert-allowed-hostname against fastkv (native front end)
and real etcd 3.4 with the same flags and certificates: the same etcdctl clients are let in and
refused, a revocation list written while the server runs applies to the next connection, and the
peer-side flags' rules are the same code (TLSInfo.check_peer, unit-tested here)."""
from __future__ import annotations

import ssl
import subprocess

import pytest

from fastkv.netutil import free_port
from fastkv.transport.certs import CertificateAuthority
from fastkv.transport.tls import TLSConfigError, TLSInfo, tls_from_flags, valid_for_host
from tests.tls.conftest import etcdctl, need_etcd

pytestmark = pytest.mark.etcd


def _outcomes(srv, certs, names) -> dict:
    """name -> did `etcdctl put` over https:// with that client certificate work."""
    out = {}
    for name in names:
        cert, key = certs[name]
        r = etcdctl(srv.https, "--cacert", certs["ca"], "--cert", cert, "--key", key, "put", f"k-{name}", "v",
                    command_timeout="3s")
        out[name] = r.returncode == 0
    return out


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki-crl")
    ca = CertificateAuthority(root / "ca", "crl-test-ca")
    certs = {"ca": ca.ca_file, "server": ca.issue("server", ["127.0.0.1", "localhost"])}
    certs["good"] = ca.issue("good", ["client.example"])
    certs["revoked"] = ca.issue("revoked", ["client.example"])
    certs["elsewhere"] = ca.issue("elsewhere", ["other.example", "127.0.0.9"])
    certs["nosan"] = ca.issue("client.example", ())  # the name only as its CN: Go's check ignores CNs
    # for the metrics port, where etcd also matches a client certificate's SANs to its address
    certs["good-ip"] = ca.issue("good-ip", ["127.0.0.1"])
    certs["revoked-ip"] = ca.issue("revoked-ip", ["127.0.0.1"])
    certs["localhost"] = ca.issue("localhost-dns", ["localhost"])  # 127.0.0.1's reverse lookup names it
    # issued by intermediates: the client sends leaf + intermediate; the revocation list names "inter"
    revoked_inter, inter = ca.intermediate("revoked-inter"), ca.intermediate("inter")
    certs["revoked-inter"] = revoked_inter.ca_file
    certs["chained"] = inter.issue("chained", ["127.0.0.1"])
    certs["chained-revoked-inter"] = revoked_inter.issue("chained-revoked-inter", ["127.0.0.1"])
    return ca, certs, root


def _server_flags(certs, *extra) -> list:
    return ["--cert-file", certs["server"][0], "--key-file", certs["server"][1], "--trusted-ca-file", certs["ca"],
            "--client-cert-auth", *extra]


def _metrics_health(url, certs, name) -> str:
    """The HTTP status curl gets for /health on an https metrics URL with that client certificate
    ("000": the TLS connection was refused)."""
    cert, key = certs[name]
    return subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", certs["ca"],
                           "--cert", cert, "--key", key, url + "/health"],
                          capture_output=True, text=True, timeout=30).stdout.strip()


def test_revocation_list_refuses_the_same_clients_as_etcd_and_is_read_again(pki, servers, tmp_path):
    need_etcd()
    ca, certs, _root = pki
    listed = [certs["revoked"][0], certs["revoked-ip"][0], certs["revoked-inter"]]
    crl = ca.revocation_list(listed, str(tmp_path / "crl.pem"))
    results = {}
    for kind in ("etcd", "native"):
        metrics_url = f"https://127.0.0.1:{free_port()}"  # served with the client TLS settings, CRL too
        srv = servers.make(kind, tmp_path, _server_flags(certs, "--client-crl-file", crl,
                                                         "--listen-metrics-urls", metrics_url), http=True)
        good = ["--cacert", certs["ca"], "--cert", certs["good"][0], "--key", certs["good"][1]]
        srv.start(good)
        first = _outcomes(srv, certs, ["good", "revoked", "chained", "chained-revoked-inter"])
        first.update({f"metrics {n}": _metrics_health(metrics_url, certs, n)
                      for n in ("good-ip", "revoked-ip", "localhost", "good", "elsewhere")})
        ca.revocation_list([*listed, certs["good"][0]], crl, der=True)  # now good too, as DER
        second = _outcomes(srv, certs, ["good", "revoked"])
        ca.revocation_list(listed, crl)  # back, for the next server
        srv.stop()
        results[kind] = (first, second)
    assert results["native"] == results["etcd"]
    # "000": refused at the TLS layer. On the metrics port `good` and `elsewhere` name hosts in their
    # SANs that the client's address 127.0.0.1 is not
    assert results["etcd"] == ({"good": True, "revoked": False, "chained": True, "chained-revoked-inter": False,
                                "metrics good-ip": "200", "metrics revoked-ip": "000",
                                "metrics localhost": "200", "metrics good": "000", "metrics elsewhere": "000"},
                               {"good": False, "revoked": False})


def test_allowed_hostname_lets_in_the_same_clients_as_etcd(pki, servers, tmp_path):
    need_etcd()
    _ca, certs, _root = pki
    results = {}
    for kind in ("etcd", "native"):
        srv = servers.make(kind, tmp_path,
                           _server_flags(certs, "--client-cert-allowed-hostname", "client.example"), http=True)
        srv.start(["--cacert", certs["ca"], "--cert", certs["good"][0], "--key", certs["good"][1]])
        results[kind] = _outcomes(srv, certs, ["good", "elsewhere", "nosan"])
        srv.stop()
    assert results["native"] == results["etcd"]
    assert results["etcd"] == {"good": True, "elsewhere": False, "nosan": False}


def test_grpcio_front_end_refuses_the_flags_it_cannot_apply(pki, tmp_path):
    import sys

    from tests.tls.conftest import _env

    _ca, certs, _root = pki
    r = subprocess.run([sys.executable, "-m", "fastkv.cli", "serve", "--client-frontend", "grpcio",
                        "--data-dir", str(tmp_path / "d"), "--listen-client-urls", "https://127.0.0.1:0",
                        "--advertise-client-urls", "https://127.0.0.1:2379",
                        *_server_flags(certs, "--client-cert-allowed-hostname", "client.example")],
                       capture_output=True, text=True, env=_env(), timeout=60)
    assert r.returncode == 2 and "need the native client front end" in r.stderr


# --- the rules themselves (also what the peer listener applies) ------------------------------------
class _Shown:
    """An ssl_object stand-in that shows one certificate, as a handshake would have verified it."""

    def __init__(self, cert_file):
        with open(cert_file) as f:
            self.der = ssl.PEM_cert_to_DER_cert(f.read())

    def getpeercert(self, binary_form=False):
        return self.der


def test_check_peer_rules(pki, tmp_path):
    ca, certs, _root = pki
    crl = ca.revocation_list([certs["revoked"][0]], str(tmp_path / "peer-crl.pem"))
    info = tls_from_flags("peer", cert_file=certs["server"][0], key_file=certs["server"][1],
                          trusted_ca_file=certs["ca"], client_cert_auth=True, crl_file=crl,
                          allowed_hostname="client.example")
    assert info.check_peer(_Shown(certs["good"][0])) is None
    assert "revoked" in info.check_peer(_Shown(certs["revoked"][0]))
    assert "not valid for 'client.example'" in info.check_peer(_Shown(certs["elsewhere"][0]))
    assert info.check_peer(None) is None  # no certificate shown: nothing to check (etcd's rule)
    with pytest.raises(TLSConfigError, match="mutually exclusive"):
        TLSInfo(cert_file=certs["server"][0], key_file=certs["server"][1], allowed_cn="a",
                allowed_hostname="b")._validate()
    with pytest.raises(TLSConfigError, match="--peer-crl-file"):
        TLSInfo(cert_file=certs["server"][0], key_file=certs["server"][1], crl_file=str(tmp_path / "none"))._validate()
    bad = TLSInfo(cert_file=certs["server"][0], key_file=certs["server"][1], crl_file=str(tmp_path / "junk.pem"))
    (tmp_path / "junk.pem").write_bytes(b"not a CRL")
    assert "cannot read --peer-crl-file" in bad.check_peer(_Shown(certs["good"][0]))


def test_valid_for_host_is_gos_san_match():
    from cryptography import x509

    def cert_with(*names):
        import datetime
        import ipaddress

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "cn.example")])
        sans = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
             .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(key, hashes.SHA256())

    c = cert_with("Host.Example", "*.wild.example", "10.0.0.1", "::1")
    assert valid_for_host(c, "host.example") and valid_for_host(c, "host.example.")
    assert valid_for_host(c, "a.wild.example") and not valid_for_host(c, "a.b.wild.example")
    assert not valid_for_host(c, "wild.example")
    assert valid_for_host(c, "10.0.0.1") and valid_for_host(c, "[::1]") and not valid_for_host(c, "10.0.0.2")
    assert not valid_for_host(cert_with(), "cn.example")  # no SANs: the CN is not looked at
