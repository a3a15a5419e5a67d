"""Servers with client TLS for the tests in this directory: fastkv (either client front end) and
real etcd 3.4 started with the same etcd flags and the same certificates, from a CA the tests make
(fastkv.transport.certs, the project's one certificate maker), and etcdctl/curl run against them."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from fastkv.netutil import free_port
from fastkv.transport.certs import CertificateAuthority

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))
ETCDCTL = shutil.which("etcdctl") or "etcdctl"


def norm(text: str) -> str:
    """etcdctl output with what differs between two servers by construction (ports, member ids)
    replaced."""
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    return re.sub(r"\b[0-9a-f]{14,16}\b", "ID", text)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["ETCDCTL_API"] = "3"
    return env


class Certs:
    """A CA with a server certificate (SAN 127.0.0.1, localhost) and client certificates whose CNs
    name users, plus a stranger's certificate from another CA."""

    def __init__(self, root):
        self.ca = CertificateAuthority(root / "ca", "fastkv-tls-test-ca")
        self.ca_file = self.ca.ca_file
        self.server = self.ca.issue("server", ["127.0.0.1", "localhost"])
        self.clients = {cn: self.ca.issue(cn, ()) for cn in ("root", "alice")}
        other = CertificateAuthority(root / "other", "some-other-ca")
        self.other_ca_file = other.ca_file
        self.stranger = other.issue("root", ["127.0.0.1"], name="stranger")

    def server_flags(self, *, client_cert_auth: bool = True) -> list:
        flags = ["--cert-file", self.server[0], "--key-file", self.server[1], "--trusted-ca-file", self.ca_file]
        return flags + (["--client-cert-auth"] if client_cert_auth else [])

    def client(self, cn: str) -> list:
        cert, key = self.clients[cn]
        return ["--cacert", self.ca_file, "--cert", cert, "--key", key]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("pki"))


def need_etcd() -> None:
    if shutil.which("etcd") is None:
        if os.environ.get("FASTKV_ALLOW_NO_ETCD"):
            pytest.skip("real etcd not installed")
        pytest.fail("real etcd is needed: apt-get install -y etcd-server etcd-client")


def etcdctl(endpoint: str, *args, timeout: float = 30, command_timeout: str = "8s") -> subprocess.CompletedProcess:
    return subprocess.run([ETCDCTL, "--endpoints", endpoint, "--command-timeout", command_timeout,
                           "--dial-timeout", "4s", *args], capture_output=True, text=True, env=_env(),
                          timeout=timeout)


class Server:
    """One member, fastkv (`kind` "grpcio" or "native": its client front end) or real etcd, with an
    http:// and/or an https:// client URL and etcd's TLS flags. Restartable on the same ports."""

    def __init__(self, kind: str, root, tls_flags, *, http: bool = True, https: bool = True):
        self.kind = kind
        self.data_dir = str(root / f"{kind}-data")
        self.http = f"http://127.0.0.1:{free_port()}" if http else None
        self.https = f"https://127.0.0.1:{free_port()}" if https else None
        self.tls_flags = list(tls_flags)
        self.peer = f"http://127.0.0.1:{free_port()}"
        self.log_path = str(root / f"{kind}.log")
        self.proc = None
        self.env: dict = {}  # extra environment for the server process

    def argv(self, frontend: str | None = None) -> list:
        urls = ",".join(u for u in (self.http, self.https) if u)
        common = ["--data-dir", self.data_dir, "--listen-client-urls", urls, "--advertise-client-urls", urls,
                  "--listen-peer-urls", self.peer, "--initial-advertise-peer-urls", self.peer,
                  "--initial-cluster", f"default={self.peer}", *self.tls_flags]
        if self.kind == "etcd":
            return ["etcd", "--name", "default", *common]
        return [sys.executable, "-m", "fastkv.cli", "serve", "--client-frontend", frontend or self.kind, *common]

    def start(self, ready_args=(), frontend: str | None = None) -> "Server":
        """Start, then wait until etcdctl with `ready_args` (client TLS flags) gets an answer."""
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.argv(frontend), stdout=log, stderr=subprocess.STDOUT,
                                     env={**_env(), **self.env})
        log.close()
        endpoint = self.https or self.http
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}: {self.log()[-2000:]}")
            r = etcdctl(endpoint, *ready_args, "endpoint", "health", command_timeout="2s")
            if r.returncode == 0:
                return self
            time.sleep(0.2)
        raise TimeoutError(f"{self.kind} did not become healthy: {self.log()[-2000:]}")

    def start_listening(self) -> "Server":
        """Start, then wait until the client port accepts TCP connections (for setups no client
        can pass the handshake of); a single member elects itself at once after that."""
        import socket

        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                     env={**_env(), **self.env})
        log.close()
        host, port = (self.https or self.http).split("://", 1)[1].rsplit(":", 1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                with socket.create_connection((host, int(port)), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"{self.kind} never listened on {host}:{port}: {self.log()[-2000:]}")

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def servers():
    """Make servers with servers.make(kind, root, flags, ...); every one is stopped at the end."""
    made = []

    class _Factory:
        @staticmethod
        def make(*args, **kw) -> Server:
            s = Server(*args, **kw)
            made.append(s)
            return s

    try:
        yield _Factory
    finally:
        for s in made:
            s.stop()
