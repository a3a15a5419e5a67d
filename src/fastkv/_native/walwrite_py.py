"""Pure-Python twin of walwrite.pyx: the same DurableWriter on a Python thread (which needs the GIL
to pick a job up and to report it, the cost the compiled module avoids)."""
from __future__ import annotations

import os
import threading
import time


class DurableWriter:
    def __init__(self, name: str = "fastkv-wal"):
        self._job = threading.Semaphore(0)
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._busy = False
        self._pending = False
        self._stop = False
        self._err = 0
        self._elapsed = 0.0
        self._args = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        return self._efd

    @property
    def busy(self) -> bool:
        return self._busy

    def submit(self, fd: int, buf, offset: int, sync: bool) -> None:
        if self._busy:
            raise RuntimeError("a write is already in flight")
        if self._stop:
            raise RuntimeError("the writer is closed")
        self._args = (fd, memoryview(buf).cast("B"), offset, bool(sync))
        self._err = 0
        self._busy = True
        self._pending = True
        self._job.release()

    def result(self) -> float:
        if not self._busy:
            raise RuntimeError("no write in flight")
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            raise RuntimeError("the write is not finished yet") from None
        self._busy = False
        self._args = None
        if self._err:
            raise OSError(self._err, os.strerror(self._err))
        return self._elapsed

    def wait(self) -> float:
        os.set_blocking(self._efd, True)
        try:
            return self.result()
        finally:
            os.set_blocking(self._efd, False)

    def close(self) -> None:
        if self._stop:
            return
        self._stop = True
        self._job.release()  # the thread ends after the write in flight, if any
        self._thread.join()
        os.close(self._efd)

    def _run(self) -> None:
        while True:
            self._job.acquire()
            if not self._pending:  # woken by close()
                return
            self._pending = False
            fd, view, off, sync = self._args
            self._elapsed = 0.0
            try:
                while view:
                    n = os.pwrite(fd, view, off)
                    view = view[n:]
                    off += n
                if sync:
                    t0 = time.monotonic()
                    try:
                        os.fdatasync(fd)
                    finally:
                        self._elapsed = time.monotonic() - t0
            except OSError as exc:
                self._err = exc.errno or 5  # EIO when the OS gave no number
            os.eventfd_write(self._efd, 1)
            if self._stop:
                return
