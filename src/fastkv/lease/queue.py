"""DeadlineQueue: which lease is due first, with O(log n) updates.

The lessor keeps two of these on the leader: lease expiries and scheduled checkpoints. Each lease
has at most one live deadline; setting a new one supersedes the old entry, which stays in the heap
as a stale entry and is skipped when it surfaces (cheaper than deleting from the middle of a heap).
The heap is rebuilt when stale entries outnumber live ones, so memory stays O(live leases) even
under a flood of keep-alives. Ties on a deadline come out in lease id order (deterministic).
"""
from __future__ import annotations

import heapq
import itertools


class DeadlineQueue:
    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self):
        self._heap: list = []  # (deadline, lease_id, seq)
        self._live: dict = {}  # lease_id -> seq of its live heap entry
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, lease_id: int) -> bool:
        return lease_id in self._live

    def set(self, lease_id: int, deadline: float) -> None:
        """Give the lease this deadline, replacing any earlier one."""
        seq = next(self._seq)
        self._live[lease_id] = seq
        heapq.heappush(self._heap, (deadline, lease_id, seq))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._rebuild()

    def discard(self, lease_id: int) -> None:
        self._live.pop(lease_id, None)

    def clear(self) -> None:
        self._heap.clear()
        self._live.clear()

    def peek(self):
        """(deadline, lease_id) of the earliest live entry, or None."""
        heap, live = self._heap, self._live
        while heap:
            deadline, lease_id, seq = heap[0]
            if live.get(lease_id) == seq:
                return deadline, lease_id
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float, limit: int = 0) -> list:
        """Remove and return [(deadline, lease_id)] with deadline <= now, earliest first; at most
        `limit` of them when limit > 0."""
        out = []
        heap, live = self._heap, self._live
        while heap and (limit <= 0 or len(out) < limit):
            deadline, lease_id, seq = heap[0]
            if live.get(lease_id) != seq:
                heapq.heappop(heap)
                continue
            if deadline > now:
                break
            heapq.heappop(heap)
            del live[lease_id]
            out.append((deadline, lease_id))
        return out

    def _rebuild(self) -> None:
        live = self._live
        self._heap = [e for e in self._heap if live.get(e[1]) == e[2]]
        heapq.heapify(self._heap)
