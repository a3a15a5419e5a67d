"""The multi-version KV store: etcd's mvcc store over a revision index and a Backend.

State: `current_revision` (a fresh store is at 1; each write txn that changes something adds 1, and
all its changes share that main revision with increasing sub revisions), `compact_revision` (reads
below it fail with ErrCompacted), the in-memory TreeIndex (key -> revisions), and the backend's
"key" bucket (revision -> record). The index always mirrors committed + buffered backend state.

Semantics follow etcd 3.4 (mvcc/kvstore_txn.go for revisions, etcdserver/apply.go for range
sorting/filters/limits, prev_kv and txn compare/branch evaluation). Requests are validated before any
change (txncheck), so a rejected request leaves the store as it was.

Threading: every public method holds the backend lock; the store is safe to share across threads.
Events: at the end of each write txn its events go to `observer(events, revision)` when one is set
(the watchable store), otherwise onto `pending_events`, which the owner of commits (the embedded DB)
drains after the backend commit.

Leases: mvcc does not import the lessor. It talks to whatever object is passed as `lessor`, which
must offer `exists(lease_id) -> bool`, `attach(lease_id, key)`, `detach(lease_id, key)` and
`lease_of(key) -> lease id or 0` (etcd's kvstore does the same through lease.Lessor): a put with an
unknown lease fails with ErrLeaseNotFound before any change, and a put/delete moves the key's
attachment.
"""
from __future__ import annotations

import struct

from fastkv._native import load
from fastkv.backend import KEY, META
from fastkv.backend.base import in_range
from fastkv.errors import ErrCompacted, ErrFutureRev, ErrKeyNotFound, ErrLeaseNotFound, ErrNoSpace
from fastkv.mvcc import txncheck
from fastkv.mvcc.ops import (
    CompareResult, CompareTarget, DeleteOp, DeleteResult, Event, EventType, PutOp, PutResult, RangeOp,
    RangeResult, SortOrder, SortTarget, TxnOp, TxnResult, index_end, txn_has_puts, txn_has_writes,
)

_codec = load("mvcccodec")
_revindex = load("revindex")
_revwrite = load("revwrite")
_crc = load("crc32c")
KeyValue = _codec.KeyValue
rev_key = _codec.rev_key
decode_record = _codec.decode_record
encode_record = _codec.encode_record

META_CONSISTENT_INDEX = b"consistent_index"
META_FINISHED_COMPACT = b"finishedCompactRev"
_U64 = struct.Struct(">Q")
_RESTORE_CHUNK = 10000
_PUT_OVERHEAD = _revwrite.PUT_OVERHEAD  # record header + revision key + B+tree slot, for the quota estimate


class _WriteTxn:
    """One write transaction: all its changes get main revision begin_rev + 1."""

    __slots__ = ("begin_rev", "changes")

    def __init__(self, begin_rev: int):
        self.begin_rev = begin_rev
        self.changes: list = []

    @property
    def read_rev(self) -> int:
        return self.begin_rev + 1 if self.changes else self.begin_rev


class KVStore:
    def __init__(self, backend, *, quota_bytes: int | None = None, max_txn_ops: int = txncheck.DEFAULT_MAX_TXN_OPS,
                 index_impl=None, lessor=None):
        self.backend = backend
        self.max_txn_ops = max_txn_ops
        self._index_impl = index_impl or _revindex
        self._tx = backend.batch_tx()
        # Every put goes through the writer (index + record + batch buffer in one native call), and
        # the writer owns the write state the put path touches: current revision and the quota
        # estimate (see the properties below). Its put_value is the whole common put: it holds the
        # backend lock itself and writes the batch buffer directly, with the tx's commit rule.
        self._writer = _revwrite.RevisionWriter(
            None, backend.write_buffer, KEY, lock=backend.lock, tx=self._tx,
            batch_limit=backend.batch_limit, batch_full=backend.batch_full,
            empty_key_error=txncheck.ErrEmptyKey, no_space_error=ErrNoSpace, quota_bytes=quota_bytes)
        self.lessor = lessor
        self._observer = None
        self._collect_events = True
        self.pending_events: list = []
        # With no observer, events are kept only while someone wants them (the embedded DB turns
        # this on while it has live watchers); history for later watchers comes from the backend.
        self.collect_events = True
        self._size_at_commit = backend.size_in_use()
        self._bytes_since_commit = 0
        self._bytes_in_commit = 0
        backend.add_pre_commit_hook(self._save_consistent_index)
        backend.add_post_commit_hook(self._after_commit)
        self._restore()

    @property
    def lessor(self):
        """The lease keeper (exists/attach/detach), or None."""
        return self._lessor

    @lessor.setter
    def lessor(self, lessor) -> None:
        self._lessor = lessor
        if lessor is None:
            # no lease bookkeeping can be needed: put_value callers go straight to the native put
            self.put_value = self._writer.put_value
        else:
            self.__dict__.pop("put_value", None)  # back to the method, which routes leased puts

    # --- write state, kept by the writer ----------------------------------------------------------
    @property
    def current_revision(self) -> int:
        return self._writer.revision

    @current_revision.setter
    def current_revision(self, rev: int) -> None:
        self._writer.revision = rev

    @property
    def quota_bytes(self):
        return self._writer.quota_bytes

    @quota_bytes.setter
    def quota_bytes(self, quota) -> None:
        self._writer.quota_bytes = quota

    @property
    def _size_at_commit(self) -> int:
        return self._writer.size_at_commit

    @_size_at_commit.setter
    def _size_at_commit(self, n: int) -> None:
        self._writer.size_at_commit = n

    @property
    def _bytes_since_commit(self) -> int:
        return self._writer.bytes_since_commit

    @_bytes_since_commit.setter
    def _bytes_since_commit(self, n: int) -> None:
        self._writer.bytes_since_commit = n

    @property
    def observer(self):
        """callable(events, revision) called at the end of each write txn, or None."""
        return self._observer

    @observer.setter
    def observer(self, fn) -> None:
        self._observer = fn
        self._route_put_events()

    @property
    def collect_events(self) -> bool:
        return self._collect_events

    @collect_events.setter
    def collect_events(self, on: bool) -> None:
        self._collect_events = on
        self._route_put_events()

    def _route_put_events(self) -> None:
        """The writer reports its puts only while someone takes events (an observer, or collecting)."""
        wanted = self._observer is not None or self._collect_events
        self._writer.on_put = self._on_put if wanted else None

    def _on_put(self, key: bytes, value: bytes, created: int, rev: int, version: int, lease: int) -> None:
        """The writer's report of a put made by put_value: the same event _end makes for a txn."""
        events = [Event(EventType.PUT, KeyValue(key, created, rev, version, value, lease))]
        if self._observer is not None:
            self._observer(events, rev)
        else:
            self.pending_events.extend(events)

    # --- opening and restart ----------------------------------------------------------------------
    def _restore(self) -> None:
        """Rebuild the index and revisions from the backend (what a restart does)."""
        self.index = self._index_impl.TreeIndex()
        self._writer.set_index(self.index)
        top = 1  # highest main revision stored (a local: current_revision is a property)
        self.compact_revision = -1  # as etcd: "never compacted", so compact(0) on a fresh store succeeds
        with self._tx as tx:
            raw = tx.unsafe_get(META, META_FINISHED_COMPACT)
            if raw:
                self.compact_revision = _U64.unpack(raw)[0]
            raw = tx.unsafe_get(META, META_CONSISTENT_INDEX)
            self.consistent_index = _U64.unpack(raw)[0] if raw else 0
            self._persisted_consistent_index = self.consistent_index
            seen: set = set()
            leased: dict = {}
            start = b""
            while True:
                rows = tx.unsafe_range(KEY, start, b"", limit=_RESTORE_CHUNK)
                for k, v in rows:
                    main, sub, tomb = _codec.parse_rev_key(k)
                    kv = decode_record(v)
                    if kv.lease and not tomb:
                        leased[kv.key] = kv.lease
                    elif leased:
                        leased.pop(kv.key, None)
                    if tomb:
                        if kv.key in seen:
                            self.index.tombstone(kv.key, main, sub)
                    elif kv.key in seen:
                        self.index.put(kv.key, main, sub)
                    else:
                        self.index.restore(kv.key, kv.create_revision, main, sub, kv.version)
                        seen.add(kv.key)
                    if main > top:
                        top = main
                if len(rows) < _RESTORE_CHUNK:
                    break
                start = rows[-1][0] + b"\x00"
        self.current_revision = max(top, self.compact_revision)
        # (key, lease) of every live key with a lease, as the scan left them (revision order: a key's
        # last record wins): what the lessor's recover() needs, without reading every key again
        self.restored_leases = leased

    def reload(self) -> None:
        """Drop buffered state and rebuild from what the backend has committed.

        Used after a failed commit (disk full) in durable mode: the failed writes were never
        acknowledged, and this puts the index back in step with the disk.
        """
        with self._tx:
            self.backend.discard_buffer()
            self.pending_events.clear()
            self._bytes_since_commit = 0
            self._restore()

    # --- consistent index (the last applied raft entry, persisted with each batch) --------------
    def set_consistent_index(self, index: int) -> None:
        self.consistent_index = index

    def _save_consistent_index(self, tx) -> None:
        # the batch being committed holds this many bytes; writes made while a detached commit
        # is in flight land in the next batch and must stay counted after it (see _after_commit)
        self._bytes_in_commit = self._bytes_since_commit
        if self.consistent_index != self._persisted_consistent_index:
            tx.unsafe_put(META, META_CONSISTENT_INDEX, _U64.pack(self.consistent_index))
            self._persisted_consistent_index = self.consistent_index

    def backend_resized(self) -> None:
        """The backend file changed size outside a commit (defragment): the quota check reads the
        size noted at the last commit, so note it again."""
        self._size_at_commit = self.backend.size_in_use()

    def _after_commit(self) -> None:
        self._size_at_commit = self.backend.size_in_use()
        self._bytes_since_commit = max(0, self._bytes_since_commit - self._bytes_in_commit)
        self._bytes_in_commit = 0

    # --- reads ------------------------------------------------------------------------------------
    def range(self, op: RangeOp) -> RangeResult:
        txncheck.check_range(op)
        with self._tx:
            return self._range(op, self._writer.revision)  # (the property's read, minus a call)

    def _range(self, op: RangeOp, cur_rev: int) -> RangeResult:
        rev = op.revision
        if rev > cur_rev:
            raise ErrFutureRev()
        if rev <= 0:
            rev = cur_rev
        if rev < self.compact_revision:
            raise ErrCompacted()
        end = index_end(op.range_end)
        if end is not None and end != b"" and end <= op.key:
            return RangeResult([], 0, False, cur_rev)
        if op.count_only:
            return RangeResult([], self.index.count_revisions(op.key, end, rev), False, cur_rev)
        # As etcd's apply.go: sorting by order or filtering needs everything before the limit; a
        # sort *target* alone (order NONE) sorts only the limited fetch, ascending.
        fetch_all = (op.sort_order != SortOrder.NONE or op.min_mod_revision or op.max_mod_revision
                     or op.min_create_revision or op.max_create_revision)
        limit = 0 if fetch_all or op.limit <= 0 else op.limit + 1  # one extra tells `more`
        revs, total = self.index.revisions(op.key, end, rev, limit)
        get = self._tx.unsafe_get
        kvs = [decode_record(get(KEY, rev_key(m, s))) for m, s in revs]
        if fetch_all or op.sort_target != SortTarget.KEY:
            kvs = _filter_and_sort(kvs, op)
        more = False
        if op.limit > 0 and len(kvs) > op.limit:
            kvs = kvs[: op.limit]
            more = True
        if op.keys_only:
            for kv in kvs:
                kv.value = b""
        return RangeResult(kvs, total, more, cur_rev)

    # --- writes -----------------------------------------------------------------------------------
    def put(self, op: PutOp) -> PutResult:
        if not (op.prev_kv or op.ignore_value or op.ignore_lease):
            lessor = self.lessor
            # no lease before or after: nothing to attach or detach, the native put does it all
            if lessor is None or not (op.lease or lessor.lease_of(op.key)):
                return PutResult(self._writer.put_value(op.key, op.value, op.lease), None)
        txncheck.check_put(op)
        with self._tx:
            self._check_quota(len(op.key) + len(op.value))
            wt = _WriteTxn(self.current_revision)
            res = self._put(wt, op)
            self._end(wt)
            return res

    def put_value(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """The common put (no prev_kv / ignore_*) on a lean path; returns its revision.

        Same semantics as put(PutOp(key, value, lease)); it exists because a put is the hot path of
        every write benchmark and each Python-level call on it costs a measurable share. While the
        store has no lessor, the instance's put_value is the writer's native one (see `lessor`)."""
        lessor = self.lessor
        if lessor is not None and (lease or lessor.lease_of(key)):
            return self.put(PutOp(key, value, lease)).revision
        return self._writer.put_value(key, value, lease)

    def delete_range(self, op: DeleteOp) -> DeleteResult:
        txncheck.check_delete(op)
        with self._tx:
            wt = _WriteTxn(self.current_revision)
            res = self._delete_range(wt, op)
            self._end(wt)
            return res

    def txn(self, op: TxnOp) -> TxnResult:
        txncheck.check_txn(op, self.max_txn_ops)
        with self._tx:
            # Every compare, at every nesting level, sees the state before the txn (etcd's
            # compareToPath runs before any op is applied).
            path = self._compare_path(op, self.current_revision)
            # As etcd's applierV3backend.Txn: check the ops on the chosen path against the state
            # before the txn (puts first, then ranges), so the txn either applies whole or fails
            # with nothing changed.
            if txn_has_writes(op):
                self._check_puts_on_path(op, path, [])
            self._check_path(op, path, self._check_range_op)
            if txn_has_puts(op):
                self._check_quota(_put_bytes(op))
            wt = _WriteTxn(self.current_revision)
            resp = self._apply_txn(wt, op, path, 0)
            self._end(wt)
            resp.revision = wt.begin_rev + 1 if wt.changes else wt.begin_rev
            return resp

    def size_estimate(self) -> int:
        """Backend bytes in use at the last commit plus what was buffered since (no LMDB call)."""
        return self._size_at_commit + self._bytes_since_commit

    def _check_quota(self, cost: int) -> None:
        if self.quota_bytes is None:
            return
        if self.size_estimate() + cost + _PUT_OVERHEAD > self.quota_bytes:
            raise ErrNoSpace()

    def _put(self, wt: _WriteTxn, op: PutOp) -> PutResult:
        prev = None
        rev = wt.begin_rev + 1
        lessor = self.lessor
        if lessor is not None and op.lease and not op.ignore_lease and not lessor.exists(op.lease):
            raise ErrLeaseNotFound()
        if op.prev_kv or op.ignore_value or op.ignore_lease or lessor is not None:
            prev = self._get_kv(op.key, wt.read_rev)
            if prev is None and (op.ignore_value or op.ignore_lease):
                raise ErrKeyNotFound()
        value = prev.value if op.ignore_value else op.value
        lease = prev.lease if op.ignore_lease else op.lease
        sub = len(wt.changes)
        create_rev, version = self._writer.put(op.key, value, rev, sub, lease)
        if lessor is not None:
            old_lease = prev.lease if prev is not None else 0
            if old_lease != lease:
                if old_lease:
                    lessor.detach(old_lease, op.key)
                if lease:
                    lessor.attach(lease, op.key)
        kv = KeyValue(op.key, create_rev, rev, version, value, lease)
        wt.changes.append(kv)
        self._bytes_since_commit += len(op.key) + len(value) + _PUT_OVERHEAD
        return PutResult(rev, prev if op.prev_kv else None)

    def _delete_range(self, wt: _WriteTxn, op: DeleteOp) -> DeleteResult:
        end = index_end(op.range_end)
        prev_kvs = []
        if op.prev_kv:
            prev_kvs = self._range(RangeOp(op.key, op.range_end), wt.read_rev).kvs
        if end is not None and end != b"" and end <= op.key:
            keys = []
        else:
            keys, _revs = self.index.range(op.key, end, wt.read_rev)
        rev = wt.begin_rev + 1
        lessor = self.lessor
        for key in keys:
            if lessor is not None:
                old = self._get_kv(key, wt.read_rev)
                if old is not None and old.lease:
                    lessor.detach(old.lease, key)
            sub = len(wt.changes)
            self._tx.unsafe_put(KEY, rev_key(rev, sub, True), encode_record(key, b"", 0, 0, 0, 0))
            self.index.tombstone(key, rev, sub)
            wt.changes.append(KeyValue(key, 0, rev, 0, b"", 0))
        result_rev = rev if (keys or wt.changes) else wt.begin_rev
        return DeleteResult(result_rev, len(keys), prev_kvs)

    def delete_keys(self, keys) -> int:
        """Delete the given keys in ONE write txn (one revision): what a lease revoke does. Not bound
        by max_txn_ops (a lease may hold any number of keys). Returns the number deleted."""
        with self._tx:
            wt = _WriteTxn(self.current_revision)
            n = 0
            for key in sorted(keys):
                n += self._delete_range(wt, DeleteOp(key)).deleted
            self._end(wt)
            return n

    def _end(self, wt: _WriteTxn) -> None:
        if not wt.changes:
            return
        self.current_revision = rev = wt.begin_rev + 1
        if self.observer is None and not self.collect_events:
            return
        events = [Event(EventType.DELETE if kv.create_revision == 0 else EventType.PUT, kv) for kv in wt.changes]
        if self.observer is not None:
            self.observer(events, rev)
        else:
            self.pending_events.extend(events)

    # --- txn --------------------------------------------------------------------------------------
    def _compare_path(self, op: TxnOp, rev: int) -> list:
        """[succeeded, child paths of the chosen branch's nested txns...] evaluated at `rev`."""
        ok = all(self._compare(c, rev) for c in op.compare)
        branch = op.success if ok else op.failure
        return [ok] + [self._compare_path(o, rev) for o in branch if isinstance(o, TxnOp)]

    def _check_path(self, op: TxnOp, path: list, check) -> None:
        branch = op.success if path[0] else op.failure
        child = 1
        for o in branch:
            if isinstance(o, TxnOp):
                self._check_path(o, path[child], check)
                child += 1
            else:
                check(o)

    def _check_puts_on_path(self, op: TxnOp, path: list, deleted: list) -> None:
        """etcd's checkPut over the chosen path, in execution order. Beyond etcd, a put with
        ignore_value/ignore_lease on a key that an earlier delete of the same txn removed is refused
        here: etcd 3.4.23 lets that through its checks and then panics while applying (a from-key
        delete is not caught by its duplicate-key check); we answer ErrKeyNotFound, nothing changed."""
        branch = op.success if path[0] else op.failure
        child = 1
        for o in branch:
            if isinstance(o, TxnOp):
                self._check_puts_on_path(o, path[child], deleted)
                child += 1
            elif isinstance(o, DeleteOp):
                deleted.append((o.key, index_end(o.range_end)))
            elif isinstance(o, PutOp):
                if o.ignore_value or o.ignore_lease:
                    if self._get_kv(o.key, self.current_revision) is None:
                        raise ErrKeyNotFound()
                    if any(in_range(o.key, k, e) for k, e in deleted):
                        raise ErrKeyNotFound()
                if o.lease and self.lessor is not None and not self.lessor.exists(o.lease):
                    raise ErrLeaseNotFound()

    def _check_range_op(self, o) -> None:
        if not isinstance(o, RangeOp) or o.revision == 0:
            return
        if o.revision > self.current_revision:
            raise ErrFutureRev()
        if o.revision < self.compact_revision:
            raise ErrCompacted()

    def _compare(self, c, rev: int) -> bool:
        kvs = self._range(RangeOp(c.key, c.range_end), rev).kvs
        if not kvs:
            if c.target == CompareTarget.VALUE:
                return False  # a missing value compares unequal to everything, as in etcd
            return _compare_kv(c, KeyValue())
        return all(_compare_kv(c, kv) for kv in kvs)

    def _apply_txn(self, wt: _WriteTxn, op: TxnOp, path: list, depth: int) -> TxnResult:
        ok = path[0]
        branch = op.success if ok else op.failure
        responses = []
        child = 1
        for o in branch:
            if isinstance(o, RangeOp):
                responses.append(self._range(o, wt.read_rev))
            elif isinstance(o, PutOp):
                responses.append(self._put(wt, o))
            elif isinstance(o, DeleteOp):
                responses.append(self._delete_range(wt, o))
            else:
                sub = self._apply_txn(wt, o, path[child], depth + 1)
                sub.revision = wt.read_rev
                responses.append(sub)
                child += 1
        return TxnResult(wt.read_rev, ok, responses)

    # --- compaction -------------------------------------------------------------------------------
    def compact(self, revision: int) -> int:
        """Physically drop every revision not needed to read at >= `revision`. Returns the current
        revision. The index, the deletions and the new compact revision commit in one batch."""
        with self._tx as tx:
            if revision <= self.compact_revision:
                raise ErrCompacted()
            if revision > self.current_revision:
                raise ErrFutureRev()
            keep = self.index.compact(revision)
            end = rev_key(revision + 1, 0)
            start = b""
            while True:
                rows = tx.unsafe_range(KEY, start, end, limit=_RESTORE_CHUNK)
                for k, _v in rows:
                    main, sub, _tomb = _codec.parse_rev_key(k)
                    if (main, sub) not in keep:
                        tx.unsafe_delete(KEY, k)
                if len(rows) < _RESTORE_CHUNK:
                    break
                start = rows[-1][0] + b"\x00"
            tx.unsafe_put(META, META_FINISHED_COMPACT, _U64.pack(revision))
            self.compact_revision = revision
            self.backend.force_commit()
            return self.current_revision

    def hash_steps(self, revision: int, chunk: int = 1000):
        """etcd's HashByRev as a generator: each step hashes `chunk` records of the key bucket and
        yields, so the caller can let other work run between steps; it returns (CRC-32C of every
        record at or below the revision, compact revision (-1: never compacted), revision).
        revision 0 means the current one. Records at or below a revision only ever change by a
        compaction, which also raises the compact revision: a hash that saw one starts over."""
        while True:
            rev = revision or self.current_revision
            if rev > self.current_revision:
                raise ErrFutureRev()
            if 0 < revision <= self.compact_revision:
                raise ErrCompacted()  # as etcd: history below the compaction cannot be hashed
            crev = self.compact_revision
            h, start, end = 0, b"", rev_key(rev + 1, 0)
            while True:
                with self._tx as tx:
                    rows = tx.unsafe_range(KEY, start, end, limit=chunk)
                for k, v in rows:
                    h = _crc.crc32c(v, _crc.crc32c(k, h))
                if len(rows) < chunk:
                    break
                start = rows[-1][0] + b"\x00"
                yield
                if self.compact_revision != crev:
                    break
            if self.compact_revision == crev:
                return h, crev, rev

    # --- helpers ----------------------------------------------------------------------------------
    def _get_kv(self, key: bytes, rev: int):
        try:
            mod, _created, _ver = self.index.get(key, rev)
        except _revindex.RevisionNotFoundError:
            return None
        return decode_record(self._tx.unsafe_get(KEY, rev_key(mod[0], mod[1])))

    def read_at(self, rev_main: int, rev_sub: int, tombstone: bool = False):
        """The record stored at a revision (for watchers replaying history)."""
        with self._tx as tx:
            raw = tx.unsafe_get(KEY, rev_key(rev_main, rev_sub, tombstone))
            return None if raw is None else decode_record(raw)

    def history(self, start_rev: int, end_rev: int | None = None, key: bytes | None = None,
                range_end: bytes = b"", max_events: int = 0) -> list:
        """Events with main revision in [start_rev, end_rev] in revision order, read from the
        backend (what unsynced watchers catch up from). key None = every key. max_events > 0 stops
        after that many events but never splits a revision (watch atomicity).
        Raises ErrCompacted if start_rev is below the compact revision."""
        if start_rev < self.compact_revision:
            raise ErrCompacted()
        end = index_end(range_end) if key is not None else b""
        out = []
        with self._tx as tx:
            hi = rev_key((end_rev if end_rev is not None else self.current_revision) + 1, 0)
            lo = rev_key(max(start_rev, 1), 0)
            last_main = 0
            while True:
                rows = tx.unsafe_range(KEY, lo, hi, limit=_RESTORE_CHUNK)
                for k, v in rows:
                    main, sub, tomb = _codec.parse_rev_key(k)
                    if max_events and len(out) >= max_events and main != last_main:
                        return out
                    kv = decode_record(v)
                    if key is not None and not in_range(kv.key, key, end):
                        continue
                    last_main = main
                    if tomb:
                        kv.mod_revision = main
                        out.append(Event(EventType.DELETE, kv))
                    else:
                        out.append(Event(EventType.PUT, kv))
                if len(rows) < _RESTORE_CHUNK:
                    return out
                lo = rows[-1][0] + b"\x00"


def _compare_kv(c, kv) -> bool:
    t = c.target
    if t == CompareTarget.VALUE:
        a, b = kv.value, c.value
    elif t == CompareTarget.CREATE:
        a, b = kv.create_revision, c.value
    elif t == CompareTarget.MOD:
        a, b = kv.mod_revision, c.value
    elif t == CompareTarget.VERSION:
        a, b = kv.version, c.value
    elif t == CompareTarget.LEASE:
        a, b = kv.lease, c.value
    else:
        return False
    r = c.result
    if r == CompareResult.EQUAL:
        return a == b
    if r == CompareResult.NOT_EQUAL:
        return a != b
    if r == CompareResult.GREATER:
        return a > b
    if r == CompareResult.LESS:
        return a < b
    return False


_SORT_KEYS = {
    SortTarget.KEY: lambda kv: kv.key,
    SortTarget.VERSION: lambda kv: kv.version,
    SortTarget.CREATE: lambda kv: kv.create_revision,
    SortTarget.MOD: lambda kv: kv.mod_revision,
    SortTarget.VALUE: lambda kv: kv.value,
}


def _filter_and_sort(kvs: list, op: RangeOp) -> list:
    if op.min_mod_revision:
        kvs = [kv for kv in kvs if kv.mod_revision >= op.min_mod_revision]
    if op.max_mod_revision:
        kvs = [kv for kv in kvs if kv.mod_revision <= op.max_mod_revision]
    if op.min_create_revision:
        kvs = [kv for kv in kvs if kv.create_revision >= op.min_create_revision]
    if op.max_create_revision:
        kvs = [kv for kv in kvs if kv.create_revision <= op.max_create_revision]
    order = op.sort_order
    if op.sort_target != SortTarget.KEY and order == SortOrder.NONE:
        order = SortOrder.ASCEND  # etcd sorts ascending when only a target is given
    if order == SortOrder.ASCEND and op.sort_target != SortTarget.KEY:
        kvs.sort(key=_SORT_KEYS[op.sort_target])
    elif order == SortOrder.DESCEND:
        kvs.sort(key=_SORT_KEYS[op.sort_target], reverse=True)
    return kvs


def _put_bytes(op: TxnOp) -> int:
    n = 0
    for o in (*op.success, *op.failure):
        if isinstance(o, PutOp):
            n += len(o.key) + len(o.value)
        elif isinstance(o, TxnOp):
            n += _put_bytes(o)
    return n
