"""The backend boundary: Backend, BatchTx and ReadTx, shared by every storage engine.

Shape follows etcd's backend package. The MVCC store writes through one BatchTx per backend; its
writes are buffered and committed as one storage transaction when the batch reaches
`batch_limit` operations or `batch_interval` seconds, or when a caller forces a commit. Readers
(ReadTx, or the BatchTx itself) always see buffered writes. Methods prefixed `unsafe_` require the
caller to hold the tx lock (`with tx:`), exactly as in etcd.

Durability contract: a write is durable once a commit that included it has returned. `force_commit`
is the only way to be sure; commits are the only place the backend syncs to disk.
"""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

# Buckets are fixed and numbered so buffers can index them by position; names match etcd's.
BUCKETS = ("key", "meta", "lease", "members", "members_removed", "alarm", "cluster", "auth", "authUsers",
           "authRoles")
KEY, META, LEASE, MEMBERS, MEMBERS_REMOVED, ALARM, CLUSTER, AUTH, AUTH_USERS, AUTH_ROLES = range(len(BUCKETS))

DEFAULT_BATCH_LIMIT = 10000
DEFAULT_BATCH_INTERVAL = 0.1  # seconds
DEFAULT_QUOTA_BYTES = 2 * 1024**3


@runtime_checkable
class ReadTx(Protocol):
    def __enter__(self) -> "ReadTx": ...
    def __exit__(self, *exc) -> None: ...
    def unsafe_get(self, bucket: int, key: bytes) -> bytes | None: ...
    def unsafe_range(self, bucket: int, start: bytes, end: bytes | None = None, limit: int = 0) -> list: ...


@runtime_checkable
class BatchTx(ReadTx, Protocol):
    def unsafe_put(self, bucket: int, key: bytes, value: bytes) -> None: ...
    def unsafe_delete(self, bucket: int, key: bytes) -> None: ...
    def commit(self) -> None: ...
    def pending(self) -> int: ...


@runtime_checkable
class Backend(Protocol):
    def batch_tx(self) -> BatchTx: ...
    def read_tx(self) -> ReadTx: ...
    def force_commit(self) -> None: ...
    def size(self) -> int: ...
    def size_in_use(self) -> int: ...
    def defrag(self) -> None: ...
    def close(self) -> None: ...
    def add_pre_commit_hook(self, fn: Callable[["BatchTx"], None]) -> None: ...
    def add_post_commit_hook(self, fn: Callable[[], None]) -> None: ...


def in_range(key: bytes, start: bytes, end: bytes | None) -> bool:
    """Range convention used everywhere: end None = the single key; b"" = no upper bound."""
    if end is None:
        return key == start
    return key >= start and (end == b"" or key < end)
