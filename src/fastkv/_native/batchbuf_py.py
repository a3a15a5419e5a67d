"""Batch write buffer: the writes of the open batch, before the backend commits them. Twin.

`batchbuf.pyx` has the same API. The backend keeps one WriteBuffer per batch: every put/delete of
the batch lands here (the newest write of a key wins), readers consult it before the committed
store so they see buffered writes, and commit moves the whole buffer into one LMDB write
transaction. The commit path uses MDB_APPEND when the bucket's keys all sort after what is stored
(the common case for the revision-keyed bucket), which is what makes a batched commit cheap.

Order note: a dict keeps insertion order, and MVCC writes revision keys in increasing order, so as
keys arrive the buffer notes per bucket whether its dict order is still key order (only a key new to
the batch can break it: an overwrite keeps its place). A bucket in key order with no delete is handed
to LMDB as its dict items, without a copy, a sort or an order check at commit.

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
    __slots__ = ("_buckets", "_last_new", "_unordered", "_has_deletes", "_ops")

    def __init__(self, n_buckets: int):
        if n_buckets < 1 or n_buckets > 64:
            raise ValueError("n_buckets must be in 1..64")
        self._buckets = [dict() for _ in range(n_buckets)]
        self._last_new: list = [None] * n_buckets   # key most recently added to each bucket's dict
        self._unordered = [False] * n_buckets       # a new key arrived at or below the previous one
        self._has_deletes = [False] * n_buckets
        self._ops = 0

    def __len__(self) -> int:
        """Number of operations buffered since the last clear (counts repeated keys)."""
        return self._ops

    def _store(self, bucket: int, key: bytes, value) -> None:
        d = self._buckets[bucket]
        before = len(d)
        d[key] = value
        if len(d) != before:
            last = self._last_new[bucket]
            if last is not None and key <= last:
                self._unordered[bucket] = True
            self._last_new[bucket] = key
        self._ops += 1

    def put(self, bucket: int, key: bytes, value: bytes) -> None:
        self._store(bucket, key, value)

    def delete(self, bucket: int, key: bytes) -> None:
        self._store(bucket, key, DELETED)
        self._has_deletes[bucket] = True

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
        if self._unordered[bucket]:
            items.sort(key=lambda kv: kv[0])
        return items

    def take(self) -> "WriteBuffer":
        """Move everything buffered into a new WriteBuffer and return it; this one is left empty
        (and stays the same object, so whoever holds it keeps writing into the new batch)."""
        n = len(self._buckets)
        out = WriteBuffer(n)
        out._buckets, self._buckets = self._buckets, out._buckets
        out._last_new, self._last_new = self._last_new, [None] * n
        out._unordered, self._unordered = self._unordered, [False] * n
        out._has_deletes, self._has_deletes = self._has_deletes, [False] * n
        out._ops, self._ops = self._ops, 0
        return out

    def clear(self) -> None:
        for d in self._buckets:
            d.clear()
        n = len(self._buckets)
        self._last_new = [None] * n
        self._unordered = [False] * n
        self._has_deletes = [False] * n
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
            if not self._unordered[bucket] and not self._has_deletes[bucket]:
                cur = txn.cursor(db=db)
                first = next(iter(d))
                cur.putmulti(d.items(), append=not cur.last() or cur.key() < first)
                cur.close()
                written += len(d)
                continue
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
