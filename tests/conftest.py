"""Shared test fixtures.

Twins: every Cython module runs through the same tests as its pure-Python twin. Use
`native_and_twin("name")` to build a parametrized fixture; the compiled side *fails* (never skips)
when the extension is not built, so a broken build cannot pass as green.

Real etcd: `etcd_endpoint` starts a fresh real etcd (Debian's etcd-server) on free loopback ports
with its own data dir. Missing etcd fails the test with the command to install it; set
FASTKV_ALLOW_NO_ETCD=1 to skip instead (never in CI).

Client front end: every `fastkv serve` the tests start serves its clients through the server's
default front end (native) unless `--client-frontend grpcio` is given to pytest (or
FASTKV_CLIENT_FRONTEND is set): the server and differential suites then run over the grpcio
reference. tests/frontend/test_grpcio_reference.py runs a bounded sample that way in every CI run.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from fastkv._native import load
from fastkv.netutil import free_port  # noqa: F401 - re-exported: tests and tools import it from here


def pytest_addoption(parser):
    parser.addoption("--client-frontend", choices=("native", "grpcio"), default=None,
                     help="serve every fastkv the tests start through this client front end (sets "
                          "FASTKV_CLIENT_FRONTEND for them; default: fastkv serve's own default, native)")


def pytest_configure(config):
    frontend = config.getoption("--client-frontend", None)
    if frontend:
        os.environ["FASTKV_CLIENT_FRONTEND"] = frontend


def native_and_twin(name: str):
    """Return a module-scoped fixture parametrized over the compiled module and its twin."""

    @pytest.fixture(params=["native", "twin"], scope="module")
    def _impl(request):
        if request.param == "twin":
            return load(name, pure=True)
        try:
            return load(name, pure=False)
        except ImportError as exc:
            pytest.fail(f"compiled fastkv._native.{name} is not built ({exc}); run: pip install -e .")

    return _impl




def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture
def etcd_endpoint(tmp_path):
    """A fresh real etcd on loopback; yields 'http://127.0.0.1:PORT'. Stopped after the test."""
    binary = shutil.which("etcd")
    if binary is None:
        if os.environ.get("FASTKV_ALLOW_NO_ETCD"):
            pytest.skip("real etcd not installed")
        pytest.fail("real etcd is needed: apt-get install -y etcd-server etcd-client")
    cport, pport = free_port(), free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--name", "default",
            "--data-dir", str(tmp_path / "etcd-data"),
            "--listen-client-urls", f"http://127.0.0.1:{cport}",
            "--advertise-client-urls", f"http://127.0.0.1:{cport}",
            "--listen-peer-urls", f"http://127.0.0.1:{pport}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
            "--initial-cluster", f"default=http://127.0.0.1:{pport}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(cport)
        yield f"http://127.0.0.1:{cport}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def start_fastkv(data_dir, *extra, port=None, env=None):
    """Start `fastkv serve` on free loopback ports; returns (Popen, endpoint 'http://127.0.0.1:P')."""
    import sys

    cport = port or free_port()
    pport = free_port()
    cmd = [sys.executable, "-m", "fastkv.cli", "serve", "--data-dir", str(data_dir),
           "--listen-client-urls", f"http://127.0.0.1:{cport}", "--advertise-client-urls", f"http://127.0.0.1:{cport}",
           "--listen-peer-urls", f"http://127.0.0.1:{pport}", "--initial-advertise-peer-urls",
           f"http://127.0.0.1:{pport}", "--initial-cluster", f"default=http://127.0.0.1:{pport}", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fastkv serve exited with {proc.wait()} before it was ready")
        if line.startswith("ready to serve"):
            break
    else:
        proc.kill()
        raise TimeoutError("fastkv serve did not become ready")
    # keep draining its output so a chatty server never blocks on a full pipe
    import threading

    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, f"http://127.0.0.1:{cport}"


def stop_process(proc, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def fastkv_endpoint(tmp_path):
    """A fresh `fastkv serve` (one member) on loopback; yields 'http://127.0.0.1:PORT'."""
    proc, endpoint = start_fastkv(tmp_path / "fastkv-data")
    try:
        yield endpoint
    finally:
        stop_process(proc)
