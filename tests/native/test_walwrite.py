"""walwrite: the WAL's GIL-free writer thread, compiled and twin, against real files."""
import asyncio
import errno
import os
import select

import pytest

from tests.conftest import native_and_twin

impl = native_and_twin("walwrite")


@pytest.fixture
def writer(impl):
    w = impl.DurableWriter("test-wal")
    yield w
    w.close()


def test_writes_at_offsets_and_syncs(writer, tmp_path):
    fd = os.open(tmp_path / "seg", os.O_RDWR | os.O_CREAT)
    try:
        writer.submit(fd, b"hello ", 0, True)
        assert writer.busy
        elapsed = writer.wait()
        assert elapsed > 0.0 and not writer.busy
        writer.submit(fd, bytearray(b"world"), 6, False)
        assert writer.wait() == 0.0  # no fdatasync asked for
        writer.submit(fd, memoryview(b"XXwide"), 4, True)
        writer.wait()
        assert os.pread(fd, 100, 0) == b"hellXXwided"
    finally:
        os.close(fd)


def test_large_buffer_written_whole(writer, tmp_path):
    data = os.urandom(3 << 20)
    fd = os.open(tmp_path / "big", os.O_RDWR | os.O_CREAT)
    try:
        writer.submit(fd, data, 4096, True)
        writer.wait()
        assert os.pread(fd, len(data) + 10, 4096) == data
    finally:
        os.close(fd)


def test_eventfd_readable_only_when_done(writer, tmp_path):
    fd = os.open(tmp_path / "seg", os.O_RDWR | os.O_CREAT)
    try:
        assert select.select([writer.fileno()], [], [], 0)[0] == []
        with pytest.raises(RuntimeError):
            writer.result()  # nothing in flight
        writer.submit(fd, b"x" * 100, 0, True)
        with pytest.raises(RuntimeError):
            writer.submit(fd, b"y", 0, True)  # one at a time
        assert select.select([writer.fileno()], [], [], 5)[0] == [writer.fileno()]
        writer.result()
        assert select.select([writer.fileno()], [], [], 0)[0] == []  # consumed
    finally:
        os.close(fd)


def test_errors_come_back_as_oserror(writer, tmp_path):
    rfd = os.open(tmp_path / "ro", os.O_RDONLY | os.O_CREAT)
    os.close(rfd)
    rfd = os.open(tmp_path / "ro", os.O_RDONLY)
    try:
        writer.submit(rfd, b"abc", 0, True)
        with pytest.raises(OSError) as ei:
            writer.wait()
        assert ei.value.errno == errno.EBADF
    finally:
        os.close(rfd)
    # and the writer still works afterwards
    fd = os.open(tmp_path / "ok", os.O_RDWR | os.O_CREAT)
    try:
        writer.submit(fd, b"abc", 0, True)
        writer.wait()
    finally:
        os.close(fd)


def test_close_waits_for_the_write_in_flight(impl, tmp_path):
    w = impl.DurableWriter()
    fd = os.open(tmp_path / "seg", os.O_RDWR | os.O_CREAT)
    try:
        data = os.urandom(1 << 20)
        w.submit(fd, data, 0, True)
        w.close()
        assert os.pread(fd, len(data), 0) == data
        with pytest.raises(RuntimeError):
            w.submit(fd, b"late", 0, True)
    finally:
        os.close(fd)
    w.close()  # twice is harmless


def test_loop_integration(writer, tmp_path):
    """How the Ready loop uses it: add_reader on the eventfd, result() in the callback."""
    fd = os.open(tmp_path / "seg", os.O_RDWR | os.O_CREAT)

    async def run():
        loop = asyncio.get_running_loop()
        done = []
        fut = None

        def on_ready():
            done.append(writer.result())
            fut.set_result(None)

        loop.add_reader(writer.fileno(), on_ready)
        try:
            off = 0
            for i in range(50):
                fut = loop.create_future()
                rec = b"%05d" % i
                writer.submit(fd, rec, off, True)
                off += len(rec)
                await asyncio.wait_for(fut, 10)
        finally:
            loop.remove_reader(writer.fileno())
        return len(done)

    try:
        assert asyncio.run(run()) == 50
        assert os.pread(fd, 250, 0) == b"".join(b"%05d" % i for i in range(50))
    finally:
        os.close(fd)
