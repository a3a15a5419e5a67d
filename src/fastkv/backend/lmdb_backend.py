"""LMDB backend (the default): py-lmdb underneath, batched commits on top.

Each commit is one LMDB write transaction, synced to disk before it returns (LMDB's default
sync=True): that sync is the only place the backend touches the disk's durability, so everything
acknowledged after `force_commit` survives SIGKILL or power loss.

Map size: LMDB needs a maximum file size up front. We start small (`initial_map_size`) and double on
MDB_MAP_FULL up to `max_size`; past that a commit fails with etcd's "database space exceeded" and
the batch stays buffered (nothing is lost; the caller sees the error). A full disk (ENOSPC during
commit) is reported the same way and likewise leaves both the file and the buffer intact.
"""
from __future__ import annotations

import logging
import os
import shutil

import lmdb

from fastkv.backend._batching import BatchingBackend
from fastkv.backend.base import BUCKETS, DEFAULT_BATCH_INTERVAL, DEFAULT_BATCH_LIMIT, DEFAULT_QUOTA_BYTES
from fastkv.errors import ErrNoSpace

log = logging.getLogger(__name__)

DATA_FILE = "data.mdb"


class LMDBBackend(BatchingBackend):
    def __init__(
        self,
        path: str,
        *,
        batch_limit: int = DEFAULT_BATCH_LIMIT,
        batch_interval: float = DEFAULT_BATCH_INTERVAL,
        initial_map_size: int = 64 * 1024**2,
        max_size: int = DEFAULT_QUOTA_BYTES + 256 * 1024**2,
    ):
        self.path = os.fspath(path)
        os.makedirs(self.path, exist_ok=True)
        self.max_size = max_size
        existing = os.path.exists(os.path.join(self.path, DATA_FILE))
        size = os.path.getsize(os.path.join(self.path, DATA_FILE)) if existing else 0
        self._map_size = min(max(initial_map_size, _round_up(size * 2, 1 << 20)), max(max_size, size))
        self._open_env()
        super().__init__(batch_limit=batch_limit, batch_interval=batch_interval)

    def _open_env(self) -> None:
        self._env = lmdb.open(
            self.path,
            map_size=self._map_size,
            subdir=True,
            max_dbs=len(BUCKETS) + 1,
            sync=True,
            metasync=True,
            readahead=False,  # point reads by revision: readahead only pollutes the page cache
            meminit=False,
            lock=True,
        )
        self._dbs = [self._env.open_db(name.encode()) for name in BUCKETS]
        self._rtxn = self._env.begin(write=False, buffers=False)

    # --- committed-state reads -----------------------------------------------------------------
    def _stored_get(self, bucket: int, key: bytes):
        return self._rtxn.get(key, db=self._dbs[bucket])

    def _stored_range(self, bucket: int, start: bytes, end, limit: int) -> list:
        out = []
        cur = self._rtxn.cursor(db=self._dbs[bucket])
        if not cur.set_range(start):
            return out
        for k, v in cur.iternext():
            if end != b"" and k >= end:
                break
            out.append((k, v))
            if limit and len(out) >= limit:
                break
        return out

    # --- commit ----------------------------------------------------------------------------------
    # Readers use one read transaction, renewed after each commit: a commit in flight does not
    # change what they see, so the committer thread can write and sync without the lock.
    detached_commits = True

    def _commit_buffers(self, buffers) -> None:
        while True:
            txn = self._env.begin(write=True)
            try:
                for buffer in buffers:
                    buffer.write_to_lmdb(txn, self._dbs)
                txn.commit()
            except lmdb.MapFullError:
                txn.abort()
                self._grow_map()
                continue
            except lmdb.Error as exc:
                txn.abort()
                if _is_no_space(exc):
                    log.error("backend commit failed, disk full: %s (writes kept buffered)", exc)
                    raise ErrNoSpace() from exc
                raise
            break
        self._readers_moved()

    def _begin_commit(self):
        """(under the lock) The write transaction of a detached commit: storage orders writers, so
        taking it here orders commits as their batches were frozen."""
        return self._env.begin(write=True)

    def _finish_commit(self, txn, buffer) -> None:
        """(lock not held) Write the frozen batch and commit (LMDB syncs before commit returns)."""
        try:
            buffer.write_to_lmdb(txn, self._dbs)
            txn.commit()
        except lmdb.Error as exc:
            txn.abort()
            log.warning("backend commit off the lock failed (%s); retried under the lock", exc)
            raise

    def _readers_moved(self) -> None:
        """(under the lock) Readers move to the newest committed state."""
        self._rtxn.abort()
        self._rtxn = self._env.begin(write=False, buffers=False)

    def _grow_map(self) -> None:
        if self._map_size >= self.max_size:
            log.error("backend map is full at %d bytes (limit %d)", self._map_size, self.max_size)
            raise ErrNoSpace()
        new_size = min(self._map_size * 2, self.max_size)
        self._rtxn.abort()  # set_mapsize needs no active transaction in this process
        self._env.set_mapsize(new_size)
        self._map_size = new_size
        self._rtxn = self._env.begin(write=False, buffers=False)

    # --- sizes and maintenance ------------------------------------------------------------------
    def size(self) -> int:
        """Bytes the database file occupies (etcd_mvcc_db_total_size_in_bytes)."""
        try:
            return os.path.getsize(os.path.join(self.path, DATA_FILE))
        except OSError:
            return 0

    def size_in_use(self) -> int:
        """Bytes of pages in use (high-water mark of allocated pages, minus nothing freed yet)."""
        info = self._env.info()
        stat = self._env.stat()
        return (info["last_pgno"] + 1) * stat["psize"]

    def map_size(self) -> int:
        return self._map_size

    def defrag(self) -> None:
        """Rewrite the file compactly (LMDB copy with compaction), then swap it in."""
        with self._lock:
            self._commit_locked(force=True)
            tmp = self.path + ".defrag"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            self._env.copy(tmp, compact=True)
            # the copy must be on disk before it replaces the live file, or a power cut right
            # after the swap could leave a file whose pages never reached the disk
            fd = os.open(os.path.join(tmp, DATA_FILE), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._rtxn.abort()
            self._env.close()
            os.replace(os.path.join(tmp, DATA_FILE), os.path.join(self.path, DATA_FILE))
            _fsync_dir(self.path)
            shutil.rmtree(tmp, ignore_errors=True)
            self._open_env()

    def copy_to(self, dirpath: str) -> str:
        """Commit what is buffered, then copy the committed database into `dirpath` (a consistent
        read transaction of its own: writers go on meanwhile). Returns the copied file's path. This
        is what a leader sends a follower that needs a snapshot."""
        self.force_commit()
        os.makedirs(dirpath, exist_ok=True)
        self._env.copy(dirpath)
        return os.path.join(dirpath, DATA_FILE)

    def replace_data(self, path: str) -> None:
        """Replace the whole database with the file at `path` (a leader's copy, verified by the
        transport): buffered writes are dropped, the file is synced and renamed into place, and
        readers see the new state. The caller rebuilds what it derived from the old one."""
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        with self._lock:
            self._buffer.clear()
            self._committing = None
            self._rtxn.abort()
            self._env.close()
            os.replace(path, os.path.join(self.path, DATA_FILE))
            _fsync_dir(self.path)
            size = os.path.getsize(os.path.join(self.path, DATA_FILE))
            self._map_size = max(self._map_size, min(_round_up(size * 2, 1 << 20), max(self.max_size, size)))
            self._open_env()

    def write_snapshot(self, fileobj) -> int:
        """Write a consistent copy of the committed database to a file object; returns bytes."""
        with self._lock:
            self._commit_locked(force=True)
            import tempfile

            with tempfile.TemporaryDirectory(dir=os.path.dirname(self.path) or ".") as tmp:
                self._env.copy(tmp, compact=True)
                n = 0
                with open(os.path.join(tmp, DATA_FILE), "rb") as f:
                    while chunk := f.read(1 << 20):
                        fileobj.write(chunk)
                        n += len(chunk)
                return n

    def close(self) -> None:
        self._stop_committer()
        with self._lock:
            if self._closed:
                return
            try:
                self._commit_locked(force=True)
            finally:
                self._closed = True
                self._rtxn.abort()
                self._env.close()


def _round_up(n: int, mult: int) -> int:
    return (n + mult - 1) // mult * mult


def _is_no_space(exc: Exception) -> bool:
    text = str(exc).lower()
    return "no space" in text or "enospc" in text or "disk full" in text or "map_full" in text


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
