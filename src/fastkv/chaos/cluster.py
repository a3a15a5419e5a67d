"""Clusters of etcd-API members on loopback, started as processes with etcd's flags.

The interface every target implements (`Cluster`): start, stop, kill/restart/pause/resume a member
by index, the client endpoints, and `peer_url_of(i)` so a fault proxy can sit in front of each
member's peer port. `ProcessCluster` does all of that for any binary that takes etcd's flags
(--name --data-dir --listen-client-urls --advertise-client-urls --listen-peer-urls
--initial-advertise-peer-urls --initial-cluster --initial-cluster-state --initial-cluster-token):
real etcd today, `fastkv serve` (same flags) for fastkv. A restart reuses the member's exact argv
and data dir.

When a peer proxy is used, each member *listens* for peers on its own port but *advertises* the
proxy's port, so every peer connection into a member passes its proxy (see netfault).
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from fastkv.netutil import free_port  # noqa: F401 - re-exported: tests and tools import it from here


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# Everything started and not yet stopped: stopped at interpreter exit whatever happened.
_LIVE: set = set()


def _stop_all() -> None:
    for thing in list(_LIVE):
        try:
            thing.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_stop_all)


@dataclass
class Member:
    name: str
    data_dir: str
    client_port: int
    peer_port: int            # where the member listens for peers
    advertised_peer_port: int  # what the others dial (a proxy's port, or peer_port)
    argv: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    paused: bool = False
    log_path: str = ""

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ClusterError(RuntimeError):
    pass


class ProcessCluster:
    """N members of one binary that takes etcd's flags. Use as a context manager: exit always
    stops every process (SIGCONT first, so a paused member can die)."""

    kind = "process"

    def __init__(self, base_dir: str, members: int = 3, *, proxied: bool = False,
                 token: str = "fastkv-chaos", extra_flags: tuple[str, ...] = ()):
        self.base_dir = base_dir
        self.token = token
        self.extra_flags = list(extra_flags)
        names = [f"m{i}" for i in range(members)]
        self.members: list[Member] = []
        for name in names:
            peer = free_port()
            self.members.append(Member(name, os.path.join(base_dir, name), free_port(), peer,
                                       free_port() if proxied else peer))
        initial = ",".join(f"{m.name}=http://127.0.0.1:{m.advertised_peer_port}" for m in self.members)
        for m in self.members:
            m.argv = self.command() + [
                "--name", m.name,
                "--data-dir", m.data_dir,
                "--listen-client-urls", f"http://127.0.0.1:{m.client_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{m.client_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{m.peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.advertised_peer_port}",
                "--initial-cluster", initial,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", token,
            ] + self.extra_flags
            m.log_path = os.path.join(base_dir, f"{m.name}.log")

    # -- what a target supplies ---------------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict | None:
        return None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        os.makedirs(self.base_dir, exist_ok=True)
        _LIVE.add(self)
        for i in range(len(self.members)):
            self._spawn(i)
        deadline = time.monotonic() + timeout
        for m in self.members:
            while not port_open(m.client_port):
                if not m.running:
                    raise ClusterError(f"{m.name} exited with {m.proc.returncode} while starting; see {m.log_path}")
                if time.monotonic() > deadline:
                    raise ClusterError(f"{m.name} did not open its client port in {timeout}s; see {m.log_path}")
                time.sleep(0.05)

    def _spawn(self, i: int) -> None:
        m = self.members[i]
        log = open(m.log_path, "ab")
        try:
            m.proc = subprocess.Popen(m.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=self.env(), start_new_session=True)
        finally:
            log.close()
        m.paused = False

    def stop(self) -> None:
        _LIVE.discard(self)
        for m in self.members:
            if m.running:
                try:
                    m.proc.send_signal(signal.SIGCONT)
                    m.proc.terminate()
                except ProcessLookupError:
                    pass
        for m in self.members:
            if m.proc is not None:
                try:
                    m.proc.wait(10)
                except subprocess.TimeoutExpired:
                    m.proc.kill()
                    m.proc.wait()
                m.paused = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- faults ----------------------------------------------------------------------------------
    def kill(self, i: int) -> None:
        m = self.members[i]
        if m.running:
            m.proc.send_signal(signal.SIGKILL)
            m.proc.wait()
        m.paused = False

    def restart(self, i: int) -> None:
        """Start a killed member again with the same argv and data dir."""
        if self.members[i].running:
            raise ClusterError(f"{self.members[i].name} is still running")
        self._spawn(i)

    def pause(self, i: int) -> None:
        m = self.members[i]
        if m.running and not m.paused:
            m.proc.send_signal(signal.SIGSTOP)
            m.paused = True

    def resume(self, i: int) -> None:
        m = self.members[i]
        if m.running and m.paused:
            m.proc.send_signal(signal.SIGCONT)
        m.paused = False

    def rejoin(self, i: int, initial_cluster: str) -> None:
        """Start member i afresh (empty data dir) as a member added to a running cluster:
        --initial-cluster-state existing, with the membership the cluster announced."""
        m = self.members[i]
        if m.running:
            raise ClusterError(f"{m.name} is still running")
        shutil.rmtree(m.data_dir, ignore_errors=True)
        argv = list(m.argv)
        argv[argv.index("--initial-cluster") + 1] = initial_cluster
        argv[argv.index("--initial-cluster-state") + 1] = "existing"
        m.argv = argv
        self._spawn(i)

    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]


class EtcdCluster(ProcessCluster):
    """Real etcd (Debian's etcd-server, or ETCD_BIN)."""

    kind = "etcd"

    def command(self) -> list[str]:
        binary = os.environ.get("ETCD_BIN") or shutil.which("etcd")
        if binary is None:
            raise ClusterError("real etcd is not installed: apt-get install -y etcd-server "
                               "(or set ETCD_BIN to an etcd binary)")
        return [binary]

    def env(self) -> dict:
        env = dict(os.environ)
        # etcd refuses to start with unknown ETCD_* variables set, and must not pick up ours
        for k in list(env):
            if k.startswith("ETCD_") and k != "ETCD_UNSUPPORTED_ARCH":
                del env[k]
        return env


class FastkvCluster(ProcessCluster):
    """`fastkv serve` members (the same flags as etcd's)."""

    kind = "fastkv"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "fastkv.cli", "serve"]

    def env(self) -> dict:
        # members re-read <data-dir>/failpoints on SIGUSR2 (the slowdisk fault)
        return {**os.environ, "FASTKV_FAILPOINTS_RELOAD": "1"}

    def set_failpoints(self, i: int, spec: str) -> None:
        """Switch member i's failpoints to `spec` ("" = none) while it runs."""
        m = self.members[i]
        if not m.running:
            if not spec:  # switching off on a member that died meanwhile: its restart starts without them
                return
            raise ClusterError(f"{m.name} is not running")
        os.makedirs(m.data_dir, exist_ok=True)
        with open(os.path.join(m.data_dir, "failpoints"), "w") as f:
            f.write(spec)
        m.proc.send_signal(signal.SIGUSR2)


TARGETS = {"etcd": EtcdCluster, "fastkv": FastkvCluster}
