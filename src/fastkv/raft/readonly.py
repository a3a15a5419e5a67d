"""Linearizable reads without writing to the log (ReadIndex, Raft dissertation §6.4).

The leader records its commit index when a read arrives, then confirms it is still leader by a
round of heartbeats carrying the read's context; once a quorum of voters acknowledged that context,
the read may be served at the recorded index (after the state machine applied up to it). Requests
are answered in arrival order: an acknowledgement for a later context also confirms earlier ones.
"""
from __future__ import annotations


class ReadState:
    """A read that may be served once the applied index reaches `index`."""

    __slots__ = ("index", "request_ctx")

    def __init__(self, index: int, request_ctx: bytes):
        self.index = index
        self.request_ctx = request_ctx

    def __eq__(self, other):
        return isinstance(other, ReadState) and (self.index, self.request_ctx) == (other.index, other.request_ctx)

    def __repr__(self):
        return f"ReadState(index={self.index}, request_ctx={self.request_ctx!r})"


class ReadIndexStatus:
    __slots__ = ("req", "index", "acks")

    def __init__(self, req, index: int):
        self.req = req
        self.index = index
        self.acks: set = set()


class ReadOnly:
    __slots__ = ("pending", "queue")

    def __init__(self):
        self.pending: dict = {}  # context -> ReadIndexStatus
        self.queue: list = []    # contexts in arrival order

    def add_request(self, index: int, m) -> None:
        ctx = m.context
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(m, index)
        self.queue.append(ctx)

    def recv_ack(self, node_id: int, ctx: bytes):
        """Record that node_id acknowledged ctx; returns the set of ackers (None if unknown ctx)."""
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks.add(node_id)
        return rs.acks

    def advance(self, ctx: bytes) -> list:
        """Pop every request up to and including ctx; returns their statuses in order."""
        try:
            i = self.queue.index(ctx)
        except ValueError:
            return []
        done = self.queue[: i + 1]
        self.queue = self.queue[i + 1 :]
        return [self.pending.pop(c) for c in done]

    def last_pending_request_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""
