"""Run a unary handler's coroutine step by step from the connection's callbacks, without creating
an asyncio Task per call.

A call's first step runs inside data_received; a handler that needs no I/O (a serializable range,
Status) finishes there. Otherwise the coroutine yields the future it waits for and the call
resumes from that future's done callback. While a step runs, the call stands in as the loop's
"current task" (asyncio._enter_task), because the server's code uses asyncio.timeout, which needs
one to cancel; the call implements the part of the Task interface that asyncio.timeout uses
(cancel, cancelling, uncancel). Anything else that needs a real Task (asyncio.shield,
TaskGroup) must not be awaited by unary handlers directly; they can create a Task themselves.
"""
from __future__ import annotations

import asyncio
import logging
from asyncio.tasks import _enter_task, _leave_task

from fastkv.errors import EtcdError
from fastkv.frontend import status

log = logging.getLogger(__name__)


class UnaryCall:
    """One unary call in flight. `on_done(call, response_or_None, status, message)` is called once."""

    __slots__ = ("loop", "coro", "on_done", "stream_id", "_waiting", "_cancel_requests", "_must_cancel",
                 "_deadline", "_deadline_hit", "finished", "__weakref__")

    def __init__(self, loop, coro, on_done, stream_id: int, timeout: float = 0.0):
        self.loop = loop
        self.coro = coro
        self.on_done = on_done
        self.stream_id = stream_id
        self._waiting = None
        self._cancel_requests = 0
        self._must_cancel = False
        self._deadline = loop.call_later(timeout, self._on_deadline) if timeout > 0 else None
        self._deadline_hit = False
        self.finished = False

    # --- the parts of asyncio.Task that asyncio.timeout uses -------------------------------------
    def cancel(self, msg=None) -> bool:
        if self.finished:
            return False
        self._cancel_requests += 1
        if self._waiting is not None and self._waiting.cancel():
            return True
        self._must_cancel = True
        return True

    def cancelling(self) -> int:
        return self._cancel_requests

    def uncancel(self) -> int:
        if self._cancel_requests > 0:
            self._cancel_requests -= 1
        return self._cancel_requests

    def get_loop(self):
        return self.loop

    def done(self) -> bool:
        return self.finished

    def get_name(self) -> str:
        return f"unary-call-{self.stream_id}"

    def get_coro(self):
        return self.coro

    # --- driving --------------------------------------------------------------------------------
    def start(self) -> None:
        self._step()

    def abandon(self) -> None:
        """The client went away: stop the handler where it waits (its finally blocks run)."""
        if not self.finished:
            self.on_done = None
            self.cancel()

    def _on_deadline(self) -> None:
        self._deadline = None
        self._deadline_hit = True
        self.cancel()

    def _wakeup(self, fut) -> None:
        self._waiting = None
        self._step()

    def _step(self) -> None:
        exc = None
        if self._must_cancel:
            self._must_cancel = False
            exc = asyncio.CancelledError()
        loop = self.loop
        _enter_task(loop, self)
        try:
            yielded = self.coro.send(None) if exc is None else self.coro.throw(exc)
        except StopIteration as stop:
            self._finish(stop.value, status.OK, "")
        except EtcdError as err:
            self._finish(None, status.of_error(err), err.message)
        except asyncio.CancelledError:
            if self._deadline_hit:
                self._finish(None, status.DEADLINE_EXCEEDED, "context deadline exceeded")
            else:
                self._finish(None, status.CANCELLED, "context canceled")
        except Exception as err:  # a bug: answer INTERNAL, keep serving
            log.exception("unary handler failed")
            self._finish(None, status.INTERNAL, f"fastkv: internal error: {type(err).__name__}")
        else:
            if getattr(yielded, "_asyncio_future_blocking", None):
                yielded._asyncio_future_blocking = False
                self._waiting = yielded
                yielded.add_done_callback(self._wakeup)
                if self._must_cancel and yielded.cancel():
                    self._must_cancel = False
            elif yielded is None:  # bare yield (asyncio.sleep(0)): run again on the next loop turn
                loop.call_soon(self._step)
            else:
                self.coro.close()
                self._finish(None, status.INTERNAL, "fastkv: handler yielded a non-future")
        finally:
            _leave_task(loop, self)

    def _finish(self, response, code: int, message: str) -> None:
        self.finished = True
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        cb, self.on_done = self.on_done, None
        if cb is not None:
            cb(self, response, code, message)
