"""Wait registry: the future of each proposal, resolved by the applier with its result.

Only the event loop thread touches it (proposals are made and entries applied there).
"""
from __future__ import annotations

import asyncio


class RequestIDs:
    """Request ids unique across the members of a cluster and across restarts (etcd's idutil):
    the low 16 bits of the member id in the top 16 bits, then the start time in milliseconds
    (40 bits) and an 8-bit counter that together count up from there. Ids are the keys of the
    wait registry on the proposing member, and every member sees them in the log."""

    def __init__(self, member_id: int, now_ms: int):
        self._prefix = (member_id & 0xFFFF) << 48
        self._suffix = (now_ms & 0xFFFFFFFFFF) << 8

    def next(self) -> int:
        self._suffix += 1
        return self._prefix | (self._suffix & 0xFFFFFFFFFFFF)


class Wait:
    """The pending proposals of this member, by request id.

    With a timeout, a request not triggered within `timeout` seconds of its registration fails
    with expired() (etcd's request timeout). One loop timer sweeps them rather than a timer per
    request: every request gets the same timeout, so registration order is deadline order and a
    sweep stops at the first request with time left."""

    def __init__(self, member_id: int = 0, now_ms: int | None = None, timeout: float = 0.0, expired=None):
        if now_ms is None:
            import time

            now_ms = int(time.time() * 1000)
        self._ids = RequestIDs(member_id, now_ms)
        self._pending: dict[int, tuple[asyncio.Future, float]] = {}  # id -> (future, deadline)
        self._timeout = timeout
        self._expired = expired
        self._timer = None

    def next_id(self) -> int:
        return self._ids.next()

    def register(self, request_id: int) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if self._timeout > 0:
            deadline = loop.time() + self._timeout
            self._pending[request_id] = (fut, deadline)
            if self._timer is None:
                self._timer = loop.call_at(deadline, self._sweep, loop)
        else:
            self._pending[request_id] = (fut, 0.0)
        return fut

    def trigger(self, request_id: int, result) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is not None and not entry[0].done():
            if isinstance(result, BaseException):
                entry[0].set_exception(result)
            else:
                entry[0].set_result(result)

    def cancel(self, request_id: int) -> None:
        self._pending.pop(request_id, None)

    def fail_all(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fut, _deadline in pending.values():
            if not fut.done():
                fut.set_exception(exc)

    def _sweep(self, loop) -> None:
        self._timer = None
        now = loop.time()
        expired, next_deadline = [], None
        for request_id, (_fut, deadline) in self._pending.items():
            if deadline > now:
                next_deadline = deadline
                break
            expired.append(request_id)
        for request_id in expired:
            fut = self._pending.pop(request_id)[0]
            if not fut.done():
                fut.set_exception(self._expired())
        if next_deadline is not None:
            self._timer = loop.call_at(next_deadline, self._sweep, loop)

    def __len__(self) -> int:
        return len(self._pending)
