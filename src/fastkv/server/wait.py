"""Wait registry: the future of each proposal, resolved by the applier with its result.

Only the event loop thread touches it (proposals are made and entries applied there).
"""
from __future__ import annotations

import asyncio
import itertools


class Wait:
    def __init__(self):
        # ids are unique per member and across restarts: the high bits carry the start time
        import time

        self._ids = itertools.count(((int(time.time() * 1000) & 0xFFFFFFFFFF) << 20) | 1)
        self._pending: dict[int, asyncio.Future] = {}

    def next_id(self) -> int:
        return next(self._ids) & 0xFFFFFFFFFFFFFFFF

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
