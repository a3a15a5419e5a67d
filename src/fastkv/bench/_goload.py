"""`--generator go`: the load-generator workers as Go processes on etcd 3.4's own client library.

The worker program (fastkv/bench/goload/main.go) sends put, range and txn-put through
go.etcd.io/etcd/clientv3, the client etcd's tools/benchmark uses, so a comparison is not limited
by a Python generator. It is built on first use in GOPATH mode from Debian's packages only
(golang-go, and golang-etcd-server-dev with the Go sources it depends on under /usr/share/gocode):
no module download. The binary is cached under ~/.cache/fastkv-goload by a hash of the source and
the Go version, with Go's build cache beside it.

`run_workers` is the Go counterpart of the multiprocessing workers in fastkv.bench._loadgen: the
same per-worker shares in, the same per-worker result dicts out (see main.go for the line protocol).
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import queue as queue_mod
import shutil
import subprocess
import threading
import time
from pathlib import Path

SOURCE_DIR = Path(__file__).parent / "goload"
GOPATH = Path("/usr/share/gocode")
INSTALL_HINT = "apt-get install -y golang-go golang-etcd-server-dev"
WORKLOADS = ("put", "range", "txn-put")
BUILD_TIMEOUT_S = 900


class GoloadUnavailable(RuntimeError):
    """Go or etcd's Go source is missing, or the worker does not build; the message says what to install."""


def cache_dir(name: str) -> Path:
    """~/.cache/<name> (or under XDG_CACHE_HOME), created."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / name
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive lock on `path` (a file) while filling a cache, so parallel first runs
    wait for one build."""
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_env(root: Path) -> dict:
    return dict(os.environ, GO111MODULE="off", GOPATH=str(GOPATH), GOFLAGS="", GOPROXY="off",
                GOCACHE=str(root / "gocache"), CGO_ENABLED="0")


def build_clientv3_program(source_dir: Path, cache_name: str, what: str) -> Path:
    """Build the Go program in `source_dir` (it imports etcd's clientv3) in GOPATH mode from
    Debian's packages, cached under ~/.cache/<cache_name> by a hash of its source and of the Go
    version; returns the binary. Raises GoloadUnavailable saying what to install. `what` names the
    program in those messages."""
    go = shutil.which("go")
    if go is None:
        raise GoloadUnavailable(f"{what} needs the Go toolchain (`go` is not on PATH); install it with: "
                                f"{INSTALL_HINT}")
    if not (GOPATH / "src/go.etcd.io/etcd/clientv3").is_dir():
        raise GoloadUnavailable(f"{what} needs etcd's Go client source under {GOPATH}/src/go.etcd.io/etcd; "
                                f"install it with: {INSTALL_HINT}")
    if not (source_dir / "main.go").is_file():
        raise GoloadUnavailable(f"the Go source {source_dir / 'main.go'} is missing from this installation")
    root = cache_dir(cache_name)
    env = build_env(root)
    version = subprocess.run([go, "version"], capture_output=True, text=True, env=env, check=True).stdout
    digest = hashlib.sha256(version.encode())
    for path in sorted(source_dir.glob("*.go")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    exe = root / f"{source_dir.name}-{digest.hexdigest()[:16]}"
    with locked(root / ".lock"):
        if not exe.exists():
            partial = exe.with_suffix(".partial")
            proc = subprocess.run([go, "build", "-o", str(partial), "."], cwd=source_dir, env=env,
                                  capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
            if proc.returncode != 0:
                raise GoloadUnavailable(f"go build of {source_dir} failed (GOPATH mode on {GOPATH}; the packages "
                                        f"are: {INSTALL_HINT}):\n{proc.stderr[-4000:]}")
            partial.rename(exe)
    return exe


def binary() -> Path:
    """The path of the built worker, building it first when the source or Go changed."""
    return build_clientv3_program(SOURCE_DIR, "fastkv-goload", "--generator go")


def check(p: dict) -> None:
    """Refuse what the Go worker does not do, before anything starts."""
    if p["workload"] not in WORKLOADS:
        raise ValueError(f"--generator go runs {', '.join(WORKLOADS)}; use --generator python for {p['workload']}")


class _Worker:
    """One Go worker process and a thread that turns its stdout lines into queue messages."""

    def __init__(self, exe: Path, share: dict, q: queue_mod.Queue):
        self.w = share["worker"]
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.stderr_tail: list[str] = []
        self.done = 0
        wanted = {k: share[k] for k in ("workload", "endpoints", "worker", "procs", "conns", "clients", "total",
                                        "rate", "key_size", "val_size", "key_space", "sequential", "seed",
                                        "timeout", "consistency", "txn_ops", "prefill", "user", "tls")}
        self.proc.stdin.write(json.dumps(wanted) + "\n")
        self.proc.stdin.flush()
        threading.Thread(target=self._read, args=(q,), daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _read(self, q) -> None:
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            kind = msg.pop("kind", "")
            if kind == "progress":
                self.done = msg["done"]
            elif kind == "error":
                q.put(("error", self.w, msg.get("message", "")))
            elif kind == "result":
                msg["lat"] = base64.b64decode(msg["lat"])
                q.put(("result", self.w, msg))
            elif kind == "ready":
                q.put(("ready", self.w, None))
        q.put(("eof", self.w, None))

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_tail = (self.stderr_tail + [line.rstrip()])[-20:]

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def why(self) -> str:
        code = self.proc.poll()
        tail = "\n".join(self.stderr_tail[-10:])
        return f"Go worker {self.w} exited with code {code}" + (f"; its stderr ends:\n{tail}" if tail else "")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(Exception):
                f.close()


def run_workers(p: dict, shares: list[dict], *, progress, before_go, after_run, start_timeout: float,
                error_cls) -> tuple:
    """Start one Go worker per share, release them together once all are ready, collect their results.
    before_go() is called just before the release, after_run() as soon as every result is in.
    Returns (results by worker, the release time on time.monotonic())."""
    exe = binary()
    q: queue_mod.Queue = queue_mod.Queue()
    workers = []
    results: dict[int, dict] = {}
    try:
        for s in shares:
            workers.append(_Worker(exe, s, q))
        ready = 0
        deadline = time.monotonic() + start_timeout
        while ready < len(workers):
            kind, w, payload = _get(q, deadline, "Go workers did not get ready", error_cls)
            if kind == "error":
                raise error_cls(f"Go worker {w} failed while connecting/preparing: {payload}")
            if kind == "eof":
                raise error_cls(workers[w].why())
            if kind == "ready":
                ready += 1
        before_go()
        t_go = time.monotonic()
        for wk in workers:
            wk.go()
        from fastkv.bench._loadgen import run_deadline

        deadline = run_deadline(p, shares)
        while len(results) < len(workers):
            try:
                kind, w, payload = q.get(timeout=0.1)
            except queue_mod.Empty:
                if progress is not None:
                    progress.update(sum(wk.done for wk in workers))
                if time.monotonic() > deadline:
                    raise error_cls("the run did not finish in time") from None
                continue
            if kind == "error":
                raise error_cls(f"Go worker {w} failed during the run: {payload}")
            if kind == "eof" and w not in results:
                raise error_cls(workers[w].why())
            if kind == "result":
                results[w] = payload
        after_run()
        return results, t_go
    finally:
        for wk in workers:
            try:
                wk.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            wk.stop()


def _get(q, deadline, what, error_cls):
    while True:
        try:
            return q.get(timeout=0.1)
        except queue_mod.Empty:
            if time.monotonic() > deadline:
                raise error_cls(what) from None
