"""`--generator go`: the load-generator workers on etcd 3.4's own Go client (clientv3), against a
fresh real etcd and a fresh fastkv on its native front end.

Every run goes through the real CLI in a subprocess. Counts are checked against what the server
actually stored (keys and revisions), errors by gRPC code against etcd's own refusal, and the
merged result must have the same shape as the Python generator's. Go and Debian's
golang-etcd-server-dev are required: without them these tests fail with the install hint.
"""
import os
import shutil

import pytest

from fastkv.bench import _goload
from fastkv.bench._loadgen_worker import key_bytes
from fastkv.client import EtcdClient

from tests.bench.test_loadgen import assert_consistent

pytestmark = pytest.mark.etcd


@pytest.fixture(scope="module", autouse=True)
def _go_worker_builds():
    try:
        _goload.binary()
    except _goload.GoloadUnavailable as exc:
        pytest.fail(str(exc))


@pytest.fixture(params=["etcd", "fastkv-native"])
def endpoint(request):
    if request.param == "etcd":
        return request.getfixturevalue("etcd_endpoint")
    return request.getfixturevalue("native")


@pytest.fixture
def native(tmp_path):
    from tests.conftest import start_fastkv, stop_process

    proc, ep = start_fastkv(tmp_path / "fastkv-data", "--client-frontend", "native")
    try:
        yield ep
    finally:
        stop_process(proc)


def test_put_range_txn_counts_add_up(bench, endpoint):
    r = bench.json("put", "--generator", "go", "--endpoints", endpoint, "--total", "500", "--clients", "16",
                   "--procs", "2", "--conns", "2", "--key-space-size", "250", "--sequential-keys",
                   "--val-size", "100")
    assert_consistent(r, 500)
    assert r["generator"] == "go" and r["params"]["generator"] == "go" and r["procs"] == 2
    # two workers, each requests' start within a second of the release (both wait for "go")
    assert 0 <= r["start_delay_s"] < 1.0
    assert r["max_ms"] < 10_000  # under the 10 s deadline, and sane
    with EtcdClient(endpoint) as c:
        got = c.get(b"\0", from_key=True, count_only=True)
        assert got.count == 250                 # sequential keys cover the key space exactly
        assert got.header.revision == 1 + 500   # every put applied once
        assert len(c.get(key_bytes(7, 8)).kvs[0].value) == 100

    r = bench.json("range", "--generator", "go", "--endpoints", endpoint, "--total", "500", "--clients", "8",
                   "--conns", "1", "--key-space-size", "50", "--key-size", "6")
    assert_consistent(r, 500)
    assert r["generator"] == "go"
    with EtcdClient(endpoint) as c:
        # the prefill put every 6-byte key of the key space once (50 new keys); reads wrote nothing
        assert c.get(b"\0", from_key=True, count_only=True).count == 250 + 50
        assert c.get(key_bytes(49, 6)).kvs[0].value == b"v" * 256
        assert c.status().header.revision == 1 + 500 + 50

    r = bench.json("range", "--generator", "go", "--endpoints", endpoint, "--total", "500", "--clients", "4",
                   "--key-space-size", "50", "--key-size", "6", "--consistency", "s", "--no-prefill")
    assert_consistent(r, 500)

    r = bench.json("txn-put", "--generator", "go", "--endpoints", endpoint, "--total", "500", "--clients", "16",
                   "--txn-ops", "3", "--key-space-size", "30", "--key-size", "4", "--sequential-keys")
    assert_consistent(r, 500)
    with EtcdClient(endpoint) as c:
        assert c.get(b"\0", from_key=True, count_only=True).count == 250 + 50 + 30  # 30 new 4-byte keys
        assert c.status().header.revision == 1 + 500 + 50 + 500  # one revision per txn, not per op


def test_errors_are_counted_by_grpc_code(bench, endpoint):
    # etcd refuses requests above 1.5 MiB: "etcdserver: request is too large", INVALID_ARGUMENT;
    # clientv3 does not retry a put, so each request is one error
    r = bench.json("put", "--generator", "go", "--endpoints", endpoint, "--total", "6", "--clients", "2",
                   "--val-size", str(1_600_000), "--key-space-size", "10", check=False)
    assert r["ok"] == 0 and r["errors"] == {"INVALID_ARGUMENT": 6}, r["error_samples"]
    assert "request is too large" in r["error_samples"]["INVALID_ARGUMENT"]
    # a 1 us deadline applies to the measured requests only (connecting is not under it)
    r = bench.json("put", "--generator", "go", "--endpoints", endpoint, "--total", "20", "--clients", "4",
                   "--timeout", "0.000001", check=False)
    assert r["errors"].get("DEADLINE_EXCEEDED", 0) > 0 and r["ok"] + r["errors_total"] == 20, r["errors"]


def test_open_loop_holds_the_rate(bench, etcd_endpoint):
    r = bench.json("put", "--generator", "go", "--endpoints", etcd_endpoint, "--total", "1000",
                   "--rate", "1000", "--clients", "16")
    assert_consistent(r, 1000)
    assert 0.95 < r["elapsed_s"] < 4.0  # the last request is scheduled at 0.999 s
    assert 250 < r["rps"] <= 1060
    # never ahead of the schedule: by the end of bucket k at most rate * (k + 2) buckets' worth done
    done, step = 0, r["timeline"]["interval_s"]
    for k, per_s in enumerate(r["timeline"]["rps"]):
        done += per_s * step
        assert done <= 1000 * (k + 2) * step + 1, (k, done)


def test_compare_end_to_end(bench, tmp_path):
    r = bench.json("compare", "--generator", "go", "--rounds", "1", "--total", "2000", "--workloads", "put",
                   "--client-frontend", "native", "--work-dir", str(tmp_path))
    assert r["generator"] == "go" and r["params"]["generator"] == "go"
    s = r["workloads"]["put"]
    for name in ("etcd", "fastkv"):
        run = s["runs"][name]
        assert len(run["rps"]) == 1 and run["rps"][0] > 0 and run["errors"] == 0
        assert run["server_cpu_cores"][0] > 0 and run["client_cpu_cores"][0] > 0
        assert 0 < run["p50_ms"][0] <= run["p99_ms"][0] < 10_000
    assert s["ratio_rps"] == pytest.approx(s["fastkv"]["rps_median"] / s["etcd"]["rps_median"])


def test_refusals_say_what_to_do(bench, tmp_path):
    # watch and lease-keepalive have no Go worker: compare says which workloads it can run
    proc = bench("compare", "--generator", "go", "--workloads", "put,watch", "--rounds", "1", check=False)
    assert proc.returncode == 2 and "--generator go runs put, range, txn-put" in proc.stderr
    # without go on PATH: exit 2 and the packages to install, before anything is sent
    empty = tmp_path / "bin"
    empty.mkdir()
    env_path = os.environ["PATH"]
    try:
        os.environ["PATH"] = str(empty)
        assert shutil.which("go") is None
        proc = bench("put", "--generator", "go", "--endpoints", "http://127.0.0.1:9", "--total", "10",
                     check=False)
    finally:
        os.environ["PATH"] = env_path
    assert proc.returncode == 2
    assert "apt-get install -y golang-go golang-etcd-server-dev" in proc.stderr, proc.stderr
