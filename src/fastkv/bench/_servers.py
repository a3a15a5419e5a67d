"""Start and stop single-member etcd-compatible servers for benchmarks (real etcd, fastkv serve).

A server is described by a command template with the placeholders {data_dir}, {client_url} and
{peer_url}; it is run without a shell (shlex-split), on free loopback ports, with its own data dir,
and counted as ready once a linearizable Range succeeds (so a leader exists and reads are served).
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from fastkv.netutil import free_port  # noqa: F401 - re-exported: tests and tools import it from here

ETCD_INSTALL_HINT = "apt-get install -y etcd-server etcd-client"
SERVER_FLAGS = ("--data-dir {data_dir} --listen-client-urls {client_url} --advertise-client-urls {client_url} "
                "--listen-peer-urls {peer_url} --initial-advertise-peer-urls {peer_url} "
                "--initial-cluster default={peer_url}")
ETCD_CMD = "etcd --name default " + SERVER_FLAGS
# The running interpreter's fastkv, so a source checkout benchmarks itself, not some other install.
FASTKV_CMD = f"{shlex.quote(sys.executable)} -m fastkv.cli serve " + SERVER_FLAGS


class ClusterServer:
    """A local cluster of `members` processes (fastkv.chaos.cluster: etcd's flags, always torn
    down) seen as one server by the benchmarks: its endpoint is the leader's client URL (the load
    goes through the leader, as `--members 3` in `bench compare` promises), its pids all members'."""

    def __init__(self, name: str, kind: str, members: int, workdir: str | None = None,
                 ready_timeout: float = 60.0, extra_flags=()):
        from fastkv.chaos.cluster import EtcdCluster, FastkvCluster

        self.name = name
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"fastkv-bench-{name}-")
        cls = EtcdCluster if kind == "etcd" else FastkvCluster
        self.cluster = cls(os.path.join(self.workdir, name), members, token=f"bench-{name}",
                           extra_flags=tuple(extra_flags))
        self.ready_timeout = ready_timeout
        self.endpoint = ""
        self.argv = self.cluster.members[0].argv

    @property
    def pids(self) -> list:
        return [m.proc.pid for m in self.cluster.members if m.proc is not None]

    @property
    def pid(self) -> int:
        return self.pids[0]

    def start(self) -> "ClusterServer":
        from fastkv.chaos.cluster import ClusterError
        from fastkv.client import EtcdClient

        try:
            self.cluster.start(self.ready_timeout)
        except ClusterError as exc:
            self.cleanup()
            raise ServerUnavailable(f"{self.name}: {exc}") from None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            leaders = set()
            ids = {}
            for m in self.cluster.members:
                try:
                    with EtcdClient("http://" + m.endpoint, timeout=1.0) as c:
                        st = c.status()
                    ids[st.header.member_id] = m.endpoint
                    leaders.add(st.leader)
                except Exception:  # noqa: BLE001 - not up yet
                    leaders.add(None)
            if len(leaders) == 1 and next(iter(leaders)) in ids:
                self.endpoint = "http://" + ids[next(iter(leaders))]
                return self
            time.sleep(0.2)
        self.cleanup()
        raise ServerUnavailable(f"{self.name}: no agreed leader within {self.ready_timeout:g} s")

    def cleanup(self) -> None:
        self.cluster.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class ServerUnavailable(RuntimeError):
    """The server could not be started or never became ready; the message says what to do."""




class BenchCertificates:
    """One CA, a server certificate for 127.0.0.1 and a client certificate (CN root) in `dirpath`:
    what `bench compare --tls` gives both servers (etcd's client TLS flags) and the load generator."""

    def __init__(self, dirpath: str):
        from fastkv.transport.certs import CertificateAuthority

        ca = CertificateAuthority(dirpath, "fastkv-bench-ca")
        self.ca = ca.ca_file
        self.server_cert, self.server_key = ca.issue("server", ["127.0.0.1", "localhost"])
        self.client_cert, self.client_key = ca.issue("root", ())

    def server_flags(self) -> list:
        return ["--cert-file", self.server_cert, "--key-file", self.server_key, "--trusted-ca-file", self.ca,
                "--client-cert-auth"]

    def client(self) -> dict:
        return {"ca": self.ca, "cert": self.client_cert, "key": self.client_key}


class Server:
    def __init__(self, name: str, template: str, workdir: str | None = None, ready_timeout: float = 30.0,
                 tls: BenchCertificates | None = None):
        self.name, self.template = name, template
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"fastkv-bench-{name}-")
        self.data_dir = os.path.join(self.workdir, f"{name}.data")
        cport, pport = free_port(), free_port()
        self.tls = tls
        self.endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{cport}"
        self.peer_url = f"http://127.0.0.1:{pport}"
        self.argv = shlex.split(template.format(data_dir=self.data_dir, client_url=self.endpoint,
                                                peer_url=self.peer_url))
        if tls is not None:
            self.argv += tls.server_flags()
        self.log_path = os.path.join(self.workdir, f"{name}.log")
        self.proc: subprocess.Popen | None = None
        self.ready_timeout = ready_timeout

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> "Server":
        if shutil.which(self.argv[0]) is None:
            raise ServerUnavailable(f"{self.name}: command not found: {self.argv[0]}")
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _log_tail(self, n: int = 15) -> str:
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").strip().splitlines()
            return "\n".join("    " + line for line in lines[-n:])
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        import grpc

        deadline = time.monotonic() + self.ready_timeout
        last = "no answer"
        with self._probe_client() as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise ServerUnavailable(f"{self.name} exited with code {self.proc.returncode} before it was "
                                            f"ready: {' '.join(self.argv)}\n{self._log_tail()}")
                try:
                    client.get(b"fastkv-bench/probe")
                    return
                except grpc.RpcError as exc:
                    last = f"{exc.code().name}: {exc.details()}"
                    time.sleep(0.1)
        raise ServerUnavailable(f"{self.name} did not answer a Range within {self.ready_timeout:g} s "
                                f"({last}): {' '.join(self.argv)}\n{self._log_tail()}")

    def _probe_client(self):
        """Something with get(key) and a context manager: fastkv's client, or over TLS a grpcio
        channel with the bench certificates (fastkv's client speaks plaintext only)."""
        from fastkv.client import EtcdClient

        if self.tls is None:
            return EtcdClient(self.endpoint, timeout=1.0)
        return _TLSProbe(self.endpoint, self.tls)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


class _TLSProbe:
    """A linearizable Range over TLS, for readiness."""

    def __init__(self, endpoint: str, tls: BenchCertificates):
        import grpc

        from fastkv.api.etcdpb import rpc_pb2_grpc

        def read(path):
            with open(path, "rb") as f:
                return f.read()

        creds = grpc.ssl_channel_credentials(read(tls.ca), read(tls.client_key), read(tls.client_cert))
        self.channel = grpc.secure_channel(endpoint.split("://", 1)[1], creds)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)

    def get(self, key: bytes):
        from fastkv.api.etcdpb import rpc_pb2

        return self.kv.Range(rpc_pb2.RangeRequest(key=key), timeout=1.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.channel.close()
