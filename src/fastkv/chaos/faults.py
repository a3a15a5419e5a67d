"""Faults on a schedule drawn from a seed, and the injector that applies and undoes them.

The schedule (kinds, targets "leader"/"random member", start offsets, hold times) is a pure
function of the seed; which member "leader" names is found when the fault fires. One fault is
active at a time; each is undone after its hold time, and the last one is undone before the
workload ends, so the cluster must heal while clients still run.

Kinds:
  kill       SIGKILL a member, restart it with the same flags and data dir
  pause      SIGSTOP a member (a long GC pause), SIGCONT it
  partition  isolate a member from all others (both directions)
  oneway     drop everything one member sends to one other (one-way loss)
  transfer   move leadership to another member (Maintenance.MoveLeader)
  membership remove a follower (MemberRemove; it shuts itself down), then add it back with an
             empty data dir (MemberAdd, restarted with --initial-cluster-state existing)
  slowdisk   (fastkv only) every WAL save and backend commit of a member waits 200 ms, through
             fastkv's failpoints switched on and off while it runs
Partitions need more than one member and a cluster launched with peer proxies.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import grpc

from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc
from fastkv.chaos.netfault import isolate

SLOW_DISK = "raft.wal_save.before=sleep(200);backend.commit.before=sleep(200)"


@dataclass
class PlannedFault:
    at: float        # seconds after the workload started
    kind: str
    target: str      # "leader" or "member"
    pick: int        # random draw resolving "member" (and the other end of a one-way loss)
    hold: float


@dataclass
class FaultEvent:
    kind: str
    member: str
    was_leader: bool
    start: float      # monotonic
    end: float = 0.0
    detail: str = ""
    error: str = ""

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def plan(seed: int, duration: float, kinds: list[str], *, warmup: float = 1.0,
         quiet_tail: float | None = None) -> list[PlannedFault]:
    """The seeded schedule: faults from `warmup` until `duration - quiet_tail`."""
    rng = random.Random(f"faults-{seed}")
    if quiet_tail is None:
        quiet_tail = max(2.0, duration * 0.2)
    out = []
    t = warmup
    end = duration - quiet_tail
    while kinds:
        t += rng.uniform(0.3, 1.5)
        hold = rng.uniform(0.5, 3.0)
        if t + hold > end:
            break
        out.append(PlannedFault(t, rng.choice(kinds), rng.choice(("leader", "member")),
                                rng.randrange(1 << 30), hold))
        t += hold
    return out


async def member_status(endpoint: str, timeout: float = 1.0):
    ch = grpc.aio.insecure_channel(endpoint)
    try:
        return await rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=timeout)
    finally:
        await ch.close()


async def find_leader(cluster, ids: dict[int, str]) -> int | None:
    """Index of the member most reachable members name as leader, or None."""
    votes: dict[int, int] = {}
    for i, m in enumerate(cluster.members):
        if not m.running or m.paused:
            continue
        try:
            st = await member_status(m.endpoint)
        except (grpc.aio.AioRpcError, asyncio.TimeoutError):
            continue
        if st.leader:
            votes[st.leader] = votes.get(st.leader, 0) + 1
    if not votes:
        return None
    leader_id = max(votes, key=votes.get)
    name = ids.get(leader_id)
    for i, m in enumerate(cluster.members):
        if m.name == name:
            return i
    return None


@dataclass
class Injector:
    cluster: object
    proxies: object | None
    ids: dict[int, str]
    events: list[FaultEvent] = field(default_factory=list)
    _active: tuple | None = None
    _removed: int | None = None  # member removed and not yet added back

    async def run(self, schedule: list[PlannedFault], t0: float, stop: asyncio.Event) -> None:
        for f in schedule:
            delay = t0 + f.at - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return
                except asyncio.TimeoutError:
                    pass
            if stop.is_set():
                return
            await self.apply(f)
            try:
                await asyncio.wait_for(stop.wait(), f.hold)
            except asyncio.TimeoutError:
                pass
            await self.undo()

    async def apply(self, f: PlannedFault) -> None:
        n = len(self.cluster.members)
        leader = await find_leader(self.cluster, self.ids)
        if f.target == "leader" and leader is not None:
            idx = leader
        else:
            idx = f.pick % n
        m = self.cluster.members[idx]
        ev = FaultEvent(f.kind, m.name, idx == leader, time.monotonic())
        self.events.append(ev)
        self._active = (f, idx, ev)
        try:
            if f.kind == "kill":
                await asyncio.to_thread(self.cluster.kill, idx)
            elif f.kind == "pause":
                self.cluster.pause(idx)
            elif f.kind == "partition":
                self.proxies.block(isolate(m.name, [x.name for x in self.cluster.members]))
            elif f.kind == "oneway":
                other = self.cluster.members[(idx + 1 + (f.pick >> 8) % (n - 1)) % n].name
                ev.detail = f"{m.name} -> {other} dropped"
                self.proxies.block({(m.name, other)})
            elif f.kind == "transfer":
                await self._transfer(leader, f.pick)
                ev.end = time.monotonic()
            elif f.kind == "membership":
                await self._remove(leader, f.pick)
            elif f.kind == "slowdisk":
                self.cluster.set_failpoints(idx, SLOW_DISK)
        except Exception as exc:  # noqa: BLE001 - a fault that could not be applied is reported
            ev.error = f"{type(exc).__name__}: {exc}"

    async def _transfer(self, leader: int | None, pick: int) -> None:
        if leader is None:
            raise RuntimeError("no leader to transfer from")
        n = len(self.cluster.members)
        target = (leader + 1 + pick % (n - 1)) % n
        target_id = next(i for i, name in self.ids.items() if name == self.cluster.members[target].name)
        ev = self.events[-1]
        ev.member, ev.was_leader = self.cluster.members[leader].name, True
        ev.detail = f"to {self.cluster.members[target].name}"
        ch = grpc.aio.insecure_channel(self.cluster.members[leader].endpoint)
        try:
            await rpc_pb2_grpc.MaintenanceStub(ch).MoveLeader(rpc_pb2.MoveLeaderRequest(targetID=target_id),
                                                             timeout=5.0)
        finally:
            await ch.close()

    def _id_of(self, name: str) -> int:
        return next(i for i, n in self.ids.items() if n == name)

    async def _cluster_call(self, method: str, request, exclude: int | None = None, timeout: float = 5.0):
        """Send a Cluster RPC to the first member that answers."""
        last = None
        for i, m in enumerate(self.cluster.members):
            if i == exclude or not m.running or m.paused:
                continue
            ch = grpc.aio.insecure_channel(m.endpoint)
            try:
                return await getattr(rpc_pb2_grpc.ClusterStub(ch), method)(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                last = exc
            finally:
                await ch.close()
        raise RuntimeError(f"{method} failed on every member: {last.details() if last else 'none running'}")

    async def _remove(self, leader: int | None, pick: int) -> None:
        n = len(self.cluster.members)
        # a follower: removing the leader is legal, but then the fault is mostly a leader loss
        idx = (pick % (n - 1) + (leader if leader is not None else 0) + 1) % n
        m = self.cluster.members[idx]
        ev = self.events[-1]
        ev.member, ev.was_leader = m.name, idx == leader
        # etcd refuses ("unhealthy cluster") until every remaining member has been connected to the
        # leader for a while, e.g. shortly after a restart: retry for a few seconds
        deadline = time.monotonic() + 8
        while True:
            try:
                await self._cluster_call("MemberRemove", rpc_pb2.MemberRemoveRequest(ID=self._id_of(m.name)),
                                         exclude=idx)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        self._removed = idx
        # a removed etcd member stops itself; make sure it is gone before it is added back
        deadline = time.monotonic() + 5
        while m.running and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if m.running:
            await asyncio.to_thread(self.cluster.kill, idx)

    async def _readd(self) -> None:
        idx = self._removed
        m = self.cluster.members[idx]
        url = f"http://127.0.0.1:{m.advertised_peer_port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                resp = await self._cluster_call("MemberAdd", rpc_pb2.MemberAddRequest(peerURLs=[url]), exclude=idx)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        self._removed = None
        self.ids = {i: n for i, n in self.ids.items() if n != m.name}
        self.ids[resp.member.ID] = m.name
        if self.proxies is not None and self.proxies.proc is not None:
            self.proxies.set_member_ids(self.ids)
        initial = ",".join(f"{x.name or m.name}={x.peerURLs[0]}" for x in resp.members)
        self.cluster.rejoin(idx, initial)

    async def undo(self) -> None:
        active = getattr(self, "_active", None)
        if active is None:
            return
        f, idx, ev = active
        self._active = None
        try:
            if f.kind == "kill":
                self.cluster.restart(idx)
            elif f.kind == "pause":
                self.cluster.resume(idx)
            elif f.kind in ("partition", "oneway"):
                self.proxies.heal()
            elif f.kind == "membership" and self._removed is not None:
                await self._readd()
            elif f.kind == "slowdisk":
                self.cluster.set_failpoints(idx, "")
        except Exception as exc:  # noqa: BLE001
            ev.error = (ev.error + "; " if ev.error else "") + f"undo: {type(exc).__name__}: {exc}"
        if not ev.end:
            ev.end = time.monotonic()

    async def heal_all(self) -> None:
        """Whatever happened: every member running and resumed, no partition, full membership."""
        if self._removed is not None:
            try:
                await self._readd()
            except Exception as exc:  # noqa: BLE001
                self.events[-1].error += f"; re-add at heal: {type(exc).__name__}: {exc}"
        for i, m in enumerate(self.cluster.members):
            if not m.running:
                try:
                    self.cluster.restart(i)
                except Exception:  # noqa: BLE001
                    pass
            elif m.paused:
                self.cluster.resume(i)
        if self.proxies is not None and self.proxies.proc is not None:
            self.proxies.heal()
