# cython: language_level=3
"""The WAL's write-behind thread: pwrite + fdatasync of one prepared batch, off the event loop,
without the GIL.

Why native: a Python worker thread needs the GIL to pick a job up and again to report it done.
While the loop thread runs Python (decoding the next requests, which is exactly when a write is in
flight under load) the worker queues for the GIL, and each write finishes hundreds of microseconds
after the disk did. This thread never takes the GIL: it waits on a lock, writes and syncs, and
tells the loop through an eventfd the loop polls.

Contract: one write in flight at a time (the Ready loop awaits each before the next). submit() and
result() are called on the loop thread; result() only after the eventfd became readable (or
instead of polling, wait() blocks for it). The submitted buffer stays referenced until result().
"""
import os
import threading

from cpython.pythread cimport (
    WAIT_LOCK,
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_release_lock,
    PyThread_type_lock,
)
from libc.errno cimport EINTR, errno
from libc.stdint cimport uint64_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.unistd cimport write

cdef extern from "unistd.h" nogil:
    ssize_t pwrite(int fd, const void *buf, size_t count, long long offset)
    int fdatasync(int fd)


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class DurableWriter:
    cdef PyThread_type_lock _job
    cdef int _efd
    cdef int _fd
    cdef const char *_ptr
    cdef Py_ssize_t _len
    cdef long long _offset
    cdef bint _sync
    cdef bint _busy
    cdef bint _pending
    cdef bint _stop
    cdef int _err
    cdef double _elapsed
    cdef object _buf
    cdef object _thread

    def __cinit__(self):
        self._job = PyThread_allocate_lock()
        if self._job is NULL:
            raise MemoryError()
        PyThread_acquire_lock(self._job, WAIT_LOCK)  # held: the thread waits until a job is posted
        self._efd = -1

    def __init__(self, str name="fastkv-wal"):
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def __dealloc__(self):
        if self._job is not NULL:
            PyThread_free_lock(self._job)

    def fileno(self) -> int:
        """The eventfd that becomes readable when the submitted write is done."""
        return self._efd

    @property
    def busy(self) -> bool:
        return self._busy

    def submit(self, int fd, buf, long long offset, bint sync):
        """Start pwrite(fd, buf, offset), then fdatasync(fd) when `sync`, on the writer thread."""
        if self._busy:
            raise RuntimeError("a write is already in flight")
        if self._stop:
            raise RuntimeError("the writer is closed")
        cdef const unsigned char[::1] view = buf
        self._buf = buf
        self._ptr = <const char *>&view[0] if view.shape[0] else NULL
        self._len = view.shape[0]
        self._fd = fd
        self._offset = offset
        self._sync = sync
        self._err = 0
        self._busy = True
        self._pending = True
        PyThread_release_lock(self._job)

    def result(self) -> float:
        """The finished write's fdatasync time in seconds (0.0 without one); OSError if the write
        or the sync failed. Consumes the eventfd's signal."""
        if not self._busy:
            raise RuntimeError("no write in flight")
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            raise RuntimeError("the write is not finished yet") from None
        self._busy = False
        self._buf = None
        if self._err:
            raise OSError(self._err, os.strerror(self._err))
        return self._elapsed

    def wait(self) -> float:
        """Block until the write is done, then result()."""
        os.set_blocking(self._efd, True)
        try:
            return self.result()
        finally:
            os.set_blocking(self._efd, False)

    def close(self) -> None:
        """Stop the thread (after the write in flight, if any) and close the eventfd."""
        if self._stop:
            return
        self._stop = True
        PyThread_release_lock(self._job)  # the thread ends after the write in flight, if any
        self._thread.join()
        os.close(self._efd)

    def _serve(self):
        with nogil:
            self._run()

    cdef void _run(self) noexcept nogil:
        cdef ssize_t n
        cdef const char *p
        cdef Py_ssize_t left
        cdef long long off
        cdef uint64_t one = 1
        cdef double t0
        while True:
            PyThread_acquire_lock(self._job, WAIT_LOCK)
            if not self._pending:  # woken by close()
                return
            self._pending = False
            p, left, off = self._ptr, self._len, self._offset
            self._elapsed = 0.0
            while left > 0:
                n = pwrite(self._fd, p, left, off)
                if n < 0:
                    if errno == EINTR:
                        continue
                    self._err = errno
                    break
                p += n
                left -= n
                off += n
            if self._err == 0 and self._sync:
                t0 = _now()
                if fdatasync(self._fd) != 0:
                    self._err = errno
                self._elapsed = _now() - t0
            while write(self._efd, &one, 8) < 0 and errno == EINTR:
                pass
            if self._stop:
                return
