"""`fastkv bench compare` machinery, proven etcd-vs-etcd, and `fastkv bench memory`.

Two identical real etcd servers must come out roughly equal (ratio ~ 1 within a wide margin for
this noisy 2-core machine), every run must be counted in both columns, and a fastkv command that
cannot start must make compare say so and exit non-zero instead of printing a one-sided table.
"""
import json
import shutil

import pytest

from fastkv.bench._servers import ETCD_CMD

pytestmark = pytest.mark.etcd


@pytest.fixture(autouse=True)
def _need_etcd():
    if shutil.which("etcd") is None:
        pytest.fail("real etcd is needed: apt-get install -y etcd-server etcd-client")


def test_etcd_vs_etcd_ratio_is_about_one(bench, tmp_path):
    png = tmp_path / "cmp.png"
    proc = bench("compare", "--fastkv-cmd", ETCD_CMD, "--fastkv-name", "etcd-b", "--rounds", "3",
                 "--workloads", "put,lease-keepalive", "--total", "2500", "--clients", "16",
                 "--work-dir", str(tmp_path), "--plot", str(png), "--json")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["servers"] == ["etcd", "etcd-b"] and r["rounds"] == 3
    assert set(r["workloads"]) == {"put", "lease-keepalive"}
    for w, s in r["workloads"].items():
        for name in ("etcd", "etcd-b"):
            assert len(s["runs"][name]["rps"]) == 3 and s["runs"][name]["errors"] == 0
            assert all(c > 0 for c in s["runs"][name]["server_cpu_cores"])  # server CPU was measured
        assert s["ratio_rps_min"] <= s["ratio_rps"] <= s["ratio_rps_max"]
        assert 0.33 < s["ratio_rps"] < 3.0, (w, s["ratio_rps"])
        assert 0.33 < s["ratio_server_cpu_us_per_op"] < 3.0, (w, s["ratio_server_cpu_us_per_op"])
    assert "ratio" in proc.stdout and "spread" in proc.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_missing_fastkv_says_so_and_fails(bench, tmp_path):
    proc = bench("compare", "--fastkv-cmd", "/nonexistent/fastkv serve --data-dir {data_dir}",
                 "--rounds", "1", "--workloads", "put", "--total", "10", "--work-dir", str(tmp_path), check=False)
    assert proc.returncode == 2
    assert "fastkv is not available" in proc.stderr and "command not found" in proc.stderr


def test_memory_fills_both_servers_and_reports_rss(bench):
    r = bench.json("memory", "--keys", "3000", "--clients", "8", "--settle", "0.2")
    for name in ("etcd", "fastkv"):
        s = r[name]
        assert s["keys"] == 3000 and s["errors"] == 0  # every put made a distinct key, on both
        assert s["rss_mib"] > 5 and s["rss_before_mib"] > 5
    assert r["rss_ratio"] == r["fastkv_rss_mib"] / r["etcd_rss_mib"]
    assert 0.1 < r["rss_ratio"] < 10


def test_three_member_clusters_compared_through_their_leaders(bench, tmp_path):
    """`--members 3`: a real 3-member etcd cluster and a 3-member fastkv cluster, the load sent to
    each leader, every member's CPU counted; both clusters answer every request."""
    proc = bench("compare", "--members", "3", "--rounds", "1", "--workloads", "put", "--total", "600",
                 "--clients", "16", "--work-dir", str(tmp_path), "--json")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["members"] == 3 and r["servers"] == ["etcd", "fastkv"]
    s = r["workloads"]["put"]
    for name in ("etcd", "fastkv"):
        assert s["runs"][name]["errors"] == 0 and s["runs"][name]["rps"][0] > 0
        assert s["runs"][name]["server_cpu_cores"][0] > 0
    assert "--initial-cluster m0=" in proc.stdout  # the member commands are shown


def test_tls_compares_both_servers_over_tls_and_fastkv_in_plaintext(bench, tmp_path):
    """`--tls`: etcd and fastkv (native front end) serve https:// with the same certificates and
    --client-cert-auth, the load generator connects with a client certificate, and fastkv in
    plaintext runs the same rounds as the reference for the cost of TLS."""
    proc = bench("compare", "--tls", "--client-frontend", "native", "--rounds", "1", "--workloads", "put",
                 "--total", "300", "--clients", "8", "--work-dir", str(tmp_path), "--json")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["tls"] is True and r["servers"] == ["etcd", "fastkv"]
    runs = r["workloads"]["put"]["runs"]
    for name in ("etcd", "fastkv", "fastkv-plain"):
        assert len(runs[name]["rps"]) == 1 and runs[name]["errors"] == 0 and runs[name]["rps"][0] > 0
    t = r["workloads"]["put"]["tls_vs_plaintext"]
    assert t["ratio_rps"] == runs["fastkv"]["rps"][0] / runs["fastkv-plain"]["rps"][0]
    assert "https://127.0.0.1:" in proc.stdout and "--client-cert-auth" in proc.stdout
    assert "the cost of TLS" in proc.stdout
