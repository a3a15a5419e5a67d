"""Auto compaction: revision mode keeps the last N revisions (checked every 5 minutes as etcd; the
hidden FASTKV_AUTO_COMPACTION_CHECK_SECONDS shortens that here), periodic mode with a short
retention ("2s") compacts to the revision the store had that long ago. Compaction is observed the
way clients see it: reads below the compact revision fail with "compacted", at it they work."""
from __future__ import annotations

import time

import grpc

from tests.server._util import Member, env_with_src


def _compacted(c, revision: int) -> bool:
    try:
        c.get(b"k", revision=revision)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.OUT_OF_RANGE, exc
        assert exc.details() == "etcdserver: mvcc: required revision has been compacted"
        return True
    return False


def _wait_compacted(c, revision: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _compacted(c, revision):
            return True
        time.sleep(0.1)
    return False


def test_revision_mode_keeps_the_last_n_revisions(tmp_path):
    m = Member(tmp_path / "data", "--auto-compaction-mode", "revision", "--auto-compaction-retention", "10",
               env=env_with_src(FASTKV_AUTO_COMPACTION_CHECK_SECONDS=0.3)).start()
    try:
        c = m.client()
        assert not _compacted(c, 1)
        for i in range(40):
            c.put(b"k", b"v%d" % i)
        current = c.get(b"k").header.revision
        assert current == 41
        # after the next check: everything below current - 10 is gone, current - 10 is readable
        assert _wait_compacted(c, current - 11, timeout=5.0), "revision-mode compaction never ran"
        time.sleep(0.8)  # a few more checks with no writes must not compact further
        assert not _compacted(c, current - 10)
        assert c.get(b"k", revision=current - 10).kvs[0].value == b"v%d" % (current - 12)
        c.close()
    finally:
        m.stop()


def test_periodic_mode_with_short_retention(tmp_path):
    m = Member(tmp_path / "data", "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s").start()
    try:
        c = m.client()
        for i in range(10):
            c.put(b"k", b"v%d" % i)
        mark = c.get(b"k").header.revision
        t_mark = time.monotonic()
        # nothing older than the retention yet: no compaction in the first second
        time.sleep(1.0)
        assert not _compacted(c, 2)
        # once the retention has passed, the store is compacted up to (at most) the marked revision
        assert _wait_compacted(c, mark - 1, timeout=6.0), "periodic compaction never ran"
        assert time.monotonic() - t_mark >= 2.0 - 0.3
        assert not _compacted(c, mark)
        # it keeps going: new writes are compacted once they are older than the retention
        for i in range(5):
            c.put(b"k", b"w%d" % i)
        mark2 = c.get(b"k").header.revision
        assert _wait_compacted(c, mark2 - 1, timeout=6.0)
        c.close()
    finally:
        m.stop()


def _oldest_readable(c, start: int) -> int:
    rev = start
    while _compacted(c, rev):
        rev += 1
    return rev


def test_periodic_mode_compacts_once_per_retention_as_etcd(tmp_path):
    """etcd 3.4 compacts every retention period (not at every sample): with steady writes, the
    oldest readable revision moves in steps at least about one retention apart."""
    m = Member(tmp_path / "data", "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s").start()
    try:
        c = m.client()
        changes, oldest = [], 2
        t0 = time.monotonic()
        while time.monotonic() - t0 < 7.0:
            c.put(b"k", b"v")
            now_oldest = _oldest_readable(c, oldest)
            if now_oldest != oldest:
                changes.append(time.monotonic())
                oldest = now_oldest
            time.sleep(0.1)
        c.close()
        assert len(changes) >= 2, f"periodic compaction ran {len(changes)} times in 7 s with a 2 s retention"
        gaps = [b - a for a, b in zip(changes, changes[1:])]
        assert min(gaps) > 1.5, f"compactions closer than the retention: {gaps}"
    finally:
        m.stop()
