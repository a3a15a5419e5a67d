"""Helpers for the server fault/operations tests: start/stop `fastkv serve` on a data dir, signals,
and small readers over the gRPC client. Servers are real subprocesses on loopback ports."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from fastkv.client.sync import EtcdClient
from tests.conftest import free_port, start_fastkv, stop_process  # noqa: F401 (re-exported)

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def env_with_src(**extra) -> dict:
    """The environment for a `fastkv` subprocess: this tree's src first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.abspath(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Member:
    """One `fastkv serve` on a fixed data dir and client port, restartable."""

    def __init__(self, data_dir, *flags, env=None):
        self.data_dir = str(data_dir)
        self.port, self.peer_port = free_port(), free_port()
        peer = f"http://127.0.0.1:{self.peer_port}"
        # the same peer URL on every start (argparse: the last occurrence of a flag wins), as an
        # operator restarting a member would
        self.flags = ["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                      "--initial-cluster", f"default={peer}", *flags]
        self.env = env or env_with_src()
        self.proc = None
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> "Member":
        self.proc, self.endpoint = start_fastkv(self.data_dir, *self.flags, port=self.port, env=self.env)
        return self

    def client(self, timeout: float = 10.0) -> EtcdClient:
        return EtcdClient(self.endpoint, timeout=timeout)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds until it exited)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        return rc, time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def fastkv_cli(*args, cwd=None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastkv.cli", *args], cwd=cwd, env=env_with_src(),
                          capture_output=True, text=True, timeout=timeout)


def etcdctl(endpoint: str, *args, timeout: float = 30.0) -> subprocess.CompletedProcess:
    env = dict(os.environ, ETCDCTL_API="3")
    return subprocess.run(["etcdctl", "--endpoints", endpoint, "--command-timeout=20s", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def all_kvs(client, serializable: bool = False):
    return list(client.get(b"\0", b"\0", serializable=serializable).kvs)


def start_etcd(data_dir, *flags):
    """A real etcd with extra flags; returns (Popen, endpoint)."""
    import shutil

    from tests.conftest import wait_port

    binary = shutil.which("etcd")
    assert binary, "real etcd is needed: apt-get install -y etcd-server etcd-client"
    cport, pport = free_port(), free_port()
    proc = subprocess.Popen(
        [binary, "--name", "default", "--data-dir", str(data_dir),
         "--listen-client-urls", f"http://127.0.0.1:{cport}", "--advertise-client-urls", f"http://127.0.0.1:{cport}",
         "--listen-peer-urls", f"http://127.0.0.1:{pport}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
         "--initial-cluster", f"default=http://127.0.0.1:{pport}", *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(cport)
    return proc, f"http://127.0.0.1:{cport}"
