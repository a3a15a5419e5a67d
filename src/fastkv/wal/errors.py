"""Errors raised by the WAL and the snapshotter."""
from __future__ import annotations


class WALError(Exception):
    """Base class of WAL failures."""


class WALExistsError(WALError):
    """WAL.create() found a WAL already in the directory."""


class WALNotFoundError(WALError):
    """WAL.open() found no segment in the directory."""


class WALLockedError(WALError):
    """Another WAL object (in this or another process) holds the tail segment."""


class WALSnapshotNotFoundError(WALError):
    """The snapshot marker asked for on open is not recorded in the WAL."""


class WALCorruptError(WALError):
    """A record failed its check somewhere a torn write cannot explain: the WAL refuses to start.

    `path` and `offset` name the file and byte offset of the first bad record."""

    def __init__(self, path: str, offset: int | None, detail: str):
        where = f"{path} at byte offset {offset}" if offset is not None else path
        super().__init__(
            f"WAL corrupt: {where}: {detail}. This is not a torn write at the "
            f"end of the log, so fastkv will not guess: restore this member from a snapshot/backup or "
            f"remove it from the cluster and re-add it with an empty data dir "
            f"(the file is left untouched for inspection)"
        )
        self.path = path
        self.offset = offset
        self.detail = detail


class WALClosedError(WALError):
    """The WAL was closed, or a failed fsync made its state unknowable (it must be reopened)."""


class SnapshotError(Exception):
    """A snapshot file could not be written or none could be read."""
