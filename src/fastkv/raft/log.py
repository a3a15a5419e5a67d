"""RaftLog: the stable log (Storage, read-only here) followed by the unstable tail (in memory).

Indexes: storage holds [first_index, stable_last]; the unstable tail holds what follows (and maybe
a snapshot not yet persisted). `committed` and `applied` are this node's commit and apply points;
invariant applied <= committed <= last_index().
"""
from __future__ import annotations


class RaftLogError(AssertionError):
    """A broken invariant of the log (a bug in the caller or the core, never a network event)."""


class RaftLog:
    __slots__ = ("storage", "unstable", "committed", "applied", "max_next_ents_size",
                 "_compacted", "_unavailable", "_limit_size")

    def __init__(self, storage, unstable_mod, storage_errors, max_next_ents_size=None):
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = unstable_mod.Unstable(last + 1)
        self._limit_size = unstable_mod.limit_size
        # The log starts committed and applied at the snapshot point.
        self.committed = first - 1
        self.applied = first - 1
        self.max_next_ents_size = max_next_ents_size
        self._compacted, self._unavailable = storage_errors

    def __repr__(self):
        return (f"RaftLog(committed={self.committed}, applied={self.applied}, "
                f"unstable.offset={self.unstable.offset}, len(unstable)={len(self.unstable.entries)})")

    # --- indexes and terms ---------------------------------------------------------------------
    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        if i:
            return i
        return self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        if i:
            return i
        return self.storage.last_index()

    def term(self, i: int) -> int:
        """Term of entry i; 0 when i is compacted away or beyond the log (etcd's zeroTermOnErr)."""
        dummy = self.first_index() - 1
        if i < dummy or i > self.last_index():
            return 0
        t = self.unstable.maybe_term(i)
        if t >= 0:
            return t
        try:
            return self.storage.term(i)
        except (self._compacted, self._unavailable):
            return 0

    def stable_last_index(self) -> int:
        """Last index handed over as persisted (advance() moved it out of `unstable`)."""
        return min(self.last_index(), self.unstable.offset - 1)

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, i: int, t: int) -> bool:
        dummy = self.first_index() - 1
        if i < dummy or i > self.last_index():
            return False
        return self.term(i) == t

    def is_up_to_date(self, lasti: int, term: int) -> bool:
        """§5.4.1: a candidate's log (lasti, term) is at least as up to date as ours."""
        lt = self.last_term()
        return term > lt or (term == lt and lasti >= self.last_index())

    # --- appends -------------------------------------------------------------------------------
    def find_conflict(self, ents) -> int:
        """Index of the first entry of `ents` whose term differs from ours (or that we lack), or 0."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """Largest index <= `index` whose term is <= `term` (the fast-backtracking hint)."""
        li = self.last_index()
        if index > li:
            return index
        while index > 0:
            t = self.term(index)
            if t <= term:
                break
            index -= 1
        return index

    def maybe_append(self, index: int, log_term: int, committed: int, ents) -> int:
        """Follower append (§5.3). Returns the new last index, or -1 if (index, log_term) mismatches."""
        if not self.match_term(index, log_term):
            return -1
        lastnewi = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                raise RaftLogError(f"entry {ci} conflicts with committed entry [committed({self.committed})]")
            self.append(ents[ci - (index + 1):])
        self.commit_to(min(committed, lastnewi))
        return lastnewi

    def append(self, ents) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise RaftLogError(f"after({after}) is out of range [committed({self.committed})]")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def append_proposals(self, term: int, ents) -> int:
        """Leader append: stamp term/index on fresh entries and append them (compiled path)."""
        return self.unstable.append_proposals(term, self.last_index() + 1, ents)

    # --- commit / apply / stable ---------------------------------------------------------------
    def commit_to(self, tocommit: int) -> None:
        if self.committed < tocommit:
            if self.last_index() < tocommit:
                raise RaftLogError(f"tocommit({tocommit}) is out of range [last_index({self.last_index()})]")
            self.committed = tocommit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        # §5.4.2: only entries of the current term are committed by counting replicas.
        if max_index > self.committed and self.term(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        if self.committed < i or i < self.applied:
            raise RaftLogError(f"applied({i}) is out of range [prev_applied({self.applied}), committed({self.committed})]")
        self.applied = i

    def stable_to(self, i: int, t: int) -> None:
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)

    # --- reading entries -----------------------------------------------------------------------
    def unstable_entries(self):
        return list(self.unstable.entries)

    def has_next_ents(self) -> bool:
        off = max(self.applied + 1, self.first_index())
        return self.committed + 1 > off

    def next_ents(self):
        """Committed entries not yet applied (bounded by max_next_ents_size)."""
        off = max(self.applied + 1, self.first_index())
        if self.committed + 1 > off:
            return self.slice(off, self.committed + 1, self.max_next_ents_size)
        return []

    def has_pending_snapshot(self) -> bool:
        s = self.unstable.snapshot
        return s is not None and not s.is_empty()

    def snapshot(self):
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def entries(self, i: int, max_size=None):
        if i > self.last_index():
            return []
        return self.slice(i, self.last_index() + 1, max_size)

    def slice(self, lo: int, hi: int, max_size=None):
        """Entries [lo, hi), at most max_size bytes (at least one). Raises the storage's
        CompactedError when lo was compacted away."""
        if lo > hi:
            raise RaftLogError(f"invalid slice {lo} > {hi}")
        fi = self.first_index()
        if lo < fi:
            raise self._compacted()
        if hi > self.last_index() + 1:
            raise RaftLogError(f"slice[{lo},{hi}) out of bound [{fi},{self.last_index()}]")
        if lo == hi:
            return []
        off = self.unstable.offset
        ents = []
        if lo < off:
            stored = self.storage.entries(lo, min(hi, off), max_size)
            if len(stored) < min(hi, off) - lo:
                return stored  # cut by max_size
            ents = stored
        if hi > off:
            tail = self.unstable.slice(max(lo, off), hi)
            ents = list(ents) + tail if ents else tail
        return self._limit_size(ents, max_size)

    def restore(self, snap) -> None:
        """Throw the log away for snapshot `snap` (a follower far behind the leader)."""
        self.committed = snap.metadata.index
        self.unstable.restore(snap)
