"""The unstable tail of the raft log (entries and snapshot not yet persisted): pure-Python twin.

`unstable.pyx` exposes the same names and behaviour; tests run over both.

Contract (mirrors etcd-io/raft's `unstable`):
- `entries[k]` has index `offset + k`; the entries are contiguous.
- `snapshot`, when not None, is a snapshot not yet persisted; it precedes `entries`.
- "none" results are encoded as sentinels so the compiled version stays allocation-free:
  `maybe_first_index()`/`maybe_last_index()` return 0 when unknown (raft indexes start at 1) and
  `maybe_term(i)` returns -1 when unknown.

Helpers used on the hot path of the raft core live here too, so they are compiled together:
`append_proposals` stamps term/index onto freshly proposed entries and appends them,
`limit_size` cuts a list at a byte budget, `entries_size` sums encoded sizes.
"""
from __future__ import annotations


def entries_size(ents) -> int:
    """Sum of `Entry.size()` (encoded bytes) over `ents`."""
    return sum(e.size() for e in ents)


def limit_size(ents, max_size):
    """The longest prefix of `ents` whose encoded size is <= max_size; always at least one entry.

    max_size None (or negative) means no limit. Returns `ents` itself when nothing is cut.
    """
    if max_size is None or max_size < 0 or len(ents) <= 1:
        return ents
    size = ents[0].size()
    for k in range(1, len(ents)):
        size += ents[k].size()
        if size > max_size:
            return ents[:k]
    return ents


class Unstable:
    __slots__ = ("snapshot", "entries", "offset")

    def __init__(self, offset: int = 0):
        self.snapshot = None
        self.entries = []
        self.offset = offset

    def maybe_first_index(self) -> int:
        """Index of the first entry possibly in the unstable snapshot, or 0."""
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return 0

    def maybe_last_index(self) -> int:
        """Last index held here (entries, else snapshot), or 0."""
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return 0

    def maybe_term(self, i: int) -> int:
        """Term of entry i if this tail knows it, else -1."""
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.metadata.index == i:
                return self.snapshot.metadata.term
            return -1
        last = self.maybe_last_index()
        if last == 0 or i > last:
            return -1
        return self.entries[i - self.offset].term

    def stable_to(self, i: int, t: int) -> None:
        """Entries up to (i, t) are persisted: drop them (only if the term still matches)."""
        gt = self.maybe_term(i)
        if gt == -1:
            return
        if gt == t and i >= self.offset:
            del self.entries[: i + 1 - self.offset]
            self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == i:
            self.snapshot = None

    def restore(self, snap) -> None:
        self.offset = snap.metadata.index + 1
        self.entries = []
        self.snapshot = snap

    def truncate_and_append(self, ents) -> None:
        """Append `ents` (contiguous), replacing any conflicting suffix."""
        if not ents:
            return
        after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= self.offset:
            # The new entries replace everything here; the offset moves back to them.
            self.offset = after
            self.entries = list(ents)
        else:
            del self.entries[after - self.offset :]
            self.entries.extend(ents)

    def append_proposals(self, term: int, first_index: int, ents) -> int:
        """Stamp `ents` with (term, first_index + k) and append them; returns the new last index.

        The leader's append path: first_index must be this log's last index + 1.
        """
        i = first_index
        for e in ents:
            e.term = term
            e.index = i
            i += 1
        self.truncate_and_append(ents)
        return i - 1

    def slice(self, lo: int, hi: int):
        """Entries [lo, hi); the caller guarantees offset <= lo <= hi <= offset + len(entries)."""
        if lo > hi:
            raise ValueError(f"invalid unstable slice {lo} > {hi}")
        upper = self.offset + len(self.entries)
        if lo < self.offset or hi > upper:
            raise ValueError(f"unstable slice[{lo},{hi}) out of bound [{self.offset},{upper}]")
        return self.entries[lo - self.offset : hi - self.offset]
