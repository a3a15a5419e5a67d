# cython: language_level=3
# distutils: extra_compile_args = -O3
"""The unstable tail of the raft log, compiled. The contract is unstable_py.py (same names and
behaviour; tests run over both). Entries of the compiled raftpb are handled field-by-field in C;
any other object with the Entry attributes works through the generic path.
"""
from fastkv._native.raftpb cimport Entry


def entries_size(ents):
    """Sum of `Entry.size()` (encoded bytes) over `ents`."""
    cdef Py_ssize_t total = 0
    for e in ents:
        if type(e) is Entry:
            total += 21 + len((<Entry>e).data)
        else:
            total += e.size()
    return total


def limit_size(ents, max_size):
    """The longest prefix of `ents` whose encoded size is <= max_size; always at least one entry.

    max_size None (or negative) means no limit. Returns `ents` itself when nothing is cut.
    """
    if max_size is None or max_size < 0 or len(ents) <= 1:
        return ents
    cdef Py_ssize_t limit = max_size, size = 0, k, n = len(ents)
    for k in range(n):
        e = ents[k]
        if type(e) is Entry:
            size += 21 + len((<Entry>e).data)
        else:
            size += e.size()
        if size > limit and k > 0:
            return ents[:k]
    return ents


cdef class Unstable:
    def __init__(self, Py_ssize_t offset=0):
        self.snapshot = None
        self.entries = []
        self.offset = offset

    cpdef Py_ssize_t maybe_first_index(self):
        """Index of the first entry possibly in the unstable snapshot, or 0."""
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return 0

    cpdef Py_ssize_t maybe_last_index(self):
        """Last index held here (entries, else snapshot), or 0."""
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return 0

    cpdef long long maybe_term(self, Py_ssize_t i):
        """Term of entry i if this tail knows it, else -1."""
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.metadata.index == i:
                return self.snapshot.metadata.term
            return -1
        cdef Py_ssize_t last = self.maybe_last_index()
        if last == 0 or i > last:
            return -1
        e = self.entries[i - self.offset]
        if type(e) is Entry:
            return (<Entry>e).term
        return e.term

    cpdef stable_to(self, Py_ssize_t i, long long t):
        """Entries up to (i, t) are persisted: drop them (only if the term still matches)."""
        cdef long long gt = self.maybe_term(i)
        if gt == -1:
            return
        if gt == t and i >= self.offset:
            del self.entries[: i + 1 - self.offset]
            self.offset = i + 1

    cpdef stable_snap_to(self, Py_ssize_t i):
        if self.snapshot is not None and self.snapshot.metadata.index == i:
            self.snapshot = None

    cpdef restore(self, snap):
        self.offset = snap.metadata.index + 1
        self.entries = []
        self.snapshot = snap

    cpdef truncate_and_append(self, ents):
        """Append `ents` (contiguous), replacing any conflicting suffix."""
        if not ents:
            return
        cdef Py_ssize_t after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= self.offset:
            self.offset = after
            self.entries = list(ents)
        else:
            del self.entries[after - self.offset:]
            self.entries.extend(ents)

    cpdef Py_ssize_t append_proposals(self, unsigned long long term, Py_ssize_t first_index, list ents) except -1:
        """Stamp `ents` with (term, first_index + k) and append them; returns the new last index.

        The leader's append path: first_index must be this log's last index + 1.
        """
        cdef Py_ssize_t i = first_index
        cdef Entry ce
        for e in ents:
            if type(e) is Entry:
                ce = <Entry>e
                ce.term = term
                ce.index = i
            else:
                e.term = term
                e.index = i
            i += 1
        if ents:
            if first_index == self.offset + len(self.entries):
                self.entries.extend(ents)
            else:
                self.truncate_and_append(ents)
        return i - 1

    cpdef list slice(self, Py_ssize_t lo, Py_ssize_t hi):
        """Entries [lo, hi); the caller guarantees offset <= lo <= hi <= offset + len(entries)."""
        if lo > hi:
            raise ValueError(f"invalid unstable slice {lo} > {hi}")
        cdef Py_ssize_t upper = self.offset + len(self.entries)
        if lo < self.offset or hi > upper:
            raise ValueError(f"unstable slice[{lo},{hi}) out of bound [{self.offset},{upper}]")
        return self.entries[lo - self.offset: hi - self.offset]
