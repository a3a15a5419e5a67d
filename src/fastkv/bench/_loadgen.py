"""The load-generator engine behind `fastkv bench put|range|txn-put|watch|lease-keepalive`.

    from fastkv.bench._loadgen import run, default_params
    result = run({**default_params("put"), "endpoints": ["http://127.0.0.1:2379"], "total": 20000})

`run` spreads the clients over `procs` worker processes (fastkv.bench._loadgen_worker), each with
its own `conns` gRPC connections, releases them together, and merges their samples into one result
dict (the JSON object printed by --json). It is also what `fastkv bench compare` calls.
"""
from __future__ import annotations

import importlib.util
import multiprocessing
import os
import queue as queue_mod
import time
from array import array

from fastkv.bench import _loadgen_report as report
from fastkv.bench._loadgen_worker import TIMELINE_S, worker_main

UNARY = ("put", "range", "txn-put")
WORKLOADS = UNARY + ("watch", "lease-keepalive")
GENERATORS = ("python", "go")


class LoadgenError(RuntimeError):
    """The run could not start or a worker died; the message says which and why."""


def default_params(workload: str) -> dict:
    return {
        "workload": workload, "endpoints": ["http://127.0.0.1:2379"], "procs": 0, "conns": 2,
        "clients": 64, "total": 10000, "rate": 0.0, "key_size": 8, "val_size": 256,
        "key_space": 1000 if workload == "range" else 100_000, "sequential": False, "seed": 1,
        "timeout": 10.0, "consistency": "l", "txn_ops": 1, "prefill": True, "lease_ttl": 60,
        "watchers": 100, "streams": 10, "puts": 200, "put_rate": 100.0, "loop": _default_loop(),
        "user": "",  # "NAME:PASSWORD": authenticate once per worker, send its token with every call
        "tls": None,  # {"ca", "cert", "key"}: file paths for https:// endpoints (bench compare --tls)
        "generator": "python",  # or "go": workers on etcd's Go client (fastkv.bench._goload)
    }


def _default_loop() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def validate(p: dict) -> None:
    wl = p["workload"]
    if wl not in WORKLOADS:
        raise ValueError(f"unknown workload {wl!r}; one of {', '.join(WORKLOADS)}")
    for name in ("conns", "key_size", "key_space"):
        if p[name] < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
    if wl == "watch":
        if p["watchers"] < 1 or p["puts"] < 1 or p["put_rate"] <= 0:
            raise ValueError("watch needs --watchers >= 1, --puts >= 1 and --put-rate > 0")
        if p["val_size"] < 8:
            raise ValueError("watch needs --val-size >= 8 (the value carries the send timestamp)")
    elif p["clients"] < 1 or p["total"] < 1:
        raise ValueError("--clients and --total must be >= 1")
    if len(str(p["key_space"] - 1)) > p["key_size"]:
        raise ValueError(f"--key-size {p['key_size']} is too short for --key-space-size {p['key_space']} "
                         f"(keys are zero-padded decimals; need {len(str(p['key_space'] - 1))} bytes)")
    if wl == "txn-put" and not 1 <= p["txn_ops"] <= min(128, p["key_space"]):
        raise ValueError("--txn-ops must be in 1..min(128, --key-space-size) (etcd allows 128 ops per txn)")
    if p.get("loop", "asyncio") not in ("asyncio", "uvloop"):
        raise ValueError("--loop must be asyncio or uvloop")
    if p["rate"] < 0:
        raise ValueError("--rate must be >= 0 (0 = closed loop)")
    generator = p.get("generator", "python")
    if generator not in GENERATORS:
        raise ValueError(f"--generator must be one of {', '.join(GENERATORS)}")
    if generator == "go":
        from fastkv.bench import _goload

        _goload.check(p)


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def plan(p: dict) -> list[dict]:
    """Per-worker parameter dicts. Shares are as even as possible; each worker's open-loop rate is
    proportional to its share of requests so that all workers finish together."""
    if p["workload"] == "watch":
        units = p["watchers"]
    else:
        units = p["clients"]
    procs = p["procs"] or min(os.cpu_count() or 1, 4)
    procs = max(1, min(procs, units))
    clients = _split(p["clients"], procs)
    totals = _split(p["total"], procs)
    watchers = _split(p["watchers"], procs)
    streams = _split(max(p["streams"], procs), procs)
    out = []
    for w in range(procs):
        q = dict(p, worker=w, procs=procs, clients=clients[w], total=totals[w], watchers=watchers[w],
                 streams=streams[w])
        q["rate"] = p["rate"] * totals[w] / p["total"] if p["rate"] else 0.0
        out.append(q)
    return out


def expected_requests(shares: list) -> int:
    return sum(s["watchers"] * s["puts"] if s["workload"] == "watch" else s["total"] for s in shares)


def run_deadline(p: dict, shares: list) -> float:
    """When a run whose workers just got `go` must have finished (monotonic clock): the time its
    rate needs, plus a minute and ten request timeouts of slack."""
    expected = expected_requests(shares)
    longest = expected / p["rate"] if p["rate"] else 0.0
    if p["workload"] == "watch":
        longest = p["puts"] / p["put_rate"]
    return time.monotonic() + longest + 60 + 10 * p["timeout"]


def _cpu_of(pids) -> float | None:
    if not pids:
        return None
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            return None
    return total


def run(p: dict, *, progress=None, server_pids=(), start_timeout: float = 60.0) -> dict:
    """Run one workload; returns the merged result (see module doc). `progress` is an optional
    object with update(done)/close() (fastkv.bench._common.Progress); `server_pids` lets the
    result include the server's CPU time over the run."""
    validate(p)
    shares = plan(p)
    marks = {}

    def before_go():
        marks["server_cpu0"] = _cpu_of(server_pids)
        marks["load_before"] = os.getloadavg()[0]

    def after_run():  # as soon as the last result is in
        marks["server_cpu1"] = _cpu_of(server_pids)

    if p.get("generator", "python") == "go":
        from fastkv.bench import _goload

        try:
            results, t_go = _goload.run_workers(p, shares, progress=progress, before_go=before_go,
                                                after_run=after_run, start_timeout=start_timeout,
                                                error_cls=LoadgenError)
        except _goload.GoloadUnavailable as exc:
            raise LoadgenError(str(exc)) from None
        expected = expected_requests(shares)
    else:
        results, t_go, expected = _run_python_workers(p, shares, progress, before_go, after_run, start_timeout)
    if progress is not None:
        progress.update(expected)
        progress.close()
    server_cpu0, server_cpu1, load_before = marks["server_cpu0"], marks["server_cpu1"], marks["load_before"]
    r = merge(p, shares, [results[w] for w in sorted(results)], expected)
    r["generator"] = p.get("generator", "python")
    r["start_delay_s"] = round(min(x["t0"] for x in results.values()) - t_go, 4)
    # Other processes on the machine compete for the same CPUs; say how busy it was.
    r["loadavg_1m_before"], r["loadavg_1m_after"] = round(load_before, 2), round(os.getloadavg()[0], 2)
    if server_cpu0 is not None and server_cpu1 is not None:
        r["server_cpu_s"] = server_cpu1 - server_cpu0
        r["server_cpu_cores"] = r["server_cpu_s"] / r["elapsed_s"] if r["elapsed_s"] else 0.0
        # CPU per operation is the server-efficiency figure least disturbed by a busy machine.
        r["server_cpu_us_per_op"] = 1e6 * r["server_cpu_s"] / r["ok"] if r["ok"] else None
    return r


def _run_python_workers(p: dict, shares: list[dict], progress, before_go, after_run, start_timeout: float):
    """The multiprocessing workers (fastkv.bench._loadgen_worker): (results by worker, t_go, expected)."""
    ctx = multiprocessing.get_context("spawn")  # gRPC's threads do not survive fork()
    q = ctx.Queue()
    go = ctx.Event()
    counts = ctx.Array("q", len(shares), lock=False)
    procs = [ctx.Process(target=worker_main, args=(s, q, go, counts), daemon=True) for s in shares]
    for proc in procs:
        proc.start()
    results: dict[int, dict] = {}
    try:
        ready = 0
        deadline = time.monotonic() + start_timeout
        while ready < len(procs):
            kind, w, payload = _get(q, deadline, procs, "workers did not get ready")
            if kind == "error":
                raise LoadgenError(f"worker {w} failed while connecting/preparing: {payload}")
            if kind == "ready":
                ready += 1
        before_go()
        t_go = time.monotonic()
        go.set()
        expected = expected_requests(shares)
        deadline = run_deadline(p, shares)
        while len(results) < len(procs):
            try:
                kind, w, payload = q.get(timeout=0.1)
            except queue_mod.Empty:
                if progress is not None:
                    progress.update(sum(counts))
                _check_alive(procs, results, deadline)
                continue
            if kind == "error":
                raise LoadgenError(f"worker {w} failed during the run: {payload}")
            if kind == "result":
                results[w] = payload
        after_run()
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
    return results, t_go, expected


def _get(q, deadline, procs, what):
    while True:
        try:
            return q.get(timeout=0.1)
        except queue_mod.Empty:
            _check_alive(procs, {}, deadline, what)


def _check_alive(procs, results, deadline, what="the run did not finish in time") -> None:
    for w, proc in enumerate(procs):
        if w not in results and not proc.is_alive() and proc.exitcode not in (None, 0):
            raise LoadgenError(f"worker {w} exited with code {proc.exitcode}")
    if time.monotonic() > deadline:
        raise LoadgenError(what)


def merge(p: dict, shares: list[dict], parts: list[dict], expected: int) -> dict:
    lat = array("d")
    errors: dict[str, int] = {}
    samples: dict[str, str] = {}
    for part in parts:
        lat.frombytes(part["lat"])
        for code, n in part["errors"].items():
            errors[code] = errors.get(code, 0) + n
        for code, s in part["samples"].items():
            samples.setdefault(code, s)
    t0 = min(x["t0"] for x in parts)
    t_end = max(x["t_end"] for x in parts)
    elapsed = max(t_end - t0, 1e-9)
    buckets: list[int] = []
    for part in parts:
        off = int(round((part["t0"] - t0) / TIMELINE_S))
        for i, c in enumerate(part["timeline"]):
            while len(buckets) <= off + i:
                buckets.append(0)
            buckets[off + i] += c
    ok = sum(x["ok"] for x in parts)
    sorted_lat = sorted(lat)
    cpu_s = sum(x["cpu_s"] for x in parts)
    cpus = os.cpu_count() or 1
    done = ok + sum(errors.values())
    per_req = cpu_s / done if done else 0.0
    r = {
        "workload": p["workload"], "endpoints": list(p["endpoints"]), "procs": len(shares),
        "conns": p["conns"], "clients": p["clients"], "requests": expected, "ok": ok,
        "errors": errors, "errors_total": sum(errors.values()), "error_samples": samples,
        "elapsed_s": elapsed, "rps": ok / elapsed, "rate": p["rate"],
        **report.latency_summary(sorted_lat),
        "histogram": report.histogram(sorted_lat),
        "histogram_fine": report.histogram(sorted_lat, buckets=48),  # for --plot
        "timeline": {"interval_s": TIMELINE_S, "rps": [c / TIMELINE_S for c in buckets]},
        "client_cpu_s": cpu_s, "client_cpu_cores": cpu_s / elapsed, "cpus": cpus,
        "client_cpu_us_per_req": 1e6 * per_req,
        "generator_ceiling_rps": cpus / per_req if per_req else 0.0,
        "params": {k: v for k, v in p.items() if k not in ("endpoints",)},
    }
    if p["workload"] == "watch":
        put_lat = array("d")
        for part in parts:
            put_lat.frombytes(part.get("put_lat", b""))
        put_sorted = sorted(put_lat)
        r["unit"] = "event"
        r["clients"] = p["watchers"]
        r["latency_note"] = (f"latency = put sent -> event received by one watcher; {p['watchers']} watchers, "
                             f"{p['puts']} puts at {p['put_rate']:g}/s; put p50 "
                             f"{1e3 * report.percentile(put_sorted, 50):.3f} ms, p99 "
                             f"{1e3 * report.percentile(put_sorted, 99):.3f} ms")
        r["put_p50_ms"] = 1e3 * report.percentile(put_sorted, 50)
        r["put_p99_ms"] = 1e3 * report.percentile(put_sorted, 99)
    return r
