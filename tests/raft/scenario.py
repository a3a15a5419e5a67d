"""Scenario tests in the style of etcd-io/raft's datadriven interaction tests.

A scenario file (tests/raft/testdata/*.txt) is a list of blocks:

    # comments start with '#'
    command arg key=value ...
    ----
    the output recorded for that command

Blocks are separated by a blank line. The harness runs every command against real RawNodes (with
MemoryStorage and the Ready loop of rawnode.py's contract) and compares its output with the
recorded one; `--regen` (or FASTKV_RAFT_REGEN=1) rewrites the recorded outputs instead, after which
the diff is reviewed like code.

Commands:
  add-nodes N [voters=1,2,3] [learners=..] [pre-vote=true] [check-quorum=true] [election=10]
            [heartbeat=1] [max-inflight=N] [max-size=BYTES] [max-inflight-bytes=BYTES]
            first call: bootstrap a cluster of N members (their bootstrap Ready is handled
            silently); later calls: add N empty members that join through conf changes
  campaign ID | tick ID [N] | tick-election ID (2 x election ticks)
  propose ID DATA | propose-conf-change ID add|add-learner|remove NODE
  read-index ID CTX | transfer-leadership FROM TO
  process-ready ID...    handle the node's Ready (persist, queue messages, apply, advance)
  deliver-msgs ID... [drop=true]  step the queued messages addressed to ID
  stabilize [ID...]      process-ready / deliver-msgs until nothing moves
  isolate ID | heal      cut every link of ID / restore all links
  partition ID,ID...     cut the listed members off from the others (both sides keep talking)
  crash ID | restart ID  drop the node keeping only its storage / rebuild it from storage
  compact ID INDEX       snapshot the node's applied state at INDEX and compact its log
  status ID | raft-state | raft-log ID
"""
from __future__ import annotations

import random
import shlex

from fastkv._native import load
from fastkv._native.raftlog_py import MemoryStorage
from fastkv.raft import STATE_NAMES, Config, ProposalDropped, RawNode, StepPeerNotFound
from fastkv.raft.progress import STATE_NAMES as PR_STATE_NAMES

pb = load("raftpb", pure=True)
ENTRY_TYPES = {pb.ENTRY_NORMAL: "EntryNormal", pb.ENTRY_CONF_CHANGE: "EntryConfChange"}
CC_TYPES = {"add": pb.CONF_CHANGE_ADD_NODE, "add-learner": pb.CONF_CHANGE_ADD_LEARNER_NODE,
            "remove": pb.CONF_CHANGE_REMOVE_NODE}
CC_NAMES = {v: k for k, v in CC_TYPES.items()}


def describe_entry(e) -> str:
    if e.type == pb.ENTRY_CONF_CHANGE:
        cc = pb.decode_conf_change(e.data)
        return f"{e.term}/{e.index} EntryConfChange {CC_NAMES.get(cc.type, cc.type)} {cc.node_id}"
    return f"{e.term}/{e.index} EntryNormal {bytes(e.data)!r}"


def describe_message(m) -> str:
    s = f"{m.frm}->{m.to} {pb.MESSAGE_TYPE_NAMES[m.type]} Term:{m.term} Log:{m.log_term}/{m.index}"
    if m.commit:
        s += f" Commit:{m.commit}"
    if m.reject:
        s += f" Rejected (Hint: {m.reject_hint})"
    if m.entries:
        s += " Entries:[" + ", ".join(describe_entry(e) for e in m.entries) + "]"
    if m.snapshot is not None:
        md = m.snapshot.metadata
        s += (f" Snapshot: Index:{md.index} Term:{md.term} Voters:{list(md.conf_state.voters)}"
              f" Learners:{list(md.conf_state.learners)}")
    if m.context:
        s += f" Context:{bytes(m.context)!r}"
    return s


class Node:
    def __init__(self, node_id, storage, raw):
        self.id = node_id
        self.storage = storage
        self.raw = raw
        self.conf_state = None
        self.applied_data = []


class Harness:
    def __init__(self):
        self.nodes: dict = {}
        self.queues: dict = {}       # recipient id -> list of encoded messages
        self.isolated: set = set()
        self.partitioned: set = set()  # a group cut off from everyone outside it
        self.cfg: dict = {}
        self.out: list = []

    # --- helpers ---------------------------------------------------------------------------------
    def p(self, line: str = "") -> None:
        self.out.append(line)

    def _config(self, node_id, storage, peers=None, learners=None, applied=0):
        c = self.cfg
        return Config(id=node_id, storage=storage, peers=peers, learners=learners,
                      election_tick=c["election"], heartbeat_tick=c["heartbeat"], applied=applied,
                      pre_vote=c["pre-vote"], check_quorum=c["check-quorum"],
                      max_inflight_msgs=c["max-inflight"], max_size_per_msg=c["max-size"],
                      max_inflight_bytes=c["max-inflight-bytes"],
                      rng=random.Random(node_id), pure=True, logger=self._raft_log)

    def _raft_log(self, line: str) -> None:
        # The core's own account of its decisions, recorded with the command that caused them
        # (etcd-io/raft's interaction tests show its log lines the same way).
        self.p(f"INFO {line}")

    def _ids(self, args):
        return [int(a) for a in args] if args else sorted(self.nodes)

    def _linked(self, a, b) -> bool:
        if a in self.isolated or b in self.isolated:
            return False
        return (a in self.partitioned) == (b in self.partitioned)

    # --- the Ready loop ----------------------------------------------------------------------------
    def process_ready(self, n: Node, quiet: bool = False) -> bool:
        raw = n.raw
        if not raw.has_ready():
            return False
        rd = raw.ready()
        if not quiet:
            self.p(f"> {n.id} handling Ready")
            if rd.soft_state is not None:
                self.p(f"  Lead:{rd.soft_state.lead} State:{STATE_NAMES[rd.soft_state.raft_state]}")
            if rd.hard_state is not None:
                hs = rd.hard_state
                self.p(f"  HardState Term:{hs.term} Vote:{hs.vote} Commit:{hs.commit}")
            if rd.snapshot is not None:
                md = rd.snapshot.metadata
                self.p(f"  Snapshot Index:{md.index} Term:{md.term} Voters:{list(md.conf_state.voters)}"
                       f" Learners:{list(md.conf_state.learners)}")
            if rd.entries:
                self.p("  Entries:")
                for e in rd.entries:
                    self.p(f"    {describe_entry(e)}")
            if rd.committed_entries:
                self.p("  CommittedEntries:")
                for e in rd.committed_entries:
                    self.p(f"    {describe_entry(e)}")
            if rd.messages:
                self.p("  Messages:")
                for m in rd.messages:
                    self.p(f"    {describe_message(m)}")
            for rs in rd.read_states:
                self.p(f"  ReadState Index:{rs.index} Ctx:{bytes(rs.request_ctx)!r}")
        st = n.storage
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot)
            n.conf_state = rd.snapshot.metadata.conf_state
        st.append(rd.entries)
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)
        for m in rd.messages:
            if self._linked(m.frm, m.to):
                self.queues.setdefault(m.to, []).append(pb.encode_message(m))
            elif not quiet:
                self.p(f"  dropped (isolated): {describe_message(m)}")
        for e in rd.committed_entries:
            if e.type == pb.ENTRY_CONF_CHANGE:
                n.conf_state = raw.apply_conf_change(pb.decode_conf_change(e.data))
                if not quiet:
                    self.p(f"  ConfState Voters:{list(n.conf_state.voters)} Learners:{list(n.conf_state.learners)}")
            elif e.data:
                n.applied_data.append(bytes(e.data))
        raw.advance(rd)
        return True

    def deliver(self, node_id: int, drop: bool = False) -> bool:
        msgs = self.queues.pop(node_id, [])
        n = self.nodes.get(node_id)
        for data in msgs:
            m = pb.decode_message(data)
            if drop or n is None or n.raw is None or not self._linked(m.frm, m.to):
                self.p(f"  dropped: {describe_message(m)}")
                continue
            self.p(f"  {describe_message(m)}")
            try:
                n.raw.step(m)
            except (ProposalDropped, StepPeerNotFound) as exc:
                self.p(f"  error: {exc}")
        return bool(msgs)

    # --- commands ----------------------------------------------------------------------------------
    def run(self, line: str) -> str:
        self.out = []
        words = shlex.split(line)
        cmd, args = words[0], [w for w in words[1:] if "=" not in w]
        kv = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        try:
            getattr(self, "cmd_" + cmd.replace("-", "_"))(args, kv)
        except ProposalDropped as exc:
            self.p(f"error: {exc}")
        return "\n".join(self.out) if self.out else "ok"

    def cmd_add_nodes(self, args, kv):
        count = int(args[0])
        if not self.nodes:
            self.cfg = {"election": int(kv.get("election", 10)), "heartbeat": int(kv.get("heartbeat", 1)),
                        "pre-vote": kv.get("pre-vote", "true") == "true",
                        "check-quorum": kv.get("check-quorum", "true") == "true",
                        "max-inflight": int(kv.get("max-inflight", 256)),
                        "max-size": int(kv.get("max-size", 1 << 20)),
                        "max-inflight-bytes": int(kv.get("max-inflight-bytes", 0))}
            voters = [int(x) for x in kv.get("voters", ",".join(str(i) for i in range(1, count + 1))).split(",")]
            learners = [int(x) for x in kv["learners"].split(",")] if "learners" in kv else None
            for i in range(1, count + 1):
                st = MemoryStorage()
                n = self.nodes[i] = Node(i, st, RawNode(self._config(i, st, voters, learners)))
                self.process_ready(n, quiet=True)
            self.p(f"bootstrapped {sorted(self.nodes)}: voters={voters} learners={learners or []}")
        else:
            start = max(self.nodes) + 1
            for i in range(start, start + count):
                st = MemoryStorage()
                self.nodes[i] = Node(i, st, RawNode(self._config(i, st)))
            self.p(f"added empty nodes {list(range(start, start + count))}")

    def cmd_campaign(self, args, kv):
        self.nodes[int(args[0])].raw.campaign()

    def cmd_tick(self, args, kv):
        n = self.nodes[int(args[0])]
        for _ in range(int(args[1]) if len(args) > 1 else 1):
            n.raw.tick()

    def cmd_tick_election(self, args, kv):
        n = self.nodes[int(args[0])]
        for _ in range(2 * self.cfg["election"]):
            n.raw.tick()

    def cmd_propose(self, args, kv):
        self.nodes[int(args[0])].raw.propose(args[1].encode())

    def cmd_propose_conf_change(self, args, kv):
        cc = pb.ConfChange(CC_TYPES[args[1]], int(args[2]))
        self.nodes[int(args[0])].raw.propose_conf_change(cc)

    def cmd_read_index(self, args, kv):
        self.nodes[int(args[0])].raw.read_index(args[1].encode())

    def cmd_transfer_leadership(self, args, kv):
        self.nodes[int(args[0])].raw.transfer_leadership(int(args[1]))

    def cmd_process_ready(self, args, kv):
        for i in self._ids(args):
            if self.nodes[i].raw is not None:
                self.process_ready(self.nodes[i])

    def cmd_deliver_msgs(self, args, kv):
        for i in self._ids(args):
            if self.queues.get(i):
                self.p(f"> {i} receiving messages")
                self.deliver(i, drop=kv.get("drop") == "true")

    def cmd_stabilize(self, args, kv):
        ids = self._ids(args)
        moved = True
        while moved:
            moved = False
            for i in ids:
                if self.nodes[i].raw is not None:
                    moved |= self.process_ready(self.nodes[i])
            for i in ids:
                if self.queues.get(i):
                    self.p(f"> {i} receiving messages")
                    moved |= self.deliver(i)

    def cmd_isolate(self, args, kv):
        self.isolated.add(int(args[0]))

    def cmd_partition(self, args, kv):
        self.partitioned = {int(x) for x in args[0].split(",")}

    def cmd_heal(self, args, kv):
        self.isolated.clear()
        self.partitioned = set()

    def cmd_crash(self, args, kv):
        n = self.nodes[int(args[0])]
        n.raw = None
        self.queues.pop(n.id, None)

    def cmd_restart(self, args, kv):
        n = self.nodes[int(args[0])]
        applied = n.storage.snapshot().metadata.index
        n.raw = RawNode(self._config(n.id, n.storage, applied=applied))
        hs = n.storage.hard_state()
        self.p(f"restarted {n.id} from storage: HardState Term:{hs.term} Vote:{hs.vote} "
               f"Commit:{hs.commit} LastIndex:{n.storage.last_index()}")

    def cmd_compact(self, args, kv):
        n = self.nodes[int(args[0])]
        index = int(args[1])
        n.storage.create_snapshot(index, n.conf_state, b"snap@%d" % index)
        n.storage.compact(index)
        self.p(f"{n.id}: log compacted to {index}; first index now {n.storage.first_index()}")

    def cmd_status(self, args, kv):
        s = self.nodes[int(args[0])].raw.status()
        self.p(f"{s.id}: {STATE_NAMES[s.raft_state]} Term:{s.term} Lead:{s.lead} Commit:{s.commit} "
               f"Applied:{s.applied} Voters:{s.voters} Learners:{s.learners}")
        for pid, pr in sorted(s.progress.items()):
            self.p(f"  {pid}: {PR_STATE_NAMES[pr.state]} match={pr.match} next={pr.next}"
                   + (" learner" if pr.is_learner else "") + (" paused" if pr.is_paused() else ""))

    def cmd_raft_state(self, args, kv):
        for i in sorted(self.nodes):
            raw = self.nodes[i].raw
            if raw is None:
                self.p(f"{i}: crashed")
                continue
            r = raw.raft
            role = "Voter" if r.id in r.prs.voters else ("Learner" if r.id in r.prs.learners else "None")
            self.p(f"{i}: {STATE_NAMES[r.state]} ({role}) Term:{r.term} Lead:{r.lead}")

    def cmd_raft_log(self, args, kv):
        n = self.nodes[int(args[0])]
        log = n.raw.raft.raft_log
        first, last = log.first_index(), log.last_index()
        if last < first:
            self.p(f"log is empty: first index={first}, last index={last}")
        for e in log.slice(first, last + 1):
            self.p(describe_entry(e))


# --- file format ---------------------------------------------------------------------------------

def parse(text: str):
    """Yield (leading comment/blank lines, command, expected output) blocks."""
    blocks, lines, i = [], text.split("\n"), 0
    pre = []
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            pre.append(line)
            i += 1
            continue
        cmd = line
        if i + 1 >= len(lines) or lines[i + 1] != "----":
            raise ValueError(f"line {i + 1}: command {cmd!r} is not followed by ----")
        i += 2
        out = []
        while i < len(lines) and lines[i] != "":
            out.append(lines[i])
            i += 1
        blocks.append((pre, cmd, "\n".join(out)))
        pre = []
    return blocks, pre


def render(blocks, tail) -> str:
    parts = []
    for pre, cmd, out in blocks:
        parts.extend(pre)
        parts.extend([cmd, "----", out])
    parts.extend(tail)
    text = "\n".join(parts)
    return text if text.endswith("\n") else text + "\n"


def run_file(text: str):
    """Run a scenario; returns (blocks with actual outputs, tail, list of mismatches)."""
    blocks, tail = parse(text)
    h = Harness()
    actual, mismatches = [], []
    for pre, cmd, expected in blocks:
        got = h.run(cmd)
        actual.append((pre, cmd, got))
        if got != expected:
            mismatches.append((cmd, expected, got))
    return actual, tail, mismatches
