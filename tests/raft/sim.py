"""A deterministic cluster simulator: the production node driver over a seeded faulty network
and a simulated disk, with the server's real applier and KVStore (memory backend) as each member's
state machine.

Everything random comes from one `random.Random(seed)`, so a seed replays a run exactly. Each
simulated tick: maybe inject faults, tick every live node, submit client work, then deliver
messages and run every node's Ready through fastkv.server.node.NodeDriver in rounds: the same
code that orders send / persist / apply in `fastkv serve` (leader sends before its fsync,
committed entries durable here apply before it). Only the wiring is the simulator's: a durable
write may take up to `disk_delay` ticks (messages keep arriving meanwhile, as they do while
production's WAL thread fsyncs), and the disk (SimDisk) loses unsynced writes in a crash and keeps
a seeded prefix of a write a crash interrupted (the torn tail WAL repair cuts back to).

Messages cross the network encoded with the raftpb codec (as the transport will), so no two
nodes ever share a mutable object and the codec is exercised on every hop.

A crash throws the driver, RawNode and state machine away and keeps only what reached the
simulated disk: entries, hard state, and the snapshot (whose backend image the simulator keeps, as
a snapshot file keeps the backend). The restarted node is rebuilt from it, as the server is from
its WAL.

Invariants (checked every tick; a violation raises SimFailure naming the seed):
  election safety     at most one leader per term, ever;
  log matching        two logs with an entry of the same index and term agree on all entries
                      up to it;
  leader completeness a leader of term T holds every entry committed in a term < T;
  state machine safety no two members apply different entries at one index, and a restored
                      snapshot equals the state every other member had at that index;
  read index          a ReadState's index is >= the commit index when the read was requested;
  durability          after healing, every live member converges to the same state, including
                      every entry committed before (committed entries are never lost).
Liveness: after the faults stop, a leader is elected and a new entry commits on every member
within a bounded number of ticks.
"""
from __future__ import annotations

import collections
import heapq
import random
import zlib

from fastkv._native import load
from fastkv._native.raftlog_py import MemoryStorage
from fastkv.api.etcdpb import rpc_pb2
from fastkv.backend.memory_backend import MemoryBackend
from fastkv.mvcc import KVStore
from fastkv.mvcc.ops import RangeOp
from fastkv.raft import LEADER, Config, ProposalDropped, RawNode, StepPeerNotFound
from fastkv.server import request as rq
from fastkv.server.apply import Alarms, Applier
from fastkv.server.node import NodeDriver, recovered_hard_state, store_in


class SimFailure(AssertionError):
    pass


class SimOptions:
    def __init__(self, **kw):
        self.voters = 3
        self.fault_ticks = 300          # ticks with faults on
        self.liveness_ticks = 300       # bound on ticks to recover after healing
        self.election_tick = 10
        self.heartbeat_tick = 2
        self.drop = 0.05
        self.duplicate = 0.03
        self.max_delay = 2              # ticks; messages are delayed 0..max_delay
        self.partition_rate = 0.02      # per tick: start a partition (if none) / heal one
        self.crash_rate = 0.01
        self.restart_rate = 0.1
        self.propose_rate = 0.5
        self.read_rate = 0.05
        self.transfer_rate = 0.005
        self.conf_change_rate = 0.0
        self.snapshot_every = 0         # 0 = never compact
        self.snapshot_keep = 5
        self.max_inflight = 4
        self.max_size_per_msg = 256
        self.disk_delay = 2             # ticks a durable write may take (0 = at once)
        self.keys = 8                   # the key space of the client puts
        self.pure = True
        for k, v in kw.items():
            if not hasattr(self, k):
                raise TypeError(f"unknown sim option {k}")
            setattr(self, k, v)


class _NoWait:
    """The sim's proposals carry request id 0: nobody waits on their results."""

    def trigger(self, request_id, result):
        pass


class StateMachine:
    """A member's real state machine: the server's Applier over a KVStore on a memory backend."""

    def __init__(self, backend=None):
        self.backend = backend if backend is not None else MemoryBackend(batch_interval=0)
        self.kv = KVStore(self.backend)
        self.applier = Applier(self.kv, None, Alarms(self.backend), _NoWait())

    def contents(self):
        r = self.kv.range(RangeOp(b"\x00", b"\x00"))
        return self.kv.current_revision, [(kv.key, kv.value, kv.mod_revision, kv.version) for kv in r.kvs]


class SimDisk:
    """The LogStore of a simulated member. save() writes `disk`, what survives a crash; saved()
    makes it visible in `storage`, what raft reads (as WALStore does with the WAL and its
    MemoryStorage). A write without sync (a commit-only hard state) is lost in a crash unless a
    synced write followed it."""

    def __init__(self, disk: MemoryStorage | None = None):
        self.disk = disk if disk is not None else MemoryStorage()
        self.synced_hard = self.disk.hard_state()
        self.storage = _copy_storage(self.disk, self.synced_hard)

    def save(self, hard_state, entries, snapshot, must_sync: bool) -> None:
        self.write(hard_state, entries, snapshot)
        if must_sync or entries or snapshot is not None:
            self.synced_hard = self.disk.hard_state()

    def write(self, hard_state, entries, snapshot) -> None:
        store_in(self.disk, hard_state, entries, snapshot)

    def saved(self, hard_state, entries, snapshot) -> None:
        store_in(self.storage, hard_state, entries, snapshot)

    def crash(self, rng, in_flight) -> "SimDisk":
        """The disk as a restarted member finds it: unsynced writes maybe lost, and of a write the
        crash interrupted, a seeded prefix (snapshot, then entries, then hard state)."""
        if in_flight is not None:
            k = rng.randint(0, len(in_flight.entries) + 1)
            snap = in_flight.snapshot if k > 0 else None
            ents = in_flight.entries[:max(0, k - (snap is not None))]
            whole = k == len(in_flight.entries) + 1
            self.write(in_flight.hard_state if whole else None, ents, snap)
            if whole:
                self.synced_hard = self.disk.hard_state()
        hard = self.disk.hard_state() if rng.random() < 0.5 else self.synced_hard
        return SimDisk(_copy_storage(self.disk, hard))

    def create_snapshot(self, index: int, conf_state, data: bytes, keep: int) -> None:
        """A snapshot of our own applied state: recorded durably, then both logs compacted."""
        for st in (self.storage, self.disk):
            st.create_snapshot(index, conf_state, data)
            cut = index - keep
            if cut > st.first_index():
                st.compact(cut)


def _copy_storage(src: MemoryStorage, hard) -> MemoryStorage:
    st = MemoryStorage()
    snap = src.snapshot()
    if snap.metadata.index:
        st.apply_snapshot(snap)
    first, last = src.first_index(), src.last_index()
    if last >= first:
        st.append(src.entries(first, last + 1))
    st.set_hard_state(recovered_hard_state(hard, snap.metadata.index))
    return st


class SimNode:
    """One member: the node driver's sink (its state machine and read checks) and its disk."""

    def __init__(self, node_id: int, cluster: "Cluster"):
        self.id = node_id
        self.cluster = cluster
        self.disk = SimDisk()
        self.raw = None
        self.driver = None
        self.in_flight = None   # (Ready, tick its durable write completes)
        self.alive = False
        self.removed = False
        self.sm = None          # the real state machine
        self.sm_index = 0       # last applied index and a digest chain of what was applied
        self.sm_digest = 0
        self.conf_state = None
        self.reads = {}         # ctx -> commit index known when the read was issued

    @property
    def storage(self):
        return self.disk.storage

    # NodeSink
    def on_soft_state(self, was_leader, is_leader, leader):
        pass

    def apply(self, entries):
        for e in entries:
            self.cluster._apply(self, e)

    def apply_snapshot(self, snapshot):
        self.cluster._restore_sm(self, snapshot)

    def on_read_states(self, states):
        for rs in states:
            self.cluster._read_state(self, rs)

    def on_dropped(self, batch, exc):
        pass  # what a server does: the client is told there is no leader and retries


class Cluster:
    def __init__(self, seed: int, opts: SimOptions | None = None):
        self.seed = seed
        self.opts = opts = opts or SimOptions()
        self.rng = random.Random(seed)
        self.pb = load("raftpb", pure=opts.pure)
        self.now = 0
        self.seq = 0
        self.queue = []                 # heap of (deliver_at, seq, to, frm, encoded message)
        self.partition = None           # set of ids cut off from the rest, or None
        self.nodes = {}
        self.leader_of_term = {}        # term -> leader id (election safety)
        self.committed = {}             # index -> (term, type, data) first applied anywhere
        self.digest_at = {}             # index -> state machine digest after applying it
        self.commit_term = {}           # index -> lowest term in which a leader committed it
        self.max_commit = 0
        self.proposed = 0
        self.next_id = opts.voters + 1
        self.faults = True
        self.log = []                   # short trace of notable events, for failure reports
        self.stats = collections.Counter()  # what happened, so tests can tell a run did something
        self.images = {}                # snapshot index -> backend image of the state there
        for i in range(1, opts.voters + 1):
            n = self.nodes[i] = SimNode(i, self)
            self._start(n, peers=list(range(1, opts.voters + 1)))

    # --- helpers ---------------------------------------------------------------------------------
    def fail(self, what: str):
        tail = "\n  ".join(self.log[-15:])
        raise SimFailure(f"seed={self.seed} tick={self.now}: {what}\n  recent events:\n  {tail}")

    def note(self, what: str):
        self.log.append(f"t{self.now} {what}")
        if len(self.log) > 200:
            del self.log[:100]

    def _start(self, n: SimNode, peers=None):
        o = self.opts
        snap = n.storage.snapshot()
        n.sm_index = snap.metadata.index
        n.sm_digest = int(snap.data.decode()) if snap.data else 0
        n.sm = StateMachine(self.images[n.sm_index].clone(batch_interval=0) if n.sm_index else None)
        n.conf_state = snap.metadata.conf_state
        cfg = Config(id=n.id, storage=n.storage, peers=peers, election_tick=o.election_tick,
                     heartbeat_tick=o.heartbeat_tick, applied=n.sm_index,
                     max_size_per_msg=o.max_size_per_msg, max_inflight_msgs=o.max_inflight,
                     rng=random.Random(self.rng.getrandbits(32)), pure=o.pure)
        n.raw = RawNode(cfg)
        n.driver = NodeDriver(n.raw, n.disk, lambda msgs, n=n: self._send_all(n, msgs), n)
        n.in_flight = None
        n.alive = True
        n.reads = {}

    def _crash(self, n: SimNode):
        n.disk = n.disk.crash(self.rng, n.in_flight[0] if n.in_flight else None)
        n.alive = False
        n.raw = n.driver = n.sm = n.in_flight = None

    def _restart(self, n: SimNode):
        # A founding member that crashed before persisting anything bootstraps again (as a
        # server without a WAL does); everyone else is rebuilt from its disk alone.
        fresh = n.storage.last_index() == 0 and n.id <= self.opts.voters
        self._start(n, peers=list(range(1, self.opts.voters + 1)) if fresh else None)

    def live(self):
        return [n for n in self.nodes.values() if n.alive]

    def leaders(self):
        return [n for n in self.live() if n.raw.raft.state == LEADER]

    def connected(self, a: int, b: int) -> bool:
        p = self.partition
        return p is None or ((a in p) == (b in p))

    @staticmethod
    def put(key: bytes, value: bytes) -> bytes:
        """A client put as the server proposes it (request id 0: nobody waits for it)."""
        return rq.encode(0, rq.PUT, rpc_pb2.PutRequest(key=key, value=value))

    # --- network ---------------------------------------------------------------------------------
    def _send_all(self, frm: SimNode, msgs):
        for m in msgs:
            self.send(frm, m)

    def send(self, frm: SimNode, m):
        o = self.opts
        data = self.pb.encode_message(m)
        copies = 1
        if self.faults:
            if self.rng.random() < o.drop:
                copies = 0
                self.stats["dropped"] += 1
            elif self.rng.random() < o.duplicate:
                copies = 2
                self.stats["duplicated"] += 1
        if m.type == self.pb.MSG_SNAP and copies == 0:
            # The transport knows a snapshot did not get through and says so.
            frm.raw.report_snapshot(m.to, True)
        for _ in range(copies):
            delay = self.rng.randint(0, o.max_delay) if self.faults else 0
            self.seq += 1
            heapq.heappush(self.queue, (self.now + delay, self.seq, m.to, frm.id, data))

    def deliver_due(self) -> bool:
        moved = False
        pb = self.pb
        while self.queue and self.queue[0][0] <= self.now:
            _, _, to, frm, data = heapq.heappop(self.queue)
            m = pb.decode_message(data)
            dst = self.nodes.get(to)
            src = self.nodes.get(frm)
            ok = dst is not None and dst.alive and not dst.removed and self.connected(frm, to)
            if m.type == pb.MSG_SNAP and src is not None and src.alive:
                src.raw.report_snapshot(to, not ok)
            if not ok:
                continue
            moved = True
            try:
                dst.driver.step(m)
            except (ProposalDropped, StepPeerNotFound):
                pass  # what a server does too: the client retries / the stray answer is ignored
        return moved

    # --- the Ready loop: the production driver, with the simulator's disk timing -----------------
    def handle_ready(self, n: SimNode) -> bool:
        d = n.driver
        if n.in_flight is not None:
            rd, due = n.in_flight
            if self.now < due:
                return False
            n.in_flight = None
        else:
            rd = d.begin()
            if rd is None:
                return False
            if d.needs_persist(rd):
                o = self.opts
                delay = self.rng.randint(0, o.disk_delay) if self.faults and o.disk_delay else 0
                if delay:
                    n.in_flight = (rd, self.now + delay)
                    return True
        if d.needs_persist(rd):
            d.persist(rd)
        d.finish(rd)
        self._maybe_snapshot(n)
        return True

    def _read_state(self, n: SimNode, rs):
        floor = n.reads.pop(rs.request_ctx, None)
        self.stats["reads_served"] += 1
        if floor is not None and rs.index < floor:
            self.fail(f"node {n.id}: read {rs.request_ctx!r} at index {rs.index} < commit "
                      f"{floor} known when it was issued")

    def _restore_sm(self, n: SimNode, snap):
        idx = snap.metadata.index
        digest = int(snap.data.decode())
        want = self.digest_at.get(idx)
        if want is not None and want != digest:
            self.fail(f"node {n.id}: snapshot at {idx} has digest {digest}, others had {want}")
        n.sm_index, n.sm_digest, n.conf_state = idx, digest, snap.metadata.conf_state
        # the backend travels beside the raft snapshot (production: the pipeline's file)
        n.sm = StateMachine(self.images[idx].clone(batch_interval=0))
        self.stats["snapshots_installed"] += 1
        self.note(f"n{n.id} installed snapshot {idx}")

    def _apply(self, n: SimNode, e):
        pb = self.pb
        if e.index != n.sm_index + 1:
            self.fail(f"node {n.id}: applied index {e.index} after {n.sm_index} (gap or replay)")
        rec = (e.term, e.type, bytes(e.data))
        prev = self.committed.setdefault(e.index, rec)
        if prev != rec:
            self.fail(f"node {n.id} applied {rec} at {e.index}, another member applied {prev}")
        n.sm_index = e.index
        n.sm_digest = zlib.crc32(b"%d:%d:" % (e.index, e.type) + bytes(e.data), n.sm_digest)
        want = self.digest_at.setdefault(e.index, n.sm_digest)
        if want != n.sm_digest:
            self.fail(f"node {n.id}: state digest differs at {e.index}")
        if e.type == pb.ENTRY_NORMAL:
            n.sm.applier.apply_normal(e.index, bytes(e.data))
        else:
            n.sm.applier.mark_applied(e.index)
        if e.type == pb.ENTRY_CONF_CHANGE:
            cc = pb.decode_conf_change(e.data)
            n.conf_state = n.raw.apply_conf_change(cc)
            if e.index > self.opts.voters:
                self.stats["conf_changes_applied"] += 1
            if cc.type == pb.CONF_CHANGE_REMOVE_NODE and cc.node_id in self.nodes:
                victim = self.nodes[cc.node_id]
                if not victim.removed:
                    # A removed member shuts down once the removal is committed (etcd does).
                    self.note(f"n{cc.node_id} removed (applied by n{n.id} at {e.index})")
                    victim.removed = True
                    victim.alive = False

    def _maybe_snapshot(self, n: SimNode):
        o = self.opts
        st = n.storage
        if not o.snapshot_every or n.sm_index - st.first_index() < o.snapshot_every:
            return
        if n.sm_index <= st.snapshot().metadata.index or n.sm_index > n.disk.disk.last_index():
            return
        if n.sm_index not in self.images:
            self.images[n.sm_index] = n.sm.backend.clone(batch_interval=0)
        n.disk.create_snapshot(n.sm_index, n.conf_state, str(n.sm_digest).encode(), o.snapshot_keep)

    # --- checks ----------------------------------------------------------------------------------
    def check(self):
        live = self.live()
        for n in live:
            r = n.raw.raft
            if r.state == LEADER:
                if r.term not in self.leader_of_term:
                    self.stats["leaders_elected"] += 1
                owner = self.leader_of_term.setdefault(r.term, n.id)
                if owner != n.id:
                    self.fail(f"two leaders in term {r.term}: {owner} and {n.id}")
                c = r.raft_log.committed
                if c > self.max_commit:
                    for i in range(self.max_commit + 1, c + 1):
                        self.commit_term.setdefault(i, r.term)
                    self.max_commit = c
        logs = {n.id: self._log_of(n) for n in live}
        # leader completeness
        for n in live:
            r = n.raw.raft
            if r.state != LEADER:
                continue
            first = r.raft_log.first_index()
            mine = logs[n.id]
            for i, t in self.commit_term.items():
                if t < r.term and i >= first:
                    if i not in mine or mine[i][0] != self.committed.get(i, mine[i])[0]:
                        self.fail(f"leader {n.id} of term {r.term} lacks entry {i} committed in term {t}")
        # log matching
        ids = sorted(logs)
        for a_pos, a in enumerate(ids):
            la = logs[a]
            for b in ids[a_pos + 1:]:
                lb = logs[b]
                common = sorted(set(la) & set(lb), reverse=True)
                matched = False
                for i in common:
                    if matched:
                        if la[i] != lb[i]:
                            self.fail(f"log matching: nodes {a},{b} agree above {i} but differ at {i}")
                    elif la[i][0] == lb[i][0]:
                        matched = True
                        if la[i] != lb[i]:
                            self.fail(f"log matching: nodes {a},{b} have different entries at {i} term {la[i][0]}")

    def _log_of(self, n: SimNode) -> dict:
        log = n.raw.raft.raft_log
        first, last = log.first_index(), log.last_index()
        if last < first:
            return {}
        return {e.index: (e.term, e.type, bytes(e.data)) for e in log.slice(first, last + 1)}

    # --- driving ---------------------------------------------------------------------------------
    def pump(self, rounds: int = 12):
        for _ in range(rounds):
            moved = self.deliver_due()
            for n in list(self.nodes.values()):
                if n.alive:
                    moved |= self.handle_ready(n)
            if not moved:
                break

    def inject_faults(self):
        o, rng = self.opts, self.rng
        if rng.random() < o.partition_rate:
            if self.partition is None:
                ids = sorted(self.nodes)
                k = rng.randint(1, max(1, len(ids) // 2))
                self.partition = set(rng.sample(ids, k))
                self.stats["partitions"] += 1
                self.note(f"partition {sorted(self.partition)}")
            else:
                self.partition = None
                self.note("heal")
        for n in list(self.nodes.values()):
            if n.removed:
                continue
            if n.alive and rng.random() < o.crash_rate:
                if n.in_flight is not None:
                    self.stats["crashes_mid_write"] += 1
                self._crash(n)
                self.stats["crashes"] += 1
                self.note(f"crash n{n.id}")
            elif not n.alive and rng.random() < o.restart_rate:
                self._restart(n)
                self.note(f"restart n{n.id}")

    def client_work(self):
        o, rng = self.opts, self.rng
        leaders = self.leaders()
        live = self.live()
        if live and rng.random() < o.propose_rate:
            n = rng.choice(live)
            self.proposed += 1
            n.driver.propose(self.put(b"k%d" % (self.proposed % o.keys), b"v%d" % self.proposed))
        if live and rng.random() < o.read_rate:
            n = rng.choice(live)
            ctx = b"r%d" % self.seq
            self.seq += 1
            n.reads[ctx] = self.max_commit
            n.driver.read_index(ctx)
        if not self.faults:
            return  # after healing: plain client load only, so liveness is measured fairly
        if leaders and rng.random() < o.transfer_rate:
            ld = leaders[0]
            voters = sorted(ld.raw.raft.prs.voters)
            ld.raw.transfer_leadership(rng.choice(voters))
        if leaders and rng.random() < o.conf_change_rate:
            self._conf_change(leaders[0])

    def _conf_change(self, ld: SimNode):
        pb, rng = self.pb, self.rng
        prs = ld.raw.raft.prs
        voters, learners = sorted(prs.voters), sorted(prs.learners)
        choices = []
        if len(voters) + len(learners) < 5:
            choices.append("add_learner")
        if learners:
            choices.append("promote")
        if len(voters) > 3:
            choices.append("remove")
        if not choices:
            return
        what = rng.choice(choices)
        if what == "add_learner":
            node_id = self.next_id
            self.next_id += 1
            n = self.nodes[node_id] = SimNode(node_id, self)
            self._start(n)  # empty storage, no peers: it learns the cluster from the leader
            cc = pb.ConfChange(pb.CONF_CHANGE_ADD_LEARNER_NODE, node_id)
        elif what == "promote":
            cc = pb.ConfChange(pb.CONF_CHANGE_ADD_NODE, rng.choice(learners))
        else:
            cc = pb.ConfChange(pb.CONF_CHANGE_REMOVE_NODE, rng.choice(voters))
        self.note(f"propose {what} {cc.node_id} via n{ld.id}")
        try:
            ld.raw.propose_conf_change(cc)
        except ProposalDropped:
            pass

    def step(self):
        self.now += 1
        if self.faults:
            self.inject_faults()
        for n in self.live():
            n.driver.tick()
        self.client_work()
        self.pump()
        self.check()

    def heal(self):
        self.faults = False
        self.partition = None
        for n in self.nodes.values():
            if not n.alive and not n.removed:
                self._restart(n)
        self.note("heal all, faults off")

    def run(self):
        for _ in range(self.opts.fault_ticks):
            self.step()
        self.heal()
        self.check_liveness()
        return self

    def check_liveness(self):
        """After healing: a leader emerges and a fresh entry is applied by every member."""
        marker = self.put(b"liveness", b"%d" % self.seed)
        start = self.now
        last_try = None
        while self.now - start < self.opts.liveness_ticks:
            self.step()
            idx = next((i for i, rec in self.committed.items() if rec[2] == marker), None)
            leaders = self.leaders()
            if not leaders:
                continue
            if idx is None:
                # (Re)propose now and then: a proposal dies with the leader that held it.
                if last_try is None or self.now - last_try >= 4 * self.opts.election_tick:
                    try:
                        leaders[0].raw.propose(marker)
                        last_try = self.now
                    except ProposalDropped:
                        pass
                continue
            prs = leaders[0].raw.raft.prs
            members = set(prs.voters) | set(prs.learners)
            if all(self.nodes[m].alive and self.nodes[m].sm_index >= idx for m in members):
                top = max(self.nodes[m].sm_index for x in members for m in [x])
                digests = {self.nodes[m].sm_digest for m in members if self.nodes[m].sm_index == top}
                if len(digests) > 1:
                    self.fail("members at the same index have different state digests")
                stores = {m: self.nodes[m].sm.contents() for m in members if self.nodes[m].sm_index == top}
                if len({repr(c) for c in stores.values()}) > 1:
                    self.fail(f"members at index {top} hold different keys/revisions: {stores}")
                self.stats["final_revision"] = next(iter(stores.values()))[0]
                return self.now - start
        self.fail(f"no progress within {self.opts.liveness_ticks} ticks after healing: "
                  f"{[(n.id, n.alive, n.raw.status() if n.raw else None) for n in self.nodes.values()]}")
