"""TLS settings in the shape of etcd's transport.TLSInfo, for the client port and the peer port:
certificate and key, trusted CA, client certificate auth, an allowed common name (peers) or
hostname, a certificate revocation list, cipher suites, and self-signed certificates for
`--auto-tls` / `--peer-auto-tls`.

One implementation serves both sides: `tls_from_flags` turns etcd's flags (the client's --cert-file
... or the peer's --peer-cert-file ...) into a TLSInfo the way etcd's embed package does;
`server_context()` and `client_context()` build `ssl.SSLContext`s the way etcd's
TLSInfo.ServerConfig/ClientConfig build Go's tls.Config; `server_credential_bytes()` hands the
same settings to the grpcio front end (which alone imports grpc).

The rules Python's ssl has no hook for run right after the handshake, before the other side may
say anything: `check_peer(ssl_object)` (etcd's allowed CN or hostname, and its revocation list)
on the native client front end; `listener_refusal` (those, plus etcd's match of a client
certificate's SANs to the address it connects from) on the peer and metrics listeners; and
`check_server` (the allowed CN or hostname again) on the dialing side of the peer transport, as
etcd's dialer shares its listener's tls.Config base.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import socket
import ssl
from dataclasses import dataclass, field

from fastkv.transport.certs import self_signed_files

log = logging.getLogger("fastkv.transport.tls")


class TLSConfigError(ValueError):
    """The TLS flags do not make a usable configuration; the message says which flag to fix."""


# etcd's flag names per side, for messages that tell the operator what to change
FLAGS = {
    "client": {"cert": "--cert-file", "key": "--key-file", "ca": "--trusted-ca-file",
               "auth": "--client-cert-auth", "auto": "--auto-tls", "crl": "--client-crl-file",
               "hostname": "--client-cert-allowed-hostname"},
    "peer": {"cert": "--peer-cert-file", "key": "--peer-key-file", "ca": "--peer-trusted-ca-file",
             "auth": "--peer-client-cert-auth", "auto": "--peer-auto-tls", "crl": "--peer-crl-file",
             "hostname": "--peer-cert-allowed-hostname"},
}

# --cipher-suites takes Go's (IANA) names, as etcd does; OpenSSL calls the same suites otherwise.
# TLS 1.3 suites are accepted and, as in Go, not configurable (both always offer their defaults).
CIPHER_SUITES = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": "",
    "TLS_AES_256_GCM_SHA384": "",
    "TLS_CHACHA20_POLY1305_SHA256": "",
}


def parse_cipher_suites(text) -> tuple:
    """--cipher-suites (comma-separated Go names, or a list from a config file) -> the names.
    An unknown name is an error, with etcd's text."""
    names = text if isinstance(text, (list, tuple)) else [s for s in (text or "").split(",")]
    names = tuple(n.strip() for n in names if n.strip())
    for n in names:
        if n not in CIPHER_SUITES:
            raise TLSConfigError(f'unexpected TLS cipher suite "{n}" (names as in Go\'s crypto/tls, '
                                 "e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
    return names


@dataclass
class TLSInfo:
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    allowed_cn: str = ""
    allowed_hostname: str = ""  # a verified certificate must be valid for it (its SANs, as Go's)
    crl_file: str = ""  # serials listed there are refused; re-read when the file changes, as etcd
    # auto-tls certificates are self-signed, so peers cannot verify each other (etcd does the same)
    insecure_skip_verify: bool = False
    self_signed: bool = False
    cipher_suites: tuple = field(default_factory=tuple)  # Go names; empty = the library's defaults
    # etcd's --experimental-peer-skip-client-san-verification: the peer listener then does not
    # match a client certificate's SANs against the address it connects from (client_san_refusal)
    skip_client_san_verify: bool = False
    side: str = "peer"  # whose flags the messages name: "client" or "peer"
    _crl: tuple = field(default=(None, frozenset()), repr=False, compare=False)  # (file stamp, serials)

    def empty(self) -> bool:
        return not self.cert_file and not self.key_file

    def _validate(self) -> None:
        f = FLAGS[self.side]
        if bool(self.cert_file) != bool(self.key_file):
            raise TLSConfigError(f"TLS needs both a certificate and a key file ({f['cert']} and {f['key']})")
        for path, flag in ((self.cert_file, f["cert"]), (self.key_file, f["key"]), (self.trusted_ca_file, f["ca"]),
                           (self.crl_file, f["crl"])):
            if path and not os.path.isfile(path):
                raise TLSConfigError(f"open {path}: no such file or directory (check {flag})")
        if self.allowed_cn and self.allowed_hostname:
            raise TLSConfigError(f"AllowedCN and AllowedHostname are mutually exclusive (cn={self.allowed_cn!r}, "
                                 f"hostname={self.allowed_hostname!r}): give one of --peer-cert-allowed-cn "
                                 f"and {f['hostname']}")

    def _set_ciphers(self, ctx: ssl.SSLContext) -> None:
        openssl = [CIPHER_SUITES[n] for n in self.cipher_suites if CIPHER_SUITES[n]]
        if openssl:
            try:
                ctx.set_ciphers(":".join(openssl))
            except ssl.SSLError:
                raise TLSConfigError(f"none of --cipher-suites {','.join(self.cipher_suites)} is available "
                                     "in this OpenSSL build; choose others") from None

    def verifies_clients(self) -> bool:
        """etcd's ServerConfig: a trusted CA or --client-cert-auth makes the server require and
        verify a client certificate (without a CA file, against the system's CAs)."""
        return bool(self.trusted_ca_file) or self.client_cert_auth

    def server_context(self) -> ssl.SSLContext:
        self._validate()
        if self.empty():
            f = FLAGS[self.side]
            raise TLSConfigError(f"serving TLS needs {f['cert']} and {f['key']} (or {f['auto']})")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except ssl.SSLError as exc:
            f = FLAGS[self.side]
            raise TLSConfigError(f"cannot load {f['cert']} {self.cert_file} with {f['key']} {self.key_file}: "
                                 f"{exc.reason or exc}") from None
        if self.verifies_clients():
            ctx.verify_mode = ssl.CERT_REQUIRED
            if self.trusted_ca_file:
                self._load_ca(ctx)
            else:
                ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        self._set_ciphers(ctx)
        return ctx

    def _load_ca(self, ctx: ssl.SSLContext) -> None:
        try:
            ctx.load_verify_locations(self.trusted_ca_file)
        except ssl.SSLError as exc:
            raise TLSConfigError(f"{FLAGS[self.side]['ca']} {self.trusted_ca_file}: no usable CA certificate "
                                 f"({exc.reason or exc})") from None

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
            self._load_ca(ctx)
        else:
            ctx.load_default_certs()
        self._set_ciphers(ctx)
        # the checks Python's ssl has no hook for ride on the context, so every dialer that is
        # handed it applies them (see server_refusal)
        ctx.fastkv_server_check = self.check_server if self.checks_servers() else None
        return ctx

    def server_credential_bytes(self) -> tuple:
        """(key, certificate chain, trusted roots or None) as PEM bytes, for a TLS stack that takes
        them in memory (the grpcio front end builds its credentials from them); roots are the
        system's CAs when --client-cert-auth has no CA file, as in server_context()."""
        self._validate()
        with open(self.cert_file, "rb") as f:
            chain = f.read()
        with open(self.key_file, "rb") as f:
            key = f.read()
        roots = None
        if self.trusted_ca_file:
            with open(self.trusted_ca_file, "rb") as f:
                roots = f.read()
        elif self.client_cert_auth:
            paths = ssl.get_default_verify_paths()
            if paths.cafile and os.path.isfile(paths.cafile):
                with open(paths.cafile, "rb") as f:
                    roots = f.read()
            else:
                raise TLSConfigError(f"{FLAGS[self.side]['auth']} without {FLAGS[self.side]['ca']}: "
                                     "no system CA bundle found to check client certificates against")
        return key, chain, roots

    def grpc_cipher_env(self) -> str:
        """GRPC_SSL_CIPHER_SUITES for --cipher-suites ('' = grpcio's defaults)."""
        return ":".join(CIPHER_SUITES[n] for n in self.cipher_suites if CIPHER_SUITES[n])

    def checks_peers(self) -> bool:
        """Whether check_peer has anything to check."""
        return bool(self.allowed_cn or self.allowed_hostname or self.crl_file)

    def check_peer(self, ssl_object) -> str | None:
        """None if the peer on this TLS connection may stay, else the reason it may not: etcd's
        allowed CN or hostname for the certificate the handshake verified, and its revocation list
        for every certificate the peer sent (shown_chain)."""
        if not self.checks_peers():
            return None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der is None:
            if self.allowed_cn:
                return f"no client certificate; CN {self.allowed_cn!r} required"
            return None  # nothing was asked for (etcd checks only certificates it is shown)
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
        reason = self._not_allowed(cert, "client")
        if reason is None and self.crl_file:
            try:
                revoked = self._revoked_serials()
            except (OSError, ValueError) as exc:  # etcd refuses the connection when it cannot read the list
                return f"cannot read {FLAGS[self.side]['crl']} {self.crl_file}: {exc}"
            for serial in [cert.serial_number, *shown_chain_serials(ssl_object)]:
                if serial in revoked:
                    return f"certificate serial {serial:x} revoked"
        return reason

    async def listener_refusal(self, ssl_object, peername) -> str | None:
        """What etcd checks after a handshake on the listeners it makes with transport.NewListener
        (the peer and metrics ports): check_peer's rules, then, unless skip_client_san_verify, that
        a client certificate naming hosts names the address it connects from (client_san_refusal)."""
        reason = self.check_peer(ssl_object)
        if reason is None and not self.skip_client_san_verify:
            reason = await client_san_refusal(ssl_object, peername)
        return reason

    def checks_servers(self) -> bool:
        """Whether check_server has anything to check."""
        return bool(self.allowed_cn or self.allowed_hostname)

    def check_server(self, ssl_object) -> str | None:
        """For the dialing side: None if the server this TLS connection reached may be talked to,
        else why not. etcd builds its dialer's TLS config from the same base as its listener's, so
        the allowed CN or hostname applies to the certificate a peer serves too (the revocation
        list does not: etcd reads it on the listening side only). A certificate that was not
        verified (--peer-auto-tls skips verification) gives etcd no verified chain to match, and
        it refuses, as here."""
        if not self.checks_servers():
            return None
        if self.insecure_skip_verify:
            return ("the server certificate was not verified (self-signed --peer-auto-tls), so "
                    f"{'its CN' if self.allowed_cn else 'its hostname'} cannot be checked: give "
                    f"{FLAGS[self.side]['ca']} instead of {FLAGS[self.side]['auto']}")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der is None:
            return "the server showed no certificate"
        from cryptography import x509

        return self._not_allowed(x509.load_der_x509_certificate(der), "server")

    def _not_allowed(self, cert, whose: str) -> str | None:
        """Why a verified certificate fails etcd's allowed CN or hostname, or None."""
        from cryptography import x509

        if self.allowed_cn:
            cns = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
            if self.allowed_cn not in cns:
                return f"{whose} certificate CN {cns!r} is not the allowed CN {self.allowed_cn!r}"
        if self.allowed_hostname and not valid_for_host(cert, self.allowed_hostname):
            return f"{whose} certificate authentication failed: not valid for {self.allowed_hostname!r}"
        return None

    def _revoked_serials(self) -> frozenset:
        """The serials the CRL file lists (PEM or DER), parsed again only when the file changes
        (etcd reads it for every connection; a new list applies to the next connection here too).
        Its signature is not checked, as etcd does not."""
        from cryptography import x509

        st = os.stat(self.crl_file)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._crl[0] != stamp:
            with open(self.crl_file, "rb") as f:
                data = f.read()
            crl = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
            self._crl = (stamp, frozenset(r.serial_number for r in crl))
        return self._crl[1]


def server_refusal(ctx: ssl.SSLContext | None, ssl_object) -> str | None:
    """Why the server a connection made with `ctx` (from TLSInfo.client_context) reached may not be
    talked to, or None: call once the handshake is done and before sending anything."""
    check = getattr(ctx, "fastkv_server_check", None)
    return check(ssl_object) if check is not None and ssl_object is not None else None


def shown_chain_serials(ssl_object) -> list[int]:
    """The serial numbers of the certificates the peer sent after its own (intermediates), which
    etcd's revocation check covers too. Python 3.13 names the call get_unverified_chain; 3.10-3.12
    have it, unnamed in the docs, on the SSL object underneath. Without it: none (the leaf alone is
    then checked)."""
    get = getattr(ssl_object, "get_unverified_chain", None) or getattr(
        getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if get is None:
        return []
    import _ssl

    from cryptography import x509

    out = []
    for c in (get() or [])[1:]:  # 3.13: DER bytes; before: _ssl.Certificate objects
        der = c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER)
        out.append(x509.load_der_x509_certificate(der).serial_number)
    return out


async def client_san_refusal(ssl_object, peername, *, timeout: float = 10.0) -> str | None:
    """etcd's check on its peer and metrics listeners (transport.NewListener's checkSAN; not on the
    client port): a client certificate that names hosts in its SANs must name the one it connects
    from. None if it does (or names none, or none was shown), else why not. IP SANs are matched
    first; DNS names then by a reverse lookup of the address (a name, or a "*." wildcard as a
    suffix) and a forward lookup of each name, as etcd's isHostInDNS does."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if der is None or not peername:
        return None
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    ips = [str(a) for a in sans.get_values_for_type(x509.IPAddress)]
    names = [n.lower().rstrip(".") for n in sans.get_values_for_type(x509.DNSName)]
    host = str(peername[0])
    if not ips and not names:
        return None
    if ips:
        if valid_for_host(cert, host):
            return None
        if not names:
            return f"certificate is valid for {', '.join(ips)}, not {host}"
    loop = asyncio.get_running_loop()
    failure = ""
    try:
        async with asyncio.timeout(timeout):
            try:
                found, aliases, _ = await loop.run_in_executor(None, socket.gethostbyaddr, host)
            except OSError as exc:
                found, aliases, failure = "", [], f" ({exc})"
            for name in [found, *aliases]:
                name = name.lower().rstrip(".")
                if name and (name in names or any(n.startswith("*.") and name.endswith(n[1:]) for n in names)):
                    return None
            for name in names:
                if name.startswith("*."):
                    continue
                try:
                    infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
                except OSError as exc:
                    failure = f" ({exc})"
                    continue
                if any(info[4][0] == host for info in infos):
                    return None
    except TimeoutError:
        failure = f" (no DNS answer in {timeout:g}s)"
    return f"{host!r} does not match any of DNSNames {names!r}{failure}"


def valid_for_host(cert, host: str) -> bool:
    """Go's Certificate.VerifyHostname, as etcd 3.4 built with a current Go runs it: `host` (an IP
    address, or a DNS name with an optional trailing dot) against the certificate's subject
    alternative names only (no common-name fallback); a wildcard covers one leftmost label."""
    from cryptography import x509

    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if ip is not None:
        return ip in sans.get_values_for_type(x509.IPAddress)
    want = host.lower().rstrip(".")
    for name in sans.get_values_for_type(x509.DNSName):
        name = name.lower().rstrip(".")
        if name == want:
            return True
        if name.startswith("*.") and "." in want and want.split(".", 1)[1] == name[2:]:
            return True
    return False


def self_cert(dirpath: str, hosts: list[str], *, valid_days: int = 365, side: str = "peer") -> TLSInfo:
    """etcd's SelfCert: reuse `cert.pem`/`key.pem` in `dirpath` if present, else make a self-signed
    certificate for `hosts` (IP addresses or DNS names, with or without a port), usable for server
    and client auth. Peers and clients cannot verify it (insecure_skip_verify), as in etcd."""
    cert_path, key_path, made = self_signed_files(dirpath, hosts, valid_days=valid_days)
    if made:
        log.info("made a self-signed %s certificate in %s", side, dirpath)
    return TLSInfo(cert_file=cert_path, key_file=key_path, insecure_skip_verify=True, self_signed=True, side=side)


def tls_from_flags(side: str, *, cert_file: str = "", key_file: str = "", trusted_ca_file: str = "",
                   client_cert_auth: bool = False, auto_tls: bool = False, allowed_cn: str = "",
                   allowed_hostname: str = "", crl_file: str = "", cipher_suites=(), fixtures_dir: str = "",
                   hosts=()) -> TLSInfo | None:
    """One side's TLSInfo from etcd's flags (etcd's embed: ClientSelfCert/PeerSelfCert and
    updateCipherSuites), or None when no certificate is configured.

    Given certificate files win over auto-tls (which is then ignored, with a warning). auto-tls
    *replaces* the settings with a self-signed certificate, as etcd 3.4 does: a trusted CA file and
    client-cert-auth given with it are dropped (nothing could be verified against a self-signed
    certificate anyway), as are a revocation list and an allowed CN or hostname, and said so in
    the log."""
    f = FLAGS[side]
    suites = parse_cipher_suites(cipher_suites)
    info = TLSInfo(cert_file=cert_file, key_file=key_file, trusted_ca_file=trusted_ca_file,
                   client_cert_auth=client_cert_auth, allowed_cn=allowed_cn, allowed_hostname=allowed_hostname,
                   crl_file=crl_file, cipher_suites=suites, side=side)
    if auto_tls:
        if not info.empty():
            log.warning("ignoring %s since %s/%s are given", f["auto"], f["cert"], f["key"])
        else:
            if trusted_ca_file or client_cert_auth or allowed_cn or allowed_hostname or crl_file:
                log.warning("%s makes a self-signed certificate; %s, %s, %s and %s are ignored with it "
                            "(as in etcd)", f["auto"], f["ca"], f["auth"], f["crl"], f["hostname"])
            info = self_cert(fixtures_dir, list(hosts), side=side)
            info.cipher_suites = suites
            return info
    if info.empty():
        return None
    info._validate()
    if (allowed_hostname or allowed_cn) and not info.verifies_clients():
        log.warning("%s applies to verified certificates only; without %s no certificate is asked for "
                    "(as in etcd)", f["hostname"] if allowed_hostname else "--peer-cert-allowed-cn", f["auth"])
    return info


# --- the command line -------------------------------------------------------------------------------
def add_client_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """etcd's client TLS flags (and the --cipher-suites both sides share), for `serve`."""
    g = parser.add_argument_group("client TLS (etcd's flags; https:// client URLs need a certificate)")
    g.add_argument("--cert-file", default="", help="certificate the client port presents on https:// URLs")
    g.add_argument("--key-file", default="", help="private key of --cert-file")
    g.add_argument("--trusted-ca-file", default="", help="CA bundle client certificates are checked against "
                   "(as in etcd, giving it makes https:// listeners require a client certificate)")
    g.add_argument("--client-cert-auth", action="store_true",
                   help="require a client certificate on https:// listeners (checked against "
                        "--trusted-ca-file, else the system's CAs); with auth enabled, a request without "
                        "a token is made as the user named by the certificate's common name")
    g.add_argument("--auto-tls", action="store_true", help="serve https:// client URLs with a generated "
                   "self-signed certificate (kept in <data-dir>/fixtures/client) when no --cert-file is given; "
                   "clients then cannot verify the server (etcdctl --insecure-skip-tls-verify)")
    g.add_argument("--client-crl-file", default="", help="certificate revocation list (PEM or DER): a "
                   "client certificate whose serial it lists is refused right after the handshake; the "
                   "file is read again when it changes (native front end)")
    g.add_argument("--client-cert-allowed-hostname", default="", help="accept only client certificates "
                   "valid for this hostname or IP address (their subject alternative names; native front end)")
    g.add_argument("--cipher-suites", default="", help="comma-separated TLS 1.2 cipher suites, Go's names "
                   "(e.g. TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), for the client and peer ports; "
                   "empty: the TLS library's defaults")


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
    g.add_argument("--peer-cert-allowed-hostname", default="", help="accept only peer certificates "
                   "valid for this hostname or IP address (needs --peer-client-cert-auth; not with "
                   "--peer-cert-allowed-cn)")
    g.add_argument("--peer-crl-file", default="", help="certificate revocation list (PEM or DER): a peer "
                   "certificate whose serial it lists is refused right after the handshake")
    g.add_argument("--experimental-peer-skip-client-san-verification", action="store_true",
                   help="do not require a peer's client certificate, when it names hosts (SANs), to name "
                   "the address the peer connects from")


def client_tls_from_args(args, data_dir: str, hosts: list[str]) -> TLSInfo | None:
    """The client port's TLSInfo from the flags above, or None when no certificate is configured."""
    return tls_from_flags("client", cert_file=args.cert_file, key_file=args.key_file,
                          trusted_ca_file=args.trusted_ca_file, client_cert_auth=args.client_cert_auth,
                          auto_tls=args.auto_tls, allowed_hostname=getattr(args, "client_cert_allowed_hostname", ""),
                          crl_file=getattr(args, "client_crl_file", ""),
                          cipher_suites=getattr(args, "cipher_suites", ""),
                          fixtures_dir=os.path.join(data_dir, "fixtures", "client"), hosts=hosts)


def peer_tls_from_args(args, data_dir: str, hosts: list[str]) -> TLSInfo | None:
    """TLSInfo from the peer flags, or None when the peer port is plain TCP."""
    if args.peer_cert_allowed_cn and not args.peer_client_cert_auth:
        raise TLSConfigError("--peer-cert-allowed-cn needs --peer-client-cert-auth")
    if args.peer_cert_allowed_hostname and not args.peer_client_cert_auth:
        raise TLSConfigError("--peer-cert-allowed-hostname needs --peer-client-cert-auth")
    info = tls_from_flags("peer", cert_file=args.peer_cert_file, key_file=args.peer_key_file,
                          trusted_ca_file=args.peer_trusted_ca_file,
                          client_cert_auth=args.peer_client_cert_auth, auto_tls=args.peer_auto_tls,
                          allowed_cn=args.peer_cert_allowed_cn, allowed_hostname=args.peer_cert_allowed_hostname,
                          crl_file=args.peer_crl_file, cipher_suites=getattr(args, "cipher_suites", ""),
                          fixtures_dir=os.path.join(data_dir, "fixtures", "peer"), hosts=hosts)
    if info is not None:
        info.skip_client_san_verify = getattr(args, "experimental_peer_skip_client_san_verification", False)
    if info is None and (args.peer_trusted_ca_file or args.peer_client_cert_auth or args.peer_key_file
                         or args.peer_cert_file or args.peer_crl_file):
        raise TLSConfigError("peer TLS flags given without --peer-cert-file/--peer-key-file "
                             "(or --peer-auto-tls)")
    return info
