"""grpc-go against the native front end through etcd 3.4's own Go client library: a small program
on go.etcd.io/etcd/clientv3 (tests/frontend/goclient/main.go) runs one sequence (put, prefix,
count-only and limited gets, delete, txn, lease grant/keepalive/time-to-live/list/revoke, a watch
with previous values, a watch from a compacted revision, compaction and etcd's errors) against a
fresh fastkv and a fresh real etcd 3.4; the two JSON outputs must be equal.

It is built in GOPATH mode from Debian's packages only (golang-go, and golang-etcd-server-dev,
which brings etcd's source and, through its dependencies, everything it imports under
/usr/share/gocode): no module download. The binary is cached under ~/.cache/fastkv-test-go by a
hash of the source and the Go version, with Go's build cache beside it."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.frontend.clientdiff import assert_same_steps, cache_dir, check_reference_run, locked, run_sequence

pytestmark = pytest.mark.etcd

SOURCE_DIR = Path(__file__).parent / "goclient"
GOPATH = Path("/usr/share/gocode")
INSTALL = "apt-get install -y golang-go golang-etcd-server-dev"


def goclient() -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.fail(f"Go is needed to build the clientv3 test program: {INSTALL}")
    if not (GOPATH / "src/go.etcd.io/etcd/clientv3").is_dir():
        pytest.fail(f"etcd's Go source is needed under {GOPATH}: {INSTALL}")
    root = cache_dir("fastkv-test-go")
    env = dict(os.environ, GO111MODULE="off", GOPATH=str(GOPATH), GOFLAGS="", GOPROXY="off",
               GOCACHE=str(root / "gocache"), CGO_ENABLED="0")
    version = subprocess.run([go, "version"], capture_output=True, text=True, env=env, check=True).stdout
    digest = hashlib.sha256(version.encode())
    for path in sorted(SOURCE_DIR.glob("*.go")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    binary = root / f"goclient-{digest.hexdigest()[:16]}"
    with locked(root / ".lock"):
        if not binary.exists():
            partial = binary.with_suffix(".partial")
            proc = subprocess.run([go, "build", "-o", str(partial), "."], cwd=SOURCE_DIR, env=env,
                                  capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                pytest.fail(f"go build of {SOURCE_DIR} failed (GOPATH mode on {GOPATH}; {INSTALL}):\n"
                            f"{proc.stderr[-4000:]}")
            partial.rename(binary)
    return binary


def test_go_clientv3_sequence_matches_etcd(native, etcd_endpoint):
    cmd = [str(goclient())]
    want = run_sequence(cmd, etcd_endpoint)
    check_reference_run(want)
    got = run_sequence(cmd, native)
    assert_same_steps(want, got)
