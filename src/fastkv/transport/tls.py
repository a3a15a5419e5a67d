"""TLS settings in the shape of etcd's transport.TLSInfo, for the peer port (and later the client
port): certificate and key, trusted CA, client certificate auth, an allowed common name, and
self-signed certificates for `--peer-auto-tls`.

`server_context()` and `client_context()` build `ssl.SSLContext`s; `check_peer(ssl_object)` is the
allowed-CN rule, applied by the listener right after the TLS handshake (Python's ssl has no verify
callback, so a peer with a valid chain but the wrong CN is dropped before it may say HELLO).
"""
from __future__ import annotations

import argparse
import datetime
import ipaddress
import logging
import os
import ssl
from dataclasses import dataclass

log = logging.getLogger("fastkv.transport.tls")


class TLSConfigError(ValueError):
    """The TLS flags do not make a usable configuration; the message says which flag to fix."""


@dataclass
class TLSInfo:
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    allowed_cn: str = ""
    # auto-tls certificates are self-signed, so peers cannot verify each other (etcd does the same)
    insecure_skip_verify: bool = False
    self_signed: bool = False

    def empty(self) -> bool:
        return not self.cert_file and not self.key_file

    def _validate(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise TLSConfigError("TLS needs both a certificate and a key file "
                                 "(--peer-cert-file and --peer-key-file)")
        for f in (self.cert_file, self.key_file, self.trusted_ca_file):
            if f and not os.path.isfile(f):
                raise TLSConfigError(f"TLS file {f!r} does not exist")

    def server_context(self) -> ssl.SSLContext:
        self._validate()
        if self.empty():
            raise TLSConfigError("serving TLS needs --peer-cert-file and --peer-key-file "
                                 "(or --peer-auto-tls)")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.client_cert_auth:
            if not self.trusted_ca_file:
                raise TLSConfigError("--peer-client-cert-auth needs --peer-trusted-ca-file to check "
                                     "peer certificates against")
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.trusted_ca_file)
        elif self.trusted_ca_file:
            # a CA without client-cert-auth: verify certificates that peers offer, accept none too
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(self.trusted_ca_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        self._validate()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if not self.empty():
            ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.trusted_ca_file:
            ctx.load_verify_locations(self.trusted_ca_file)
        else:
            ctx.load_default_certs()
        return ctx

    def check_peer(self, ssl_object) -> str | None:
        """None if the peer on this TLS connection is allowed, else the reason it is not."""
        if not self.allowed_cn:
            return None
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        if not cert:
            return f"no client certificate; CN {self.allowed_cn!r} required"
        cns = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
        if self.allowed_cn not in cns:
            return f"client certificate CN {cns!r} is not the allowed CN {self.allowed_cn!r}"
        return None


def self_cert(dirpath: str, hosts: list[str], *, valid_days: int = 365) -> TLSInfo:
    """etcd's SelfCert: reuse `cert.pem`/`key.pem` in `dirpath` if present, else make a self-signed
    ECDSA certificate for `hosts` (IP addresses or DNS names), usable for server and client auth."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    cert_path = os.path.join(dirpath, "cert.pem")
    key_path = os.path.join(dirpath, "key.pem")
    info = TLSInfo(cert_file=cert_path, key_file=key_path, insecure_skip_verify=True, self_signed=True)
    if os.path.isfile(cert_path) and os.path.isfile(key_path):
        return info
    os.makedirs(dirpath, mode=0o700, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list = []
    for h in hosts:
        h = h.split(":")[0] if h.count(":") == 1 else h
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fastkv")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=valid_days))
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                            content_commitment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=False, crl_sign=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    with open(key_path, "wb", opener=lambda p, f: os.open(p, f, 0o600)) as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return info


def add_peer_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """etcd's peer TLS flags, for the `serve` subcommand."""
    g = parser.add_argument_group("peer TLS (etcd's flags)")
    g.add_argument("--peer-cert-file", default="", help="certificate the peer port presents (and "
                   "uses as a client certificate when dialing peers)")
    g.add_argument("--peer-key-file", default="", help="private key of --peer-cert-file")
    g.add_argument("--peer-trusted-ca-file", default="", help="CA bundle peer certificates are "
                   "checked against")
    g.add_argument("--peer-client-cert-auth", action="store_true", help="refuse peers that do not "
                   "present a certificate signed by --peer-trusted-ca-file")
    g.add_argument("--peer-auto-tls", action="store_true", help="use a generated self-signed "
                   "certificate when no --peer-cert-file is given (peers are then not verified)")
    g.add_argument("--peer-cert-allowed-cn", default="", help="accept only peer certificates "
                   "with this common name (needs --peer-client-cert-auth)")


def peer_tls_from_args(args, data_dir: str, hosts: list[str]) -> TLSInfo | None:
    """TLSInfo from the flags above, or None when the peer port is plain TCP."""
    info = TLSInfo(cert_file=args.peer_cert_file, key_file=args.peer_key_file,
                   trusted_ca_file=args.peer_trusted_ca_file,
                   client_cert_auth=args.peer_client_cert_auth, allowed_cn=args.peer_cert_allowed_cn)
    if info.empty() and args.peer_auto_tls:
        auto = self_cert(os.path.join(data_dir, "fixtures", "peer"), hosts)
        if info.client_cert_auth and not info.trusted_ca_file:
            log.warning("--peer-auto-tls certificates are self-signed; --peer-client-cert-auth "
                        "is ignored without --peer-trusted-ca-file")
            info.client_cert_auth = False
        info.cert_file, info.key_file = auto.cert_file, auto.key_file
        info.insecure_skip_verify = info.self_signed = True
    if info.allowed_cn and not info.client_cert_auth:
        raise TLSConfigError("--peer-cert-allowed-cn needs --peer-client-cert-auth")
    if info.empty():
        if info.trusted_ca_file or info.client_cert_auth:
            raise TLSConfigError("peer TLS flags given without --peer-cert-file/--peer-key-file "
                                 "(or --peer-auto-tls)")
        return None
    info._validate()
    return info
