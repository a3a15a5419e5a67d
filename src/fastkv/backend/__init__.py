"""Storage backends behind one interface (see base.py): "lmdb" (default, durable) and "memory"."""
from fastkv.backend.base import (  # noqa: F401
    ALARM, AUTH, AUTH_ROLES, AUTH_USERS, BUCKETS, CLUSTER, KEY, LEASE, MEMBERS, MEMBERS_REMOVED, META, Backend, BatchTx, ReadTx,
)


def open_backend(kind: str = "lmdb", path: str | None = None, **options):
    """Open a backend by name. `path` is required for "lmdb" (a directory)."""
    if kind == "lmdb":
        from fastkv.backend.lmdb_backend import LMDBBackend

        if path is None:
            raise ValueError("the lmdb backend needs a directory path")
        return LMDBBackend(path, **options)
    if kind == "memory":
        from fastkv.backend.memory_backend import MemoryBackend

        options.pop("initial_map_size", None)
        return MemoryBackend(**options)
    raise ValueError(f"unknown backend {kind!r}: choose 'lmdb' or 'memory'")
