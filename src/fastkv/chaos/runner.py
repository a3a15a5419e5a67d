"""One chaos run end to end: launch (or reach) a cluster, run the workload while faults fire,
heal, read back, check, and return the verdict. Everything started here is stopped in `finally`."""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc

from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc
from fastkv.chaos import linearize, synth
from fastkv.chaos.cluster import TARGETS, ClusterError
from fastkv.chaos.faults import Injector, plan
from fastkv.chaos.kinds import ALL_KINDS, FASTKV_ONLY, NEEDS_PEERS
from fastkv.chaos.history import GET, save_jsonl
from fastkv.chaos.netfault import PeerProxies
from fastkv.chaos.watchcheck import check_watches
from fastkv.chaos.workload import Client, Recorder, Watcher, WorkloadConfig, channel
from fastkv.client._channel import parse_endpoint, prefix_range_end


@dataclass
class RunConfig:
    target: str = "etcd"
    members: int = 3
    duration: float = 60.0
    seed: int = 7
    endpoints: list[str] | None = None
    faults: list[str] = field(default_factory=lambda: list(ALL_KINDS))
    clients: int = 8
    keys: int = 4
    watchers: int = 2
    out_dir: str = "chaos-out"
    check_time_limit: float = 120.0
    corrupt_history: bool = False
    keep_data: bool = False
    progress: bool = True


@dataclass
class Verdict:
    seed: int
    target: str
    members: int
    duration: float
    ops: int = 0
    ok: int = 0
    unknown: int = 0
    failed_reads: int = 0
    faults: dict = field(default_factory=dict)
    fault_errors: list = field(default_factory=list)
    linearizable: bool | None = None
    check_seconds: float = 0.0
    violation_keys: list = field(default_factory=list)
    failing_history: list = field(default_factory=list)
    failing_note: str = ""
    durable_acked: int = 0
    lost_writes: list = field(default_factory=list)
    watch_ok: bool | None = None
    watch_events: int = 0
    watch_resumes: int = 0
    watch_issues: list = field(default_factory=list)
    converged: bool | None = None
    convergence: str = ""
    recovery_seconds: list = field(default_factory=list)
    history_path: str = ""
    report_path: str = ""
    corrupted_op: str = ""
    final_revision: int = 0
    error: str = ""

    @property
    def clean(self) -> bool:
        return (not self.error and self.linearizable is True and not self.lost_writes
                and self.watch_ok is True and self.converged is not False)

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["clean"] = self.clean
        return d


class _Progress:
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        if not self.cfg.progress:
            return
        now = time.monotonic()
        if self.tty:
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()
        elif force or now - self.last > 5:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            self.last = now

    def done(self) -> None:
        if self.cfg.progress and self.tty:
            sys.stderr.write("\n")


async def _unary(endpoint: str, method: str, request, timeout: float = 2.0):
    ch = channel(endpoint)
    try:
        stub = (rpc_pb2_grpc.KVStub if method in ("Range", "Put") else
                rpc_pb2_grpc.ClusterStub if method == "MemberList" else rpc_pb2_grpc.MaintenanceStub)(ch)
        return await getattr(stub, method)(request, timeout=timeout)
    finally:
        await ch.close()


async def _until(fn, deadline: float, pause: float = 0.2):
    """Call async fn until it returns a truthy value or the deadline passes (then returns None)."""
    while time.monotonic() < deadline:
        try:
            out = await fn()
            if out:
                return out
        except (grpc.aio.AioRpcError, asyncio.TimeoutError, OSError):
            pass  # not up yet: ask again
        await asyncio.sleep(pause)
    return None


async def run(cfg: RunConfig) -> Verdict:
    v = Verdict(cfg.seed, cfg.target if not cfg.endpoints else "endpoints", cfg.members, cfg.duration)
    prog = _Progress(cfg)
    base = tempfile.mkdtemp(prefix=f"fastkv-chaos-{cfg.seed}-")
    cluster = proxies = None
    rec = Recorder()
    watchers: list[Watcher] = []
    clients: list[Client] = []
    injector = None
    faults = list(cfg.faults)
    try:
        if cfg.endpoints:
            endpoints = [parse_endpoint(e) for e in cfg.endpoints]
            faults = []
            prefix = f"fastkv-chaos/{cfg.seed}-{int(time.time())}/"
        else:
            if cfg.members == 1:
                faults = [k for k in faults if k not in NEEDS_PEERS]
            if cfg.target != "fastkv":
                faults = [k for k in faults if k not in FASTKV_ONLY]
            cls = TARGETS[cfg.target]
            cluster = cls(base, cfg.members, proxied=any(k in ("partition", "oneway") for k in faults))
            if any(m.peer_port != m.advertised_peer_port for m in cluster.members):
                proxies = PeerProxies(cluster.members)
                proxies.start()
            prog.show(f"[seed {cfg.seed}] starting {cfg.members} {cfg.target} member(s) in {base}", True)
            cluster.start()
            endpoints = cluster.endpoints()
            prefix = "chaos/"
        ready = await _until(lambda: _unary(endpoints[0], "Put", rpc_pb2.PutRequest(key=b"fastkv-chaos-ready", value=b"1")),
                             time.monotonic() + 60)
        if ready is None:
            raise ClusterError("the cluster accepted no write within 60 s")
        ids = {}
        if cluster is not None:
            ml = await _until(lambda: _unary(endpoints[0], "MemberList", rpc_pb2.MemberListRequest()),
                              time.monotonic() + 30)
            ids = {m.ID: m.name for m in ml.members}
            if proxies is not None:
                proxies.set_member_ids(ids)
        start_rev = ready.header.revision + 1

        wcfg = WorkloadConfig(clients=cfg.clients, keys=cfg.keys, watchers=cfg.watchers, prefix=prefix)
        stop_clients, stop_watchers, stop_faults = asyncio.Event(), asyncio.Event(), asyncio.Event()
        watchers = [Watcher(i, endpoints, prefix, start_rev) for i in range(cfg.watchers)]
        wtasks = [asyncio.create_task(w.run(stop_watchers)) for w in watchers]
        for w in watchers:
            try:
                await asyncio.wait_for(w.connected.wait(), 15)
            except asyncio.TimeoutError:
                raise ClusterError("a watcher could not start within 15 s") from None
        rng = random.Random(f"workload-{cfg.seed}")
        clients = [Client(i, endpoints[i % len(endpoints)], wcfg, rec, random.Random(rng.random()))
                   for i in range(cfg.clients)]
        t0 = time.monotonic()
        ctasks = [asyncio.create_task(c.run(stop_clients)) for c in clients]
        schedule = plan(cfg.seed, cfg.duration, faults) if cluster is not None else []
        ftask = None
        if cluster is not None:
            injector = Injector(cluster, proxies, ids)
            ftask = asyncio.create_task(injector.run(schedule, t0, stop_faults))
        while time.monotonic() - t0 < cfg.duration:
            await asyncio.sleep(0.5)
            n = len(rec.ops)
            unk = sum(1 for o in rec.ops[-2000:] if o.unknown)
            last = injector.events[-1] if injector and injector.events else None
            fault = f" | fault {len(injector.events)}: {last.kind} {last.member}" if last else ""
            prog.show(f"[seed {cfg.seed}] {time.monotonic() - t0:5.1f}/{cfg.duration:.0f}s ops {n} "
                      f"(unknown in last 2000: {unk}){fault}")
        stop_faults.set()
        if ftask is not None:
            await ftask
        stop_clients.set()
        await asyncio.gather(*ctasks)
        if injector is not None:
            await injector.heal_all()
        prog.show(f"[seed {cfg.seed}] workload done: {len(rec.ops)} ops; healing and reading back", True)

        # every member answers a linearizable read again
        heal_deadline = time.monotonic() + 60
        finals = []
        for ep in endpoints:
            r = await _until(lambda ep=ep: _unary(ep, "Range", rpc_pb2.RangeRequest(key=b"fastkv-chaos-ready")),
                             heal_deadline)
            if r is None:
                raise ClusterError(f"member {ep} did not answer a linearizable read within 60 s after healing")
            finals.append(r.header.revision)
        final_rev = max(finals)
        rec.final_revision = final_rev
        v.final_revision = final_rev
        caught = await asyncio.gather(*(w.catch_up(final_rev, time.monotonic() + 30) for w in watchers))
        stop_watchers.set()
        for t in wtasks:
            t.cancel()
        await asyncio.gather(*wtasks, return_exceptions=True)

        # durability: every acknowledged fresh key is on every member
        v.durable_acked = len(rec.durable_keys)
        dprefix = f"{prefix}d/".encode()
        lost = set()
        for ep in endpoints:
            r = await _until(lambda ep=ep: _unary(ep, "Range", rpc_pb2.RangeRequest(
                key=dprefix, range_end=prefix_range_end(dprefix), serializable=True), timeout=10), heal_deadline)
            have = {kv.key.decode(): kv.value.decode() for kv in r.kvs} if r else {}
            for k, val in rec.durable_keys.items():
                if have.get(k) != val:
                    lost.add(f"{k} missing on {ep}")
        v.lost_writes = sorted(lost)[:50]

        if cluster is not None and len(endpoints) > 1:
            v.converged, v.convergence = await _converged(endpoints, time.monotonic() + 30)
        else:
            v.converged, v.convergence = None, "one member"
        v.watch_resumes = sum(w.record.resumes for w in watchers)
        if not all(caught):
            v.convergence += f"; {caught.count(False)} watcher(s) never confirmed progress"
    except (ClusterError, OSError) as exc:
        v.error = str(exc)
    finally:
        prog.done()
        for c in clients:
            await c.close()
        if cluster is not None:
            cluster.stop()
        if proxies is not None:
            proxies.stop()
        if not cfg.keep_data:
            shutil.rmtree(base, ignore_errors=True)

    _judge(v, cfg, rec, watchers, injector)
    return v


async def _converged(endpoints, deadline) -> tuple[bool, str]:
    last = ""
    while time.monotonic() < deadline:
        try:
            revs = [(await _unary(ep, "Status", rpc_pb2.StatusRequest())).header.revision for ep in endpoints]
            if len(set(revs)) == 1:
                hashes = [(await _unary(ep, "HashKV", rpc_pb2.HashKVRequest(revision=revs[0]), 10)).hash
                          for ep in endpoints]
                if len(set(hashes)) == 1:
                    return True, f"revision {revs[0]}, HashKV {hashes[0]:#x} on all {len(endpoints)}"
                last = f"revision {revs[0]} but HashKV differs: {[hex(h) for h in hashes]}"
            else:
                last = f"revisions differ: {revs}"
        except (grpc.aio.AioRpcError, asyncio.TimeoutError) as exc:
            last = f"{type(exc).__name__}"
        await asyncio.sleep(0.5)
    return False, last


def _judge(v: Verdict, cfg: RunConfig, rec: Recorder, watchers, injector) -> None:
    ops = rec.ops
    v.ops = len(ops)
    v.unknown = sum(1 for o in ops if o.unknown and o.kind != GET)
    v.failed_reads = sum(1 for o in ops if o.unknown and o.kind == GET)
    v.ok = v.ops - v.unknown - v.failed_reads
    events = injector.events if injector else []
    v.faults = dict(Counter(e.kind + ("(leader)" if e.was_leader else "") for e in events))
    v.fault_errors = [f"{e.kind} {e.member}: {e.error}" for e in events if e.error]
    for e in events:
        if e.was_leader and e.kind in ("kill", "pause", "partition", "transfer"):
            after = [o.ret - e.start for o in ops
                     if o.kind != GET and not o.unknown and o.call >= e.start]
            v.recovery_seconds.append(round(min(after), 3) if after else None)
    if cfg.corrupt_history:
        changed = synth.plant_stale_read(ops, random.Random(cfg.seed))
        v.corrupted_op = changed.describe() if changed else "no stale read could be planted"
    res = linearize.check(ops, time_limit=cfg.check_time_limit)
    v.linearizable, v.check_seconds = res.linearizable, round(res.elapsed, 3)
    v.violation_keys = [k.key for k in res.violations]
    if res.violations:
        bad = res.violations[0]
        v.failing_history = [o.describe() for o in bad.failing]
        v.failing_note = bad.failing_note
    if watchers:
        final = getattr(rec, "final_revision", None)
        wres = check_watches(ops, [w.record for w in watchers], final_revision=final)
        v.watch_ok, v.watch_events = wres.ok, wres.events
        v.watch_issues = [f"watcher {i.watcher}: {i.kind}: {i.detail}" for i in wres.issues]
    os.makedirs(cfg.out_dir, exist_ok=True)
    path = os.path.join(cfg.out_dir, f"history-{v.target}-seed{cfg.seed}.jsonl")
    records = [{"type": "run", **{k: val for k, val in v.to_json().items() if k not in ("failing_history",)}}]
    records += [{"type": "op", **o.to_json()} for o in ops]
    records += [{"type": "watch", **w.record.to_json()} for w in watchers]
    records += [{"type": "fault", **e.to_json()} for e in events]
    save_jsonl(path, records)
    v.history_path = path
    if res.violations:
        from fastkv.chaos.report import write_timeline
        bad = res.violations[0]
        key_ops = [o for o in ops if o.key == bad.key]
        v.report_path = write_timeline(os.path.join(cfg.out_dir, f"violation-{v.target}-seed{cfg.seed}.html"),
                                       bad, key_ops, events, v)
