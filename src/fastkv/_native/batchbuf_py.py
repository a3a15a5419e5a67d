"""Batch write buffer: the writes of the open batch, before the backend commits them. Twin.

`batchbuf.pyx` has the same API. The backend keeps one WriteBuffer per batch: every put/delete of
the batch lands here (the newest write of a key wins), readers consult it before the committed
store so they see buffered writes, and commit moves the whole buffer into one LMDB write
transaction. The commit path sorts each bucket once and uses MDB_APPEND when the bucket's keys all
sort after what is stored (the common case for the revision-keyed bucket), which is what makes a
batched commit cheap.

Contract: the buffer is not thread-safe; the backend's lock serialises all calls.
"""
from __future__ import annotations

DELETED = None  # value stored for a buffered delete
_MISSING = object()


def _in_range(key: bytes, start: bytes, end) -> bool:
    if end is None:
        return key == start
    return key >= start and (end == b"" or key < end)


class WriteBuffer:
    __slots__ = ("_buckets", "_ops")

    def __init__(self, n_buckets: int):
        self._buckets = [dict() for _ in range(n_buckets)]
        self._ops = 0

    def __len__(self) -> int:
        """Number of operations buffered since the last clear (counts repeated keys)."""
        return self._ops

    def put(self, bucket: int, key: bytes, value: bytes) -> None:
        self._buckets[bucket][key] = value
        self._ops += 1

    def delete(self, bucket: int, key: bytes) -> None:
        self._buckets[bucket][key] = DELETED
        self._ops += 1

    def get(self, bucket: int, key: bytes, default=_MISSING):
        """Buffered value, DELETED (None) for a buffered delete, or `default` if not buffered."""
        return self._buckets[bucket].get(key, default)

    @staticmethod
    def missing():
        """The default `get` returns for a key this buffer does not hold."""
        return _MISSING

    def range(self, bucket: int, start: bytes, end) -> list:
        """Sorted [(key, value_or_DELETED)] buffered in [start, end) (end None: key == start)."""
        d = self._buckets[bucket]
        if end is None:
            v = d.get(start, _MISSING)
            return [] if v is _MISSING else [(start, v)]
        return sorted((k, v) for k, v in d.items() if _in_range(k, start, end))

    def bucket_items(self, bucket: int) -> list:
        """All buffered (key, value_or_DELETED) of a bucket, sorted by key."""
        items = list(self._buckets[bucket].items())
        if not _is_sorted(items):
            items.sort(key=lambda kv: kv[0])
        return items

    def clear(self) -> None:
        for d in self._buckets:
            d.clear()
        self._ops = 0

    def write_to_lmdb(self, txn, dbs) -> int:
        """Write every buffered op into the open LMDB write txn `txn`; dbs[i] is bucket i's handle.

        Returns the number of keys written. Does not clear: the caller clears after commit succeeds,
        so a failed commit (disk full) keeps the writes for a retry.
        """
        written = 0
        for bucket, d in enumerate(self._buckets):
            if not d:
                continue
            db = dbs[bucket]
            items = self.bucket_items(bucket)
            puts = [kv for kv in items if kv[1] is not DELETED]
            for k, v in items:
                if v is DELETED:
                    txn.delete(k, db=db)
            if puts:
                cur = txn.cursor(db=db)
                append = not cur.last() or cur.key() < puts[0][0]
                cur.putmulti(puts, append=append)
                cur.close()
            written += len(items)
        return written


def _is_sorted(items) -> bool:
    prev = None
    for k, _ in items:
        if prev is not None and k < prev:
            return False
        prev = k
    return True
