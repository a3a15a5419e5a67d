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

from pathlib import Path

import pytest

from tests.frontend.clientdiff import assert_same_steps, check_reference_run, run_sequence

pytestmark = pytest.mark.etcd

SOURCE_DIR = Path(__file__).parent / "goclient"


def goclient() -> Path:
    from fastkv.bench._goload import GoloadUnavailable, build_clientv3_program

    try:
        return build_clientv3_program(SOURCE_DIR, "fastkv-test-go", "the clientv3 test program")
    except GoloadUnavailable as exc:
        pytest.fail(str(exc))


def test_go_clientv3_sequence_matches_etcd(native, etcd_endpoint):
    cmd = [str(goclient())]
    want = run_sequence(cmd, etcd_endpoint)
    check_reference_run(want)
    got = run_sequence(cmd, native)
    assert_same_steps(want, got)
