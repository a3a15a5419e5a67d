"""Raft log storage: what the raft core reads its stable log from. Pure-Python twin (the contract).

`raftlog.pyx` must expose the same names and behaviour. The raft core only *reads* through the
Storage protocol below; the server (the single Ready loop) writes to it after the WAL has made
the same entries durable — the order is WAL first, then this in-memory view.

Layout: `_ents[0]` is a dummy entry carrying the index/term of the last compacted entry (the
snapshot point), so term(first_index - 1) stays answerable after compaction, as in etcd's
MemoryStorage.

Storage protocol (read side, used by raft):
    initial_state() -> (HardState, ConfState)
    entries(lo, hi, max_bytes=None) -> list[Entry]   entries in [lo, hi); at least one entry even
                                                     if it exceeds max_bytes
    term(i) -> int
    first_index() -> int                              index of the first entry still available
    last_index() -> int
    snapshot() -> Snapshot
Errors: CompactedError (asked below first_index), UnavailableError (asked past last_index),
SnapshotOutOfDateError (applying/creating a snapshot older than the current one).
"""
from __future__ import annotations

from fastkv._native.raftpb_py import ConfState, Entry, HardState, Snapshot, SnapshotMetadata


class StorageError(Exception):
    pass


class CompactedError(StorageError):
    def __init__(self, msg="requested index is unavailable due to compaction"):
        super().__init__(msg)


class UnavailableError(StorageError):
    def __init__(self, msg="requested entry at index is unavailable"):
        super().__init__(msg)


class SnapshotOutOfDateError(StorageError):
    def __init__(self, msg="requested index is older than the existing snapshot"):
        super().__init__(msg)


class MemoryStorage:
    """In-memory raft log: the stable entries (already in the WAL), hard state and snapshot."""

    def __init__(self):
        self._ents: list = [Entry(0, 0)]
        self._hard_state = HardState()
        self._snapshot = Snapshot()

    # --- read side (Storage protocol) -------------------------------------------------------
    def initial_state(self):
        return self._hard_state, self._snapshot.metadata.conf_state

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def term(self, i: int) -> int:
        offset = self._ents[0].index
        if i < offset:
            raise CompactedError()
        if i - offset >= len(self._ents):
            raise UnavailableError()
        return self._ents[i - offset].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list:
        offset = self._ents[0].index
        if lo <= offset:
            raise CompactedError()
        if hi > self.last_index() + 1:
            raise UnavailableError(f"entries' hi({hi}) is out of bound lastindex({self.last_index()})")
        if lo >= hi:
            return []
        ents = self._ents[lo - offset : hi - offset]
        if max_bytes is None or len(ents) <= 1:
            return ents
        size = ents[0].size()
        for k in range(1, len(ents)):
            size += ents[k].size()
            if size > max_bytes:
                return ents[:k]
        return ents

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # --- write side (the server's Ready loop) -------------------------------------------------
    def set_hard_state(self, hs: HardState) -> None:
        self._hard_state = hs

    def hard_state(self) -> HardState:
        return self._hard_state

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log with `snap` (a follower installing the leader's snapshot)."""
        # etcd: an equal index is out of date too; re-applying it would discard the entries after it
        if snap.metadata.index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError()
        self._snapshot = snap
        self._ents = [Entry(snap.metadata.term, snap.metadata.index)]

    def create_snapshot(self, index: int, conf_state: ConfState | None, data: bytes) -> Snapshot:
        """Record a snapshot of the applied state at `index` (must be <= last_index)."""
        if index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError()
        offset = self._ents[0].index
        if index < offset:
            raise CompactedError()  # its term is gone (negative list index would read a wrong entry)
        if index > self.last_index():
            raise ValueError(f"snapshot {index} is out of bound lastindex({self.last_index()})")
        cs = conf_state if conf_state is not None else self._snapshot.metadata.conf_state
        self._snapshot = Snapshot(SnapshotMetadata(index, self._ents[index - offset].term, cs), data)
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Drop entries before `compact_index`; it becomes the dummy entry (the snapshot point)."""
        offset = self._ents[0].index
        if compact_index <= offset:
            raise CompactedError()
        if compact_index > self.last_index():
            raise ValueError(f"compact {compact_index} is out of bound lastindex({self.last_index()})")
        i = compact_index - offset
        self._ents = [Entry(self._ents[i].term, self._ents[i].index)] + self._ents[i + 1 :]

    def append(self, entries: list) -> None:
        """Append entries, truncating any conflicting suffix. Entries must be contiguous."""
        if not entries:
            return
        first = self.first_index()
        last = entries[0].index + len(entries) - 1
        if last < first:
            return  # all already compacted
        if first > entries[0].index:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._ents[0].index
        if offset < len(self._ents):
            self._ents = self._ents[:offset] + list(entries)
        elif offset == len(self._ents):
            self._ents.extend(entries)
        else:
            raise ValueError(
                f"missing log entry [last: {self.last_index()}, append at: {entries[0].index}]"
            )
