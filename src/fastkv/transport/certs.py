"""X.509 certificates for fastkv's TLS, made with the `cryptography` package: the one place that
makes them. `--auto-tls` / `--peer-auto-tls` take a self-signed certificate from
`self_signed_files`; tests and `fastkv bench compare --tls` take a throwaway CA from
`CertificateAuthority` and issue server and client certificates with it (the client's common
name is the user etcd's --client-cert-auth makes requests as).

Keys are ECDSA P-256: small, fast to make, accepted by OpenSSL, grpcio and Go's crypto/tls.
"""
from __future__ import annotations

import datetime
import ipaddress
import os


def _modules():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


def _sans(hosts):
    """SubjectAlternativeName entries for hosts given as 'host', 'host:port' or '[v6]:port'."""
    x509 = _modules()[0]
    out = []
    for h in hosts:
        if h.startswith("["):
            h = h[1:].split("]", 1)[0]
        elif h.count(":") == 1:
            h = h.split(":", 1)[0]
        if not h:
            continue
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def _write_key(path: str, key) -> None:
    serialization = _modules()[2]
    with open(path, "wb", opener=lambda p, f: os.open(p, f, 0o600)) as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def _write_cert(path: str, cert) -> None:
    serialization = _modules()[2]
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def _leaf(subject, issuer, public_key, sign_key, hosts, valid_days: int, *, not_before=None):
    x509, hashes, _ser, _ec, EKU, _oid = _modules()
    now = datetime.datetime.now(datetime.timezone.utc)
    start = not_before or now - datetime.timedelta(minutes=5)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
         .serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(now + datetime.timedelta(days=valid_days))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                      crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([EKU.SERVER_AUTH, EKU.CLIENT_AUTH]), critical=False))
    sans = _sans(hosts)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(sign_key, hashes.SHA256())


def self_signed_files(dirpath: str, hosts, *, valid_days: int = 365) -> tuple[str, str, bool]:
    """etcd's SelfCert: `dirpath`/cert.pem and key.pem, reused when both exist (a restarted member
    keeps its certificate), else made: self-signed, for `hosts`, usable for server and client auth.
    Returns (cert path, key path, made now?)."""
    x509, _h, _s, ec, _e, NameOID = _modules()
    cert_path = os.path.join(dirpath, "cert.pem")
    key_path = os.path.join(dirpath, "key.pem")
    if os.path.isfile(cert_path) and os.path.isfile(key_path):
        return cert_path, key_path, False
    os.makedirs(dirpath, mode=0o700, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fastkv")])
    cert = _leaf(name, name, key.public_key(), key, hosts, valid_days)
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path, True


class CertificateAuthority:
    """A throwaway CA in `root` (ca.pem), issuing certificates into the same directory.

        ca = CertificateAuthority(tmp_path / "pki")
        cert, key = ca.issue("root")                 # client certificate, CN root
        cert, key = ca.issue("server", ["127.0.0.1", "localhost"])
    """

    def __init__(self, root, name: str = "fastkv-test-ca", *, valid_days: int = 2,
                 parent: "CertificateAuthority | None" = None):
        x509, hashes, _s, ec, _e, NameOID = _modules()
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        self.valid_days = valid_days
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.not_before = now - datetime.timedelta(hours=1)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        # an intermediate CA (`parent` given) is signed by its parent, and the certificates it issues
        # are written with itself appended, so a client sends the chain its verifier needs
        self.parent = parent
        self.cert = (x509.CertificateBuilder().subject_name(subject)
                     .issuer_name(parent.cert.subject if parent else subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(self.not_before)
                     .not_valid_after(now + datetime.timedelta(days=valid_days))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                                  content_commitment=False, data_encipherment=False,
                                                  key_agreement=False, key_cert_sign=True, crl_sign=True,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(parent.key if parent else self.key, hashes.SHA256()))
        self.ca_file = os.path.join(self.root, "ca.pem")
        _write_cert(self.ca_file, self.cert)

    def intermediate(self, name: str) -> "CertificateAuthority":
        """A CA signed by this one, in <root>/<name>; clients still trust only this one's ca.pem."""
        return CertificateAuthority(os.path.join(self.root, name), name, valid_days=self.valid_days, parent=self)

    def issue(self, cn: str, hosts=("127.0.0.1",), *, name: str | None = None) -> tuple[str, str]:
        """A certificate with common name `cn` (and SANs `hosts`) signed by this CA, usable for
        server and client auth; returns (cert file, key file) named after `name` (default: cn)."""
        x509, _h, _s, ec, _e, NameOID = _modules()
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        cert = _leaf(subject, self.cert.subject, key.public_key(), self.key, hosts, self.valid_days - 1 or 1,
                     not_before=self.not_before)
        base = name or cn
        cert_file, key_file = os.path.join(self.root, f"{base}.pem"), os.path.join(self.root, f"{base}-key.pem")
        _write_cert(cert_file, cert)
        if self.parent is not None:
            with open(cert_file, "ab") as f, open(self.ca_file, "rb") as ca:
                f.write(ca.read())
        _write_key(key_file, key)
        return cert_file, key_file

    def revocation_list(self, cert_files, path: str | None = None, *, der: bool = False) -> str:
        """A CRL signed by this CA revoking the certificates in `cert_files` (PEM), written to `path`
        (default <root>/crl.pem; DER with der=True); returns the path. What --client-crl-file and
        --peer-crl-file read."""
        x509, hashes, serialization, _ec, _e, _oid = _modules()
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
             .last_update(self.not_before).next_update(now + datetime.timedelta(days=self.valid_days)))
        for cert_file in cert_files:
            with open(cert_file, "rb") as f:
                serial = x509.load_pem_x509_certificate(f.read()).serial_number
            b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                          .revocation_date(self.not_before).build())
        crl = b.sign(self.key, hashes.SHA256())
        path = path or os.path.join(self.root, "crl.pem")
        encoding = serialization.Encoding.DER if der else serialization.Encoding.PEM
        with open(path + ".tmp", "wb") as f:
            f.write(crl.public_bytes(encoding))
        os.replace(path + ".tmp", path)
        return path
