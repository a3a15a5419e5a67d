"""A user's merged key permissions (etcd's range permission cache), and the coverage checks.

Every role a user holds contributes its permissions; READWRITE counts as both. A permission over
a single key is the interval [key, key + "\\0"); range_end "\\0" means "every key >= key" (an open
end, None here). A request over one key needs one interval containing it; a request over a range
needs the union of the intervals to cover the whole range without a gap, as etcd decides it.
"""
from __future__ import annotations

from fastkv.api.etcdpb.authpb import auth_pb2

READ, WRITE, READWRITE = auth_pb2.Permission.READ, auth_pb2.Permission.WRITE, auth_pb2.Permission.READWRITE


def _interval(key: bytes, range_end: bytes) -> tuple:
    if not range_end:
        return key, key + b"\x00"
    if range_end == b"\x00":
        return key, None
    return key, range_end


class UnifiedPermissions:
    """Sorted read and write intervals of one user: (start, end or None for unbounded)."""

    __slots__ = ("read", "write")

    def __init__(self, perms):
        read, write = [], []
        for p in perms:
            ivl = _interval(bytes(p.key), bytes(p.range_end))
            if p.permType in (READ, READWRITE):
                read.append(ivl)
            if p.permType in (WRITE, READWRITE):
                write.append(ivl)
        self.read = sorted(read, key=_sort_key)
        self.write = sorted(write, key=_sort_key)

    def permits(self, key: bytes, range_end: bytes, write: bool) -> bool:
        ivls = self.write if write else self.read
        if not range_end:
            return any(s <= key and (e is None or key < e) for s, e in ivls)
        end = None if range_end == b"\x00" else range_end
        return _covers(ivls, key, end)


def _sort_key(ivl):
    return ivl[0]


def _covers(ivls, start: bytes, end) -> bool:
    """Whether the sorted intervals cover [start, end) (end None = unbounded) without a gap."""
    cur = start
    for s, e in ivls:
        if s > cur:
            return False  # a gap at cur (sorted by start: no later interval starts before it)
        if e is None:
            return True
        if e > cur:
            cur = e
            if end is not None and cur >= end:
                return True
    return False
