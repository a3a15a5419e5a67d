"""UnaryCall: a handler coroutine driven step-wise from loop callbacks, without an asyncio Task."""
from __future__ import annotations

import asyncio

import pytest
import uvloop

from fastkv.errors import ErrTimeout, EtcdError
from fastkv.frontend import status
from fastkv.frontend.calls import UnaryCall


def drive(coro_fn, timeout=0.0, loop_factory=uvloop.new_event_loop, after=None):
    """Start a call from a plain loop callback (as data_received does); return what on_done got."""
    loop = loop_factory()
    result = []
    try:
        def start():
            call = UnaryCall(loop, coro_fn(), lambda c, r, code, msg: result.append((r, code, msg)), 1, timeout)
            call.start()
            if after:
                after(loop, call)

        loop.call_soon(start)

        async def wait():
            for _ in range(500):
                if result:
                    return
                await asyncio.sleep(0.01)

        loop.run_until_complete(wait())
    finally:
        loop.close()
    return result


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_factory(request):
    return uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop


def test_handler_without_io_finishes_in_the_first_step(loop_factory):
    async def h():
        return "answer"

    assert drive(h, loop_factory=loop_factory) == [("answer", 0, "")]


def test_awaits_futures_and_sleep_and_sees_itself_as_current_task(loop_factory):
    async def h():
        me = asyncio.current_task()
        await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, fut.set_result, 5)
        v = await fut
        assert asyncio.current_task() is me and me is not None
        return v

    assert drive(h, loop_factory=loop_factory) == [(5, 0, "")]


def test_asyncio_timeout_inside_a_handler_raises_timeout_error(loop_factory):
    async def h():
        try:
            async with asyncio.timeout(0.02):
                await asyncio.get_running_loop().create_future()
        except TimeoutError:
            raise ErrTimeout() from None

    assert drive(h, loop_factory=loop_factory) == [(None, status.UNAVAILABLE, "etcdserver: request timed out")]


def test_etcd_error_maps_to_its_status(loop_factory):
    class ErrX(EtcdError):
        message, code = "etcdserver: permission denied", "PERMISSION_DENIED"

    async def h():
        await asyncio.sleep(0)
        raise ErrX()

    assert drive(h, loop_factory=loop_factory) == [(None, 7, "etcdserver: permission denied")]


def test_grpc_deadline_cancels_the_handler_and_runs_its_finally(loop_factory):
    cleaned = []

    async def h():
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            cleaned.append(True)

    assert drive(h, timeout=0.02, loop_factory=loop_factory) == [
        (None, status.DEADLINE_EXCEEDED, "context deadline exceeded")]
    assert cleaned == [True]


def test_abandoned_call_reports_nothing_and_cleans_up(loop_factory):
    cleaned = []

    async def h():
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            cleaned.append(True)

    def abandon_soon(loop, call):
        loop.call_later(0.01, call.abandon)
        loop.call_later(0.05, lambda: cleaned.append("checked"))

    loop = loop_factory()
    try:
        got = []

        def start():
            call = UnaryCall(loop, h(), lambda *a: got.append(a), 1)
            call.start()
            abandon_soon(loop, call)

        loop.call_soon(start)
        loop.run_until_complete(asyncio.sleep(0.1))
    finally:
        loop.close()
    assert got == [] and cleaned[0] is True


def test_a_bug_in_a_handler_is_internal_not_a_crash(loop_factory):
    async def h():
        raise KeyError("oops")

    assert drive(h, loop_factory=loop_factory) == [(None, status.INTERNAL, "fastkv: internal error: KeyError")]
