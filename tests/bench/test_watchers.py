"""`fastkv bench watchers`, small, against fastkv (native and grpcio front ends) and real etcd.

Sizes are far below the benchmark's defaults, so per-item memory figures are dominated by page and
heap granularity: the checks are that every phase completed, every event reached every watcher
exactly once, and the figures are positive and within wide bounds; ratios only, no timing.
"""
import shutil

import pytest

pytestmark = pytest.mark.etcd

SERVERS = ("native", "grpcio", "etcd")


@pytest.fixture(autouse=True)
def _need_etcd():
    if shutil.which("etcd") is None:
        pytest.fail("real etcd is needed: apt-get install -y etcd-server etcd-client")


def test_small_run_delivers_every_event_and_reports_sane_figures(bench, tmp_path):
    png = tmp_path / "watchers.png"
    r = bench.json("watchers", "--watchers", "500", "--idle-connections", "50", "--puts", "20", "--settle", "0.5",
                   "--timeout", "120", "--plot", str(png))
    assert r["servers"] == list(SERVERS)
    for name in SERVERS:
        s = r[name]
        assert s["problems"] == [], (name, s["problems"])
        assert s["puts_ok"] == 20
        assert s["events_expected"] == s["events_delivered"] == 500 * 20, name
        assert s["events_missing"] == s["events_extra"] == s["watchers_short"] == 0, name
        assert s["events_on_distinct_key_watchers"] == 0, name
        # a server may batch one watcher's events in one message, never split an event
        assert 0 < s["fanout_messages"] <= 500 * 20, name
        assert s["fanout_events_per_message"] >= 1.0, name
        assert s["fanout_server_cpu_us_per_event"] >= 0 and s["fanout_client_cpu_cores"] >= 0, name
        assert s["fanout_events_per_s"] > 0 and s["fanout_s"] > 0, name
        # a server holding 1,000 more watchers and 50 more connections is not smaller than before
        assert s["rss_watchers_one_key"] > s["rss_baseline"], name
        for key in ("bytes_per_idle_connection", "bytes_per_watcher_distinct_keys", "bytes_per_watcher_one_key"):
            assert -65536 < s[key] < 4 * 2**20, (name, key, s[key])  # page/arena granularity at this size
    for name in ("native", "grpcio"):
        ratio = r[f"{name}_etcd_fanout_events_per_s_ratio"]
        assert ratio is not None and 0.005 < ratio < 200, (name, ratio)
    header, *rows = r["table"]
    assert header[:4] == ["figure", "fastkv native", "fastkv grpcio", "etcd"] and len(rows) == 9
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_unknown_server_name_is_refused_with_the_choices(bench):
    proc = bench("watchers", "--servers", "native,zookeeper", check=False)
    assert proc.returncode == 2
    assert "native,grpcio,etcd" in proc.stderr and "zookeeper" in proc.stderr


def test_help_says_what_is_measured_and_how(bench):
    out = bench("watchers", "--help").stdout
    for words in ("--watchers", "--idle-connections", "--puts", "--put-inflight", "VmRSS", "--client-frontend",
                  "never hidden", "apt-get install"):
        assert words in out, words
