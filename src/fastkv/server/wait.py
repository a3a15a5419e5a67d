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
    def __init__(self, member_id: int = 0, now_ms: int | None = None):
        if now_ms is None:
            import time

            now_ms = int(time.time() * 1000)
        self._ids = RequestIDs(member_id, now_ms)
        self._pending: dict[int, asyncio.Future] = {}

    def next_id(self) -> int:
        return self._ids.next()

    def register(self, request_id: int) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        return fut

    def trigger(self, request_id: int, result) -> None:
        fut = self._pending.pop(request_id, None)
        if fut is not None and not fut.done():
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    def cancel(self, request_id: int) -> None:
        self._pending.pop(request_id, None)

    def fail_all(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)

    def __len__(self) -> int:
        return len(self._pending)
