"""Helpers for differential tests that drive real etcd and `fastkv serve` through etcdctl 3.4.

`Ctl` runs one etcdctl command against one endpoint; `Pair.both` runs it against both servers and
returns the two normalised results, which the caller asserts equal. Normalisation removes only what
legitimately differs between two fresh clusters: cluster/member ids, raft terms and indexes, lease
ids (mapped to stable names in order of first appearance), db sizes, hashes, version strings,
timings, and the ports in endpoint URLs. Revisions, values, counts and error texts are kept.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time

ETCDCTL = shutil.which("etcdctl") or "etcdctl"

# etcdctl's client logs retries as JSON lines on stderr; they name a random client id and carry a
# timestamp, and the same error is printed again as "Error: ..." (which we keep).
_LOG_LINE = re.compile(r'^\{"level":')
_HEADER_IDS = ("cluster_id", "member_id", "raft_term")


class Ctl:
    """etcdctl against one endpoint, with a lease-id map for normalisation."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint.replace("http://", "")
        self.port = self.endpoint.rsplit(":", 1)[1]
        self.leases: dict[int, str] = {}  # lease id -> "LEASE<n>" in order of first sight
        self.ids: dict[int, str] = {}     # member id etc. -> "ID<n>"

    def argv(self, *args) -> list:
        return [ETCDCTL, "--endpoints", self.endpoint, *args]

    def env(self) -> dict:
        return {**os.environ, "ETCDCTL_API": "3"}

    def run(self, *args, stdin: str | None = None, timeout: float = 15) -> tuple[int, str, str]:
        p = subprocess.run(self.argv(*args), input=stdin, capture_output=True, text=True, env=self.env(),
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr

    def popen(self, *args, stdin: bool = False) -> "Background":
        return Background(subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                           text=True, env=self.env()))

    # -- normalisation -------------------------------------------------------------------------
    def lease_name(self, lease_id: int) -> str:
        return self.leases.setdefault(lease_id, f"LEASE{len(self.leases) + 1}")

    def learn_leases(self, text: str) -> None:
        """Record lease ids (hex, as etcdctl prints them) in order of appearance."""
        for m in re.finditer(r"\blease ([0-9a-f]{1,16})\b", text):
            self.lease_name(int(m.group(1), 16))
        m = re.search(r"found \d+ leases\n((?:[0-9a-f]{1,16}\n?)*)", text)
        if m:  # `lease list` prints bare ids
            for lid in m.group(1).split():
                self.lease_name(int(lid, 16))

    def text(self, text: str) -> str:
        out = []
        for line in text.splitlines():
            if _LOG_LINE.match(line):
                continue
            out.append(line)
        s = "\n".join(out)
        self.learn_leases(s)
        s = s.replace(self.endpoint, "ENDPOINT")
        for lid, name in self.leases.items():
            s = re.sub(rf"\b{lid:016x}\b", name, s)  # etcdctl prints ids zero-padded
            s = re.sub(rf"\b{lid:x}\b", name, s)     # lock/election keys do not pad
            s = re.sub(rf"\b{lid}\b", name, s)
        s = re.sub(r"took = [0-9.]+[µnm]?s", "took = T", s)
        s = re.sub(r'"(cluster_id|member_id|raft_term)":\d+', r'"\1":X', s)  # JSON mixed with prompts
        s = re.sub(r'^"(ClusterID|MemberID|RaftTerm)" : \d+$', r'"\1" : X', s, flags=re.M)  # -w fields
        return s

    def json(self, text: str):
        """Parse etcdctl -w json output (one object per line for streams) and normalise it."""
        objs = [json.loads(line) for line in text.splitlines() if line.strip() and not _LOG_LINE.match(line)]
        out = [self.norm(o) for o in objs]
        # keys made from lease ids (lock and election keys "<name>/<lease hex>") become stable names
        dumped = json.dumps(out, sort_keys=True)
        for lid, name in self.leases.items():
            dumped = re.sub(rf"\b{lid:016x}\b", name, dumped)
            dumped = re.sub(rf"\b{lid:x}\b", name, dumped)
        return json.loads(dumped)

    def norm(self, o, key: str = ""):
        if isinstance(o, dict):
            out = {}
            for k, v in o.items():
                kl = k.lower()
                if kl in _HEADER_IDS or kl in ("raftterm", "raftindex", "raftappliedindex"):
                    out[k] = "X"
                elif kl in ("dbsize", "dbsizeinuse", "hash") or (kl == "version" and isinstance(v, str)):
                    out[k] = "X"  # sizes, hashes and the server version string legitimately differ
                elif kl in ("id", "leader", "member_id") and isinstance(v, int):
                    out[k] = self.ids.setdefault(v, f"ID{len(self.ids) + 1}")
                elif kl == "leases":  # etcd lists leases in Go map order: compare as a set
                    out[k] = sorted(self.norm_lease(v), key=str)
                elif kl == "lease":
                    out[k] = self.norm_lease(v)
                elif kl in ("key", "value") and isinstance(v, str):
                    out[k] = base64.b64decode(v).decode("utf-8", "replace")
                elif kl == "keys" and isinstance(v, list):
                    out[k] = [base64.b64decode(x).decode("utf-8", "replace") for x in v]
                elif kl in ("peerurls", "clienturls"):
                    out[k] = [re.sub(r":\d+$", ":PORT", u) for u in v]
                elif kl == "endpoint":
                    out[k] = "ENDPOINT"
                else:
                    out[k] = self.norm(v, kl)
            return out
        if isinstance(o, list):
            return [self.norm(v, key) for v in o]
        return o

    def norm_lease(self, v):
        if isinstance(v, int):
            return self.lease_name(v) if v else 0
        if isinstance(v, list):
            return [self.norm_lease(x) for x in v]
        if isinstance(v, dict):
            return {k: (self.norm_lease(x) if k in ("ID", "id") else x) for k, x in v.items()}
        return v


class Background:
    """A long-running etcdctl (watch, lock, elect) whose stdout is collected line by line."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: list[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_lines(self, n: int, timeout: float = 10) -> list[str]:
        """Wait until at least n stdout lines arrived; returns them (fails loudly on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self.lines) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} lines, got {self.lines!r}; "
                                         f"exit={self.proc.poll()}")
                self._cv.wait(left)
            return list(self.lines)

    def write(self, line: str) -> None:
        """Send one line to an interactive etcdctl (watch -i)."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, predicate, timeout: float = 10) -> list[str]:
        """Wait until predicate(lines) holds; returns the lines (fails loudly on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not predicate(self.lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"condition not met; got {self.lines!r}; exit={self.proc.poll()}")
                self._cv.wait(left)
            return list(self.lines)

    def stop(self, sig_term: bool = True) -> str:
        """SIGTERM (etcdctl lock/elect release their session on it) and return stderr."""
        if self.proc.poll() is None:
            self.proc.terminate() if sig_term else self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.stderr.read()


def max_event_revision(lines: list[str]) -> int:
    rev = 0
    for line in lines:
        for ev in json.loads(line).get("Events") or []:
            rev = max(rev, ev["kv"].get("mod_revision", 0))
    return rev


class Pair:
    """One real etcd and one fastkv, driven by the same etcdctl commands."""

    def __init__(self, etcd_endpoint: str, fastkv_endpoint: str):
        self.etcd, self.fkv = Ctl(etcd_endpoint), Ctl(fastkv_endpoint)

    def both(self, *args, stdin: str | None = None, json_out: bool = False, expect_rc: int | None = 0,
             unordered: bool = False):
        """Run on both; assert equal normalised (rc, stdout, stderr); return etcd's normalised result.
        unordered: stdout lines after the first are compared as a set (etcd prints some lists, e.g.
        `lease list`, in Go map order)."""
        results = []
        for c in (self.etcd, self.fkv):
            rc, out, err = c.run(*args, stdin=stdin)
            out = c.json(out) if json_out and out.strip() else c.text(out)
            if unordered and isinstance(out, str):
                first, *rest = out.splitlines() or [""]
                out = "\n".join([first, *sorted(rest)])
            results.append((rc, out, c.text(err)))
        want, got = results
        assert got == want, f"etcdctl {' '.join(args)}\netcd:   {want}\nfastkv: {got}"
        if expect_rc is not None:
            assert want[0] == expect_rc, f"etcdctl {' '.join(args)} -> {want}"
        return want

    def current_revision(self) -> int:
        """The (equal) current revision of both servers."""
        revs = [json.loads(c.run("get", "x", "-w", "json")[1])["header"]["revision"] for c in (self.etcd, self.fkv)]
        assert revs[0] == revs[1], f"revisions differ: etcd {revs[0]}, fastkv {revs[1]}"
        return revs[0]

    def history(self, key: str, *flags, start: int = 1) -> list:
        """The watch history of `key` (plus flags, e.g. --prefix) from `start` up to the current
        revision, through `etcdctl watch --rev` on both servers; asserts equal; returns etcd's."""
        upto = self.current_revision()
        out = []
        for c in (self.etcd, self.fkv):
            b = c.popen("watch", "--rev", str(start), key, *flags, "-w", "json")
            try:
                lines = b.wait_for(lambda ls: max_event_revision(ls) >= upto)
            finally:
                b.stop()
            out.append(c.json("\n".join(lines)))
        assert out[1] == out[0], f"history of {key} {flags}\netcd:   {out[0]}\nfastkv: {out[1]}"
        return out[0]
