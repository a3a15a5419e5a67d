"""The follower's side of a snapshot file: chunks go to a temporary file in the snapshot directory
through the loop's executor (a busy disk throttles writers for hundreds of milliseconds, and the
heartbeats on the stream must not wait for that), hashed as they are written; `finish` verifies
size and digest (frame.snapshot_digest), fsyncs, and renames to the final name; `abort` removes the partial file.

Backpressure: `write` returns True while more than HIGH_WATER bytes wait for the disk; the caller
pauses reading the socket until `on_drained` fires.
"""
from __future__ import annotations

import asyncio
import os
import tempfile

from fastkv.transport import frame as fr

HIGH_WATER = 8 << 20


class SnapshotFile:
    def __init__(self, snap_dir: str, prefix: str, on_drained):
        os.makedirs(snap_dir, exist_ok=True)
        fd, self.path = tempfile.mkstemp(dir=snap_dir, prefix=prefix, suffix=".snap.db.partial")
        self._f = os.fdopen(fd, "wb")
        self._digest = fr.snapshot_digest()
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._inflight: asyncio.Future | None = None
        self._error: BaseException | None = None
        self._idle: asyncio.Future | None = None
        self._on_drained = on_drained
        self.received = 0

    def write(self, chunk: bytes) -> bool:
        """Queue a chunk; True when the caller should pause reading until on_drained."""
        self.received += len(chunk)
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._inflight is None:
            self._kick()
        return self._pending_bytes > HIGH_WATER

    def _kick(self) -> None:
        chunks, self._pending, self._pending_bytes = self._pending, [], 0
        if self._f is None:   # aborted
            return
        self._inflight = self._loop.run_in_executor(None, _write_all, self._f, self._digest, chunks)
        self._inflight.add_done_callback(self._written)

    def _written(self, fut) -> None:
        self._inflight = None
        if fut.cancelled():
            self._error = asyncio.CancelledError()
        elif fut.exception() is not None:
            self._error = fut.exception()
        if self._pending and self._error is None and self._f is not None:
            self._kick()
        else:
            self._on_drained()
            if self._idle is not None and not self._idle.done():
                self._idle.set_result(None)

    async def _drain(self) -> None:
        # wait for _written to see the last write through; awaiting the executor future itself
        # could return before that callback ran (a done future does not yield)
        if self._inflight is not None:
            self._idle = self._loop.create_future()
            await self._idle
        if self._error is not None:
            raise self._error

    async def finish(self, expected_size: int, expected_digest: bytes, final_path: str) -> str | None:
        """Verify and persist; returns None on success or the reason the file was rejected."""
        await self._drain()
        if self.received != expected_size:
            return f"snapshot ended after {self.received} of {expected_size} bytes"
        if self._digest.digest() != expected_digest:
            return "snapshot checksum mismatch (XXH3-128): the backend file was corrupted in transit"
        f, self._f = self._f, None
        await self._loop.run_in_executor(None, _sync_close_rename, f, self.path, final_path)
        self.path = ""
        return None

    def abort(self) -> None:
        """Drop the partial file (safe to call more than once, and while a write is in flight)."""
        f, self._f = self._f, None
        path, self.path = self.path, ""
        if f is None and not path:
            return
        if self._inflight is not None:
            # let the running write finish on its thread before closing under it
            self._inflight.add_done_callback(lambda _f: _close_unlink(f, path))
        else:
            _close_unlink(f, path)


def _write_all(f, digest, chunks) -> None:
    for c in chunks:
        f.write(c)
        digest.update(c)


def _close_unlink(f, path: str) -> None:
    if f is not None:
        f.close()
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _sync_close_rename(f, path: str, final: str) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()
    os.replace(path, final)
    dfd = os.open(os.path.dirname(final) or ".", os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
