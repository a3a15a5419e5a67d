# distutils: extra_compile_args = -O3
"""Raft log storage, compiled: same names and behaviour as the twin raftlog_py.py (the contract
and the Storage protocol are documented there). The append path (slice and extend of the entry
list) and the read path (term, entries with a byte budget) avoid Python-level attribute work on
the dummy entry and compute entry sizes from len(data) directly.
"""
from cpython.bytes cimport PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE

from fastkv._native import load as _load

_pb = _load("raftpb")
Entry = _pb.Entry
HardState = _pb.HardState
ConfState = _pb.ConfState
Snapshot = _pb.Snapshot
SnapshotMetadata = _pb.SnapshotMetadata
cdef Py_ssize_t _ENTRY_HEADER = _pb.ENTRY_HEADER_SIZE


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


cdef inline Py_ssize_t _entry_size(object e):
    data = e.data
    if type(data) is bytes:
        return _ENTRY_HEADER + PyBytes_GET_SIZE(data)
    return _ENTRY_HEADER + len(data)


cdef class MemoryStorage:
    """In-memory raft log: the stable entries (already in the WAL), hard state and snapshot."""

    def __init__(self):
        self._ents = [Entry(0, 0)]
        self._offset = 0
        self._hard_state = HardState()
        self._snapshot = Snapshot()

    # --- read side (Storage protocol) -------------------------------------------------------
    def initial_state(self):
        return self._hard_state, self._snapshot.metadata.conf_state

    cpdef long long first_index(self):
        return self._offset + 1

    cpdef long long last_index(self):
        return self._offset + PyList_GET_SIZE(self._ents) - 1

    cpdef term(self, long long i):
        if i < self._offset:
            raise CompactedError()
        if i - self._offset >= PyList_GET_SIZE(self._ents):
            raise UnavailableError()
        return (<object>PyList_GET_ITEM(self._ents, i - self._offset)).term

    def entries(self, long long lo, long long hi, max_bytes=None):
        cdef long long offset = self._offset
        cdef long long last = self.last_index()
        if lo <= offset:
            raise CompactedError()
        if hi > last + 1:
            raise UnavailableError(f"entries' hi({hi}) is out of bound lastindex({last})")
        if lo >= hi:
            return []
        cdef list ents = self._ents[lo - offset : hi - offset]
        cdef Py_ssize_t n = PyList_GET_SIZE(ents), k
        cdef long long budget, size
        if max_bytes is None or n <= 1:
            return ents
        budget = max_bytes
        size = _entry_size(<object>PyList_GET_ITEM(ents, 0))
        for k in range(1, n):
            size += _entry_size(<object>PyList_GET_ITEM(ents, k))
            if size > budget:
                return ents[:k]
        return ents

    def snapshot(self):
        return self._snapshot

    # --- write side (the server's Ready loop) -------------------------------------------------
    def set_hard_state(self, hs):
        self._hard_state = hs

    def hard_state(self):
        return self._hard_state

    def apply_snapshot(self, snap):
        """Replace the whole log with `snap` (a follower installing the leader's snapshot)."""
        # etcd: an equal index is out of date too; re-applying it would discard the entries after it
        if snap.metadata.index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError()
        self._snapshot = snap
        self._ents = [Entry(snap.metadata.term, snap.metadata.index)]
        self._offset = snap.metadata.index

    def create_snapshot(self, long long index, conf_state, data):
        """Record a snapshot of the applied state at `index` (must be <= last_index)."""
        if index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError()
        if index < self._offset:
            raise CompactedError()
        if index > self.last_index():
            raise ValueError(f"snapshot {index} is out of bound lastindex({self.last_index()})")
        cs = conf_state if conf_state is not None else self._snapshot.metadata.conf_state
        term = (<object>PyList_GET_ITEM(self._ents, index - self._offset)).term
        self._snapshot = Snapshot(SnapshotMetadata(index, term, cs), data)
        return self._snapshot

    def compact(self, long long compact_index):
        """Drop entries before `compact_index`; it becomes the dummy entry (the snapshot point)."""
        cdef long long offset = self._offset
        if compact_index <= offset:
            raise CompactedError()
        if compact_index > self.last_index():
            raise ValueError(f"compact {compact_index} is out of bound lastindex({self.last_index()})")
        cdef Py_ssize_t i = compact_index - offset
        e = <object>PyList_GET_ITEM(self._ents, i)
        cdef list ents = [Entry(e.term, e.index)]
        ents.extend(self._ents[i + 1 :])
        self._ents = ents
        self._offset = compact_index

    def append(self, entries):
        """Append entries, truncating any conflicting suffix. Entries must be contiguous."""
        cdef list ents = entries if type(entries) is list else list(entries)
        cdef Py_ssize_t n = PyList_GET_SIZE(ents)
        if n == 0:
            return
        cdef long long first = self._offset + 1
        cdef long long start = (<object>PyList_GET_ITEM(ents, 0)).index
        cdef long long last = start + n - 1
        if last < first:
            return  # all already compacted
        if first > start:
            ents = ents[first - start :]
            start = first
        cdef long long offset = start - self._offset
        cdef Py_ssize_t have = PyList_GET_SIZE(self._ents)
        if offset < have:
            del self._ents[offset:]  # a conflicting suffix: the new leader's entries replace it
            self._ents.extend(ents)
        elif offset == have:
            self._ents.extend(ents)
        else:
            raise ValueError(
                f"missing log entry [last: {self.last_index()}, append at: {start}]"
            )
