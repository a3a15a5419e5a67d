"""What the leader knows about each member: Progress (match/next, flow state), Inflights, and the
ProgressTracker that holds the configuration (voters, learners) and counts votes and commits.

Membership changes are applied one at a time (no joint consensus), so a configuration is just a
set of voters and a set of learners; a quorum is a strict majority of the voters.
"""
from __future__ import annotations

from collections import deque

PROBE = 0       # we do not know the follower's last index: send one append, wait for its answer
REPLICATE = 1   # the follower is caught up: stream appends optimistically, bounded by Inflights
SNAPSHOT = 2    # the follower needs a snapshot; no appends until it reports back
STATE_NAMES = ("StateProbe", "StateReplicate", "StateSnapshot")

VOTE_PENDING = 0
VOTE_LOST = 1
VOTE_WON = 2


class Inflights:
    """Append messages sent to one follower and not yet acknowledged, bounded by count and bytes."""

    __slots__ = ("_q", "size", "max_count", "max_bytes", "bytes")

    def __init__(self, max_count: int, max_bytes: int = 0):
        self._q = deque()  # (last index of the message, its payload bytes), ascending indexes
        self.max_count = max_count
        self.max_bytes = max_bytes  # 0 = no byte bound
        self.bytes = 0

    def add(self, index: int, nbytes: int) -> None:
        if self.full():
            raise AssertionError("cannot add into a full inflights")
        self._q.append((index, nbytes))
        self.bytes += nbytes

    def free_le(self, to: int) -> None:
        """Acknowledge every message whose last index is <= to."""
        q = self._q
        while q and q[0][0] <= to:
            self.bytes -= q.popleft()[1]

    def free_first_one(self) -> None:
        if self._q:
            self.bytes -= self._q.popleft()[1]

    def full(self) -> bool:
        return len(self._q) >= self.max_count or (self.max_bytes > 0 and self.bytes >= self.max_bytes)

    def count(self) -> int:
        return len(self._q)

    def reset(self) -> None:
        self._q.clear()
        self.bytes = 0


class Progress:
    __slots__ = ("match", "next", "state", "probe_sent", "pending_snapshot", "recent_active",
                 "inflights", "is_learner")

    def __init__(self, next_index: int, max_inflight: int, max_inflight_bytes: int = 0,
                 is_learner: bool = False):
        self.match = 0
        self.next = next_index
        self.state = PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.recent_active = False
        self.inflights = Inflights(max_inflight, max_inflight_bytes)
        self.is_learner = is_learner

    def __repr__(self):
        return (f"{STATE_NAMES[self.state]} match={self.match} next={self.next}"
                + (" learner" if self.is_learner else "")
                + (" paused" if self.is_paused() else "")
                + (f" pendingSnap={self.pending_snapshot}" if self.state == SNAPSHOT else "")
                + (f" inflight={self.inflights.count()}" if self.inflights.count() else ""))

    def _reset_state(self, state: int) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        # Coming back from a snapshot, the follower has at least the snapshot's entries.
        if self.state == SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, n: int) -> bool:
        """An append up to n was acknowledged. False if that was old news."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        if self.next < n + 1:
            self.next = n + 1
        return updated

    def optimistic_update(self, n: int) -> None:
        self.next = n + 1

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an append at `rejected`; it hinted its log goes up to match_hint.
        False if the rejection is stale (out of order)."""
        if self.state == REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state == PROBE:
            return self.probe_sent
        if self.state == REPLICATE:
            return self.inflights.full()
        return True


class ProgressTracker:
    """The configuration (voters, learners), each member's Progress, and the votes of an election."""

    __slots__ = ("voters", "learners", "progress", "votes", "max_inflight", "max_inflight_bytes")

    def __init__(self, max_inflight: int, max_inflight_bytes: int = 0):
        self.voters: set = set()
        self.learners: set = set()
        self.progress: dict = {}
        self.votes: dict = {}
        self.max_inflight = max_inflight
        self.max_inflight_bytes = max_inflight_bytes

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def conf_state(self, cs_type):
        return cs_type(sorted(self.voters), sorted(self.learners))

    def is_voter(self, node_id: int) -> bool:
        return node_id in self.voters

    def add(self, node_id: int, next_index: int, learner: bool) -> None:
        pr = self.progress.get(node_id)
        if pr is None:
            pr = Progress(next_index, self.max_inflight, self.max_inflight_bytes, learner)
            self.progress[node_id] = pr
        pr.is_learner = learner
        if learner:
            self.voters.discard(node_id)
            self.learners.add(node_id)
        else:
            self.learners.discard(node_id)
            self.voters.add(node_id)

    def remove(self, node_id: int) -> None:
        self.voters.discard(node_id)
        self.learners.discard(node_id)
        self.progress.pop(node_id, None)

    def committed(self) -> int:
        """Largest index replicated on a quorum of voters (0 with no voters)."""
        if not self.voters:
            return 0
        prs = self.progress
        matches = sorted((prs[v].match for v in self.voters), reverse=True)
        return matches[self.quorum() - 1]

    def quorum_active(self) -> bool:
        active = sum(1 for v in self.voters if self.progress[v].recent_active)
        return active >= self.quorum()

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node_id: int, granted: bool) -> None:
        if node_id not in self.votes:
            self.votes[node_id] = granted

    def tally_votes(self):
        granted = sum(1 for v in self.voters if self.votes.get(v) is True)
        rejected = sum(1 for v in self.voters if self.votes.get(v) is False)
        q = self.quorum()
        if granted >= q:
            return granted, rejected, VOTE_WON
        if rejected >= len(self.voters) - q + 1:
            return granted, rejected, VOTE_LOST
        return granted, rejected, VOTE_PENDING
