"""/metrics, /health and /version on --listen-metrics-urls: every metric name the issue lists, with
plausible values that move with writes; /health and /version shaped as real etcd's (compared)."""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import pytest

from tests.server._util import Member, free_port, start_etcd, stop_process

ISSUE_METRICS = [
    "etcd_disk_wal_fsync_duration_seconds", "etcd_disk_backend_commit_duration_seconds",
    "etcd_server_has_leader", "etcd_server_proposals_committed_total", "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending", "etcd_server_proposals_failed_total", "etcd_mvcc_db_total_size_in_bytes",
    "etcd_debugging_mvcc_keys_total",
]
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _metrics(base: str) -> dict:
    status, text = _get(base + "/metrics")
    assert status == 200
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not Prometheus text: {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


@pytest.mark.etcd
def test_metrics_health_version(tmp_path):
    mport = free_port()
    base = f"http://127.0.0.1:{mport}"
    m = Member(tmp_path / "data", "--listen-metrics-urls", base, "--backend-batch-interval", "10").start()
    etcd, etcd_ep = start_etcd(tmp_path / "etcd")
    try:
        before = _metrics(base)
        for name in ISSUE_METRICS:
            hist = name.endswith("_seconds")
            key = name + "_count" if hist else name
            assert key in before, f"/metrics lacks {name}"
        assert before["etcd_server_has_leader"] == 1
        assert before["etcd_server_proposals_pending"] == 0
        assert before["etcd_server_proposals_failed_total"] == 0
        assert before["etcd_server_proposals_applied_total"] <= before["etcd_server_proposals_committed_total"]
        assert before["etcd_mvcc_db_total_size_in_bytes"] > 0
        assert before["etcd_debugging_mvcc_keys_total"] == 0
        assert before['etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"}'] == \
            before["etcd_disk_wal_fsync_duration_seconds_count"]

        c = m.client()
        for i in range(50):
            c.put(b"key%d" % (i % 20), b"v")
        c.close()
        # wait for the next backend batch commit (one batch interval, longer on a loaded machine)
        deadline = time.monotonic() + 10
        after = _metrics(base)
        while time.monotonic() < deadline and (
                after["etcd_disk_backend_commit_duration_seconds_count"]
                <= before["etcd_disk_backend_commit_duration_seconds_count"]
                or after["etcd_server_proposals_applied_total"] != after["etcd_server_proposals_committed_total"]):
            time.sleep(0.05)
            after = _metrics(base)
        assert after["etcd_server_proposals_committed_total"] >= before["etcd_server_proposals_committed_total"] + 50
        assert after["etcd_server_proposals_applied_total"] == after["etcd_server_proposals_committed_total"]
        assert after["etcd_disk_wal_fsync_duration_seconds_count"] > before["etcd_disk_wal_fsync_duration_seconds_count"]
        assert after["etcd_disk_wal_fsync_duration_seconds_sum"] > 0
        assert after["etcd_disk_backend_commit_duration_seconds_count"] > \
            before["etcd_disk_backend_commit_duration_seconds_count"]
        assert after["etcd_debugging_mvcc_keys_total"] == 20
        assert after["etcd_server_proposals_pending"] == 0
        assert after["etcd_server_has_leader"] == 1

        # /health and /version: the same shape and values as real etcd's (on its client URL)
        status, body = _get(base + "/health")
        e_status, e_body = _get(etcd_ep + "/health")
        assert (status, body) == (e_status, e_body) == (200, '{"health":"true"}')
        status, body = _get(base + "/version")
        e_status, e_body = _get(etcd_ep + "/version")
        got, want = json.loads(body), json.loads(e_body)
        assert status == e_status == 200
        assert set(want) <= set(got), (got, want)
        assert got["etcdserver"] == want["etcdserver"]
        assert _get(base + "/nothing-here")[0] == 404
    finally:
        m.stop()
        stop_process(etcd)
