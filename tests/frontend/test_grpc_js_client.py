"""grpc-js (Node) against the native front end: the `etcd3` npm client, built on @grpc/grpc-js,
runs one sequence (put, prefix get, delete, txn, lease grant/keepalive/time-to-live/revoke, a
watch with previous values, compaction and etcd's errors through plain grpc-js stubs) against a
fresh fastkv and a fresh real etcd 3.4; the two JSON outputs must be equal.

The npm packages are installed once, at pinned versions, into ~/.cache/fastkv-test-npm/<versions>
(never into the repository). Node.js and npm missing fails the test with what to install."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fastkv.bench._goload import cache_dir, locked
from tests.frontend.clientdiff import assert_same_steps, check_reference_run, run_sequence

pytestmark = pytest.mark.etcd

# etcd3 pins @grpc/grpc-js and @grpc/proto-loader only by caret ranges; naming them at the top level
# makes npm resolve etcd3's own dependency to exactly these, so every run tests the same client.
NPM_PACKAGES = ("etcd3@1.1.2", "@grpc/grpc-js@1.14.7", "@grpc/proto-loader@0.7.15")
SCRIPT = Path(__file__).parent / "nodeclient" / "sequence.js"


def node_modules() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js and npm are needed for the grpc-js client test: apt-get install -y nodejs npm")
    root = cache_dir("fastkv-test-npm")
    target = root / "_".join(p.lstrip("@").replace("/", "+").replace("@", "-") for p in NPM_PACKAGES)
    modules = target / "node_modules"
    done = target / ".installed"
    with locked(root / ".lock"):
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            # --ignore-scripts: nothing here needs an install script (protobufjs' only checks its
            # own CLI's versions), and a test should not run code it did not ask for.
            proc = subprocess.run([npm, "install", "--prefix", str(target), "--no-audit", "--no-fund",
                                   "--ignore-scripts", *NPM_PACKAGES], capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                pytest.fail(f"npm install {' '.join(NPM_PACKAGES)} failed (is the npm registry reachable?):\n"
                            f"{proc.stderr[-3000:]}")
            done.write_text(" ".join(NPM_PACKAGES) + "\n")
    return modules


def test_etcd3_npm_client_sequence_matches_etcd(native, etcd_endpoint):
    env = dict(os.environ, NODE_PATH=str(node_modules()))
    cmd = [shutil.which("node"), str(SCRIPT)]
    want = run_sequence(cmd, etcd_endpoint, env=env)
    check_reference_run(want)
    got = run_sequence(cmd, native, env=env)
    assert_same_steps(want, got)
