"""Write-ahead log and snapshot files (see wal.py and snapshotter.py for the contracts)."""
from fastkv.wal.errors import (
    SnapshotError,
    WALClosedError,
    WALCorruptError,
    WALError,
    WALExistsError,
    WALLockedError,
    WALNotFoundError,
    WALSnapshotNotFoundError,
)
from fastkv.wal.segment import SEGMENT_SIZE
from fastkv.wal.snapshotter import Snapshotter
from fastkv.wal.wal import WAL

__all__ = [
    "WAL", "Snapshotter", "SEGMENT_SIZE", "WALError", "WALCorruptError", "WALExistsError", "WALLockedError",
    "WALNotFoundError", "WALSnapshotNotFoundError", "WALClosedError", "SnapshotError",
]
