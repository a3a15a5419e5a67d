"""`fastkv serve` flags: unknown flags and bad values exit 2 with a clear message on stderr (and no
data dir is created); --help lists every etcd flag the issue names; the default data dir is
"<name>.fastkv" in the working directory."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.server._util import env_with_src, fastkv_cli, free_port

ISSUE_FLAGS = [
    "--name", "--data-dir", "--listen-client-urls", "--advertise-client-urls", "--listen-peer-urls",
    "--initial-advertise-peer-urls", "--initial-cluster", "--initial-cluster-state", "--initial-cluster-token",
    "--snapshot-count", "--heartbeat-interval", "--election-timeout", "--quota-backend-bytes",
    "--max-request-bytes", "--max-txn-ops", "--auto-compaction-mode", "--auto-compaction-retention",
    "--listen-metrics-urls", "--backend-batch-limit", "--backend-batch-interval",
    "--cert-file", "--key-file", "--trusted-ca-file", "--client-cert-auth", "--auto-tls", "--cipher-suites",
]

BAD = [
    (["--bogus-flag"], "unrecognized arguments: --bogus-flag"),
    (["--snapshot-count", "abc"], "argument --snapshot-count: expected a positive integer, got 'abc'"),
    (["--snapshot-count", "0"], "argument --snapshot-count: must be > 0, got 0"),
    (["--max-txn-ops", "-3"], "argument --max-txn-ops: must be > 0, got -3"),
    (["--quota-backend-bytes", "lots"], "argument --quota-backend-bytes: invalid int value: 'lots'"),
    (["--initial-cluster-state", "weird"], "argument --initial-cluster-state: invalid choice: 'weird'"),
    (["--auto-compaction-mode", "daily"], "argument --auto-compaction-mode: invalid choice: 'daily'"),
    (["--listen-client-urls", "nohostport"], 'argument --listen-client-urls: URL address does not have the form "host:port": nohostport'),
    (["--listen-client-urls", "http://127.0.0.1:2379/v3"], "URL must not contain a path: http://127.0.0.1:2379/v3"),
    (["--listen-peer-urls", "ftp://127.0.0.1:2380"], "URL scheme must be http, https, unix, or unixs: ftp://127.0.0.1:2380"),
    (["--listen-client-urls", "https://127.0.0.1:1"], "TLS key/cert (--cert-file, --key-file) must be provided "
     "for client url https://127.0.0.1:1 with HTTPS scheme"),
    (["--listen-client-urls", "https://127.0.0.1:1", "--auto-tls", "--cipher-suites", "TLS_NOPE"],
     'unexpected TLS cipher suite "TLS_NOPE"'),
    (["--listen-client-urls", "https://127.0.0.1:1", "--cert-file", "/nonexistent/server.pem", "--key-file",
      "/nonexistent/server-key.pem"], "open /nonexistent/server.pem: no such file or directory (check --cert-file)"),
    (["--listen-client-urls", "https://127.0.0.1:1", "--cert-file", "/nonexistent/server.pem"],
     "(--cert-file and --key-file)"),
    (["--election-timeout", "300"], "--election-timeout must be at least 5 times --heartbeat-interval"),
    (["--auto-compaction-retention", "abc"], "--auto-compaction-retention 'abc' is not valid"),
    (["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"],
     "--auto-compaction-retention '1h' is not valid for --auto-compaction-mode revision"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_flags_exit_2_with_a_message(tmp_path, args, message):
    r = fastkv_cli("serve", *args, cwd=tmp_path, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert os.listdir(tmp_path) == [], "a rejected command line must not create a data dir"


def test_help_lists_every_etcd_flag(tmp_path):
    r = fastkv_cli("serve", "--help", cwd=tmp_path)
    assert r.returncode == 0
    missing = [f for f in ISSUE_FLAGS if f not in r.stdout]
    assert not missing, f"--help does not mention {missing}"
    assert "default.fastkv" in r.stdout or "<name>.fastkv" in r.stdout


@pytest.mark.parametrize("name", [None, "node7"])
def test_default_data_dir_is_name_dot_fastkv(tmp_path, name):
    cport, pport = free_port(), free_port()
    peer = f"http://127.0.0.1:{pport}"
    member = name or "default"
    args = [sys.executable, "-m", "fastkv.cli", "serve", "--listen-client-urls", f"http://127.0.0.1:{cport}",
            "--advertise-client-urls", f"http://127.0.0.1:{cport}", "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer, "--initial-cluster", f"{member}={peer}"]
    if name:
        args += ["--name", name]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env_with_src(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready to serve"), line
        assert sorted(os.listdir(tmp_path)) == [f"{member}.fastkv"]
        assert os.path.isdir(tmp_path / f"{member}.fastkv" / "member" / "wal")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_defaults_match_real_etcd():
    """The defaults of the flags both share, read from `etcd --help` of the installed etcd."""
    import argparse
    import re
    import shutil

    from fastkv.server import cli as serve_cli

    etcd = shutil.which("etcd")
    assert etcd, "real etcd is needed: apt-get install -y etcd-server etcd-client"
    text = subprocess.run([etcd, "--help"], capture_output=True, text=True, timeout=30)
    etcd_defaults = dict(re.findall(r"^  --([a-z-]+) '([^']*)'", text.stdout + text.stderr, re.M))
    parser = argparse.ArgumentParser()
    serve_cli.add_parser(parser.add_subparsers())
    ours = vars(parser.parse_args(["serve"]))
    shared = ["name", "snapshot-count", "heartbeat-interval", "election-timeout", "max-txn-ops",
              "max-request-bytes", "initial-cluster-state", "initial-cluster-token", "auto-compaction-mode",
              "auto-compaction-retention"]
    for flag in shared:
        assert flag in etcd_defaults, f"etcd --help has no --{flag}"
        assert str(ours[flag.replace("-", "_")]) == etcd_defaults[flag], flag
    # etcd's 0 means its 2 GiB default quota; ours spells it out
    assert etcd_defaults["quota-backend-bytes"] == "0" and ours["quota_backend_bytes"] == 2 * 1024**3


def test_config_file_is_etcds_yaml_and_wins_over_flags(tmp_path):
    """--config-file takes etcd's YAML (flag names as keys, peer-transport-security nested); as in
    etcd the other flags are then ignored; an unknown key is refused with exit 2."""
    port = free_port()
    cfg = tmp_path / "etcd.yaml"
    cfg.write_text(f"name: from-file\ndata-dir: {tmp_path / 'data'}\n"
                   f"listen-client-urls: http://127.0.0.1:{port}\nadvertise-client-urls: http://127.0.0.1:{port}\n"
                   f"listen-peer-urls: [http://127.0.0.1:{free_port()}]\nstrict-reconfig-check: true\n"
                   "peer-transport-security:\n  client-cert-auth: false\n")
    proc = subprocess.Popen([sys.executable, "-m", "fastkv.cli", "serve", "--config-file", str(cfg),
                             "--name", "from-flag"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env_with_src(), cwd=tmp_path)
    try:
        for line in proc.stdout:
            if line.startswith("ready to serve"):
                break
        assert f"127.0.0.1:{port}" in line
        assert (tmp_path / "data" / "member" / "wal").is_dir() and not (tmp_path / "from-flag.fastkv").exists()
        out = subprocess.run(["etcdctl", "--endpoints", f"127.0.0.1:{port}", "member", "list"], capture_output=True,
                             text=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=20).stdout
        assert ", from-file, " in out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    bad = tmp_path / "bad.yaml"
    bad.write_text("nmae: typo\n")
    p = subprocess.run([sys.executable, "-m", "fastkv.cli", "serve", "--config-file", str(bad)],
                       capture_output=True, text=True, env=env_with_src(), cwd=tmp_path, timeout=60)
    assert p.returncode == 2 and "unknown key 'nmae'" in p.stderr
