"""The watchable store: etcd's watch machinery over a KVStore (etcd 3.4 mvcc/watchable_store.go,
watcher.go and the per-stream parts of etcdserver/api/v3rpc/watch.go).

Every watcher is in exactly one place:
  synced    up to date; fed by `_on_write`, which the KVStore calls at the end of each write txn;
  unsynced  behind; `sync_unsynced` replays its events from backend history, then moves it to synced;
  victim    its stream's buffer was full when a write came. Writes never wait for a consumer: the
            watcher just remembers the first revision it did not get (`min_rev`) and, once its
            stream has room again, goes back to unsynced and replays from history. Nothing is lost,
            nothing is sent twice.
Guarantees (ETCD-FACTS.md): per watcher, events arrive in revision order, each once, with no gap
from the start revision on (or the watch is canceled with compact_revision when history it still
needs was compacted), and a revision's events are never split across responses.

Use from the gRPC Watch service (one WatchStream per Watch RPC):
    stream = ws.new_stream(lambda: loop.call_soon_threadsafe(wakeup.set))   # must not block
    create -> stream.watch(req.key, req.range_end, req.start_revision, req.prev_kv, req.filters,
                           req.progress_notify, req.fragment, req.watch_id)   # errors come as responses
    cancel -> stream.cancel(id); progress -> stream.request_progress()
    on wakeup: for r in stream.take(): send WatchResponse(header revision r.revision, watch_id,
               events, compact_revision, canceled, created, cancel_reason, fragment)
    end of RPC -> stream.close()
take() may read the KV store (prev_kv), so it can wait for the backend lock during a commit: call it
off the event loop (run_in_executor) if that matters. Event objects in responses are shared between
watchers: treat them as read-only.

Locking. Lock order is: sync lock -> backend lock (inside KVStore methods) -> `_lock`. The writer
thread calls `_on_write` holding the backend lock, so code holding `_lock` must never call into the
KVStore (reading its `current_revision` / `compact_revision` attributes is fine). History reads and
prev_kv lookups therefore happen with `_lock` released. `on_ready` callbacks also run with no lock
held. Moving a watcher to synced is safe without the backend lock because the KVStore raises
`current_revision` *before* calling the observer: if, under `_lock`, current_revision shows no
revision past what a watcher has seen, every later write's notification runs after we release
`_lock` and finds the watcher in synced.
"""
from __future__ import annotations

import threading
from collections import deque

from fastkv.errors import ErrCompacted
from fastkv.mvcc.ops import EventType, RangeOp, Event
from fastkv.mvcc.watch_group import (
    ERR_EMPTY_WATCHER_RANGE, ERR_WATCHER_DUPLICATE_ID, WatchFilter, Watcher, WatcherGroup, WatchResponse,
    split_fragments,
)

__all__ = ["WatchableStore", "WatchStream", "WatchResponse", "WatchFilter", "split_fragments"]

PROGRESS_WATCH_ID = -1  # etcd answers a progress request with WatchId -1 (not tied to any watch)
DEFAULT_PROGRESS_NOTIFY_INTERVAL = 600.0  # etcd's default: 10 minutes
DEFAULT_MAX_RESPONSE_BYTES = 1536 * 1024 + 512 * 1024  # etcd cuts fragments at max request bytes
                                                        # + gRPC overhead (embed's default)


class WatchStream:
    """One client watch stream: a set of watchers and one ordered queue of responses.

    The queue is bounded for event responses (`max_pending` of them); control responses (created,
    canceled, progress) always fit, as etcd sends them on a separate control channel. The gRPC
    handler calls the public API below from its own thread and calls `take()` when `on_ready` fires.
    """

    def __init__(self, store: "WatchableStore", on_ready, max_pending: int):
        self._store = store
        self._on_ready = on_ready
        self._max_pending = max_pending
        self._queue: deque = deque()  # (WatchResponse, Watcher | None)
        self._event_responses = 0  # responses in the queue that count against the bound
        self._watchers: dict = {}
        self._next_id = 0
        self._progress_requested = False
        self.closed = False

    # --- for the store: call inside store.exclusive() ----------------------------------------------
    def full(self) -> bool:
        return self._event_responses >= self._max_pending

    def push(self, resp: WatchResponse, w: Watcher | None, counted: bool) -> None:
        """Queue `resp` (for watcher `w`, None for a control response; `counted`: against the bound)."""
        if self.closed:
            return
        if not self._queue:
            self._store.wake_after(self)
        self._queue.append((resp, w, counted))
        if counted:
            self._event_responses += 1

    def drop(self, w: Watcher) -> None:
        """Forget watcher `w` (the store canceled it)."""
        self._watchers.pop(w.id, None)

    def watchers(self):
        return self._watchers.values()

    def answer_progress_if_synced(self) -> None:
        """etcd's RequestProgressAll: a WatchId -1 response at the current revision, sent only when
        every watcher of the stream is synced, so it bookmarks all of them; otherwise deferred."""
        if self._progress_requested and all(w.state == "synced" for w in self._watchers.values()):
            self._progress_requested = False
            self.push(WatchResponse(PROGRESS_WATCH_ID, [], self._store.progress_revision), None, False)

    def notify(self) -> None:
        """Tell the owner there are responses to take (called with no lock held)."""
        if self._on_ready is not None and not self.closed:
            self._on_ready()

    # --- public API ------------------------------------------------------------------------------
    def watch(self, key: bytes, range_end: bytes = b"", start_revision: int = 0, prev_kv: bool = False,
              filters=(), progress_notify: bool = False, fragment: bool = False, watch_id: int = 0) -> int:
        """Create a watcher; returns its id, or -1 when refused. Either way the answer is also queued
        as etcd's created response (refusals: created + canceled + cancel_reason, watch_id -1).

        range_end as in the etcd API: b"" = the key alone, b"\\0" = every key >= key, else
        [key, range_end). An empty key means b"\\0" (the smallest key). start_revision 0 = from the
        next revision; a start revision below the compact revision gets the watch canceled with
        compact_revision set (a response, not an error)."""
        store = self._store
        if not key:
            key = b"\x00"
        end = None if not range_end else (b"" if range_end == b"\x00" else range_end)
        with store.exclusive():
            if self.closed:
                return -1
            cur = store.kv.current_revision
            err = None
            if end and key >= end:
                err = ERR_EMPTY_WATCHER_RANGE
            elif watch_id == 0:
                while self._next_id in self._watchers:
                    self._next_id += 1
                watch_id = self._next_id
                self._next_id += 1
            elif watch_id in self._watchers:
                err = ERR_WATCHER_DUPLICATE_ID
            if err is not None:
                self.push(WatchResponse(-1, [], cur, created=True, canceled=True, cancel_reason=err), None, False)
                return -1
            synced = start_revision == 0 or start_revision > cur
            min_rev = cur + 1 if start_revision == 0 else start_revision
            w = Watcher(watch_id, key, end, min_rev, filters, prev_kv, progress_notify, fragment, self)
            self._watchers[watch_id] = w
            self.push(WatchResponse(watch_id, [], cur, created=True), None, False)
            store.attach(w, synced)
        return watch_id

    def cancel(self, watch_id: int) -> bool:
        """Cancel a watcher of this stream; queues a canceled response. False if there is none."""
        store = self._store
        with store.exclusive():
            w = self._watchers.pop(watch_id, None)
            if w is None:
                return False
            store.detach(w)
            self.push(WatchResponse(watch_id, [], store.kv.current_revision, canceled=True), None, False)
            self.answer_progress_if_synced()
        return True

    def request_progress(self) -> None:
        """Queue a WatchId -1 response with the current revision once every watcher is synced."""
        with self._store.exclusive():
            self._progress_requested = True
            self.answer_progress_if_synced()

    def take(self, max_responses: int = 0) -> list:
        """Drain queued responses (at most max_responses when > 0), in order. Fills prev_kv for
        watchers that asked (read at mod_revision - 1, as etcd's sendLoop does; left empty if that
        revision was compacted meanwhile) and cuts responses of `fragment` watchers that exceed the
        store's max_response_bytes."""
        store = self._store
        with store.exclusive():
            q = self._queue
            n = len(q) if max_responses <= 0 else min(max_responses, len(q))
            items = [q.popleft() for _ in range(n)]
            freed = sum(1 for _r, _w, counted in items if counted)
            self._event_responses -= freed
            if freed:
                store.room_freed()
        out = []
        prev_cache: dict = {}
        for resp, w, _counted in items:
            if w is not None and resp.events:
                if w.prev_kv:
                    resp.events = [self._with_prev(ev, prev_cache) for ev in resp.events]
                if w.fragment:
                    out.extend(split_fragments(resp, store.max_response_bytes))
                    continue
            out.append(resp)
        return out

    def _with_prev(self, ev, cache: dict):
        kv = ev.kv
        if ev.type == EventType.PUT and kv.version == 1:
            return ev  # a create: nothing existed at mod_revision - 1
        k = (kv.key, kv.mod_revision - 1)
        if k not in cache:
            try:
                kvs = self._store.kv.range(RangeOp(kv.key, revision=kv.mod_revision - 1)).kvs
            except ErrCompacted:
                kvs = []
            cache[k] = kvs[0] if kvs else None
        return Event(ev.type, kv, cache[k])

    @property
    def pending(self) -> int:
        """Responses waiting to be taken."""
        return len(self._queue)

    def watch_ids(self) -> list:
        with self._store.exclusive():
            return sorted(self._watchers)

    def close(self) -> None:
        store = self._store
        with store.exclusive():
            if self.closed:
                return
            for w in self._watchers.values():
                store.detach(w)
            self._watchers.clear()
            self._queue.clear()
            self._event_responses = 0
            self.closed = True
            store.forget(self)


class WatchableStore:
    """Watch streams over a KVStore; installs itself as the store's write observer.

    sync_interval > 0 starts a daemon thread that runs `sync_unsynced` every sync_interval (and at
    once when a stream frees room or a behind watcher appears), retries victims every
    victim_retry_interval and sends progress notifications every progress_notify_interval. With
    sync_interval = 0 the owner drives `sync_unsynced()` and `notify_progress()` itself (tests do).
    """

    def __init__(self, kvstore, *, victim_retry_interval: float = 0.01, sync_interval: float = 0.1,
                 max_events_per_response: int = 1000, max_pending_responses: int = 1024,
                 progress_notify_interval: float = DEFAULT_PROGRESS_NOTIFY_INTERVAL,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES, history_batch_events: int = 10000):
        self.kv = kvstore
        self.victim_retry_interval = victim_retry_interval
        self.sync_interval = sync_interval
        self.max_events_per_response = max(1, max_events_per_response)
        self.max_pending_responses = max(1, max_pending_responses)
        self.progress_notify_interval = progress_notify_interval
        self.max_response_bytes = max_response_bytes
        self.history_batch_events = max(1, history_batch_events)
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._synced = WatcherGroup()
        self._unsynced: set = set()
        self._victims: set = set()
        self._streams: set = set()
        self._wake: list = []
        self._kick = threading.Event()
        self._closed = False
        # The last revision whose events went to the synced group. Progress responses carry this
        # rather than kv.current_revision: a writer raises current_revision before its notification
        # gets `_lock`, and a bookmark must not run ahead of events still on their way.
        self.progress_revision = kvstore.current_revision
        self._prev_observer = kvstore.observer
        kvstore.observer = self._on_write
        self._thread = None
        if sync_interval > 0:
            self._thread = threading.Thread(target=self._run, name="fastkv-watch-sync", daemon=True)
            self._thread.start()

    # --- streams ---------------------------------------------------------------------------------
    def new_stream(self, on_ready=None) -> WatchStream:
        s = WatchStream(self, on_ready, self.max_pending_responses)
        with self._lock:
            self._streams.add(s)
        return s

    @property
    def _behind(self) -> bool:
        return bool(self._unsynced or self._victims)

    def counts(self) -> dict:
        """Watchers per group (for metrics and tests)."""
        with self._lock:
            return {"synced": len(self._synced), "unsynced": len(self._unsynced), "victims": len(self._victims)}

    def exclusive(self) -> "WatchableStore":
        """`with store.exclusive():` holds the store's lock (see Locking above) while watchers or
        stream queues change; the streams that were given their first queued response meanwhile
        are told (on_ready) after it is released. The store is the context manager itself: a plain
        class's __enter__/__exit__ (this runs on every write), no state beyond the store's own."""
        return self

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc) -> None:
        wake, self._wake = self._wake, []
        self._lock.release()
        for s in wake:
            s.notify()

    # --- for streams: call inside exclusive() -------------------------------------------------------
    def wake_after(self, stream: WatchStream) -> None:
        """`stream` has responses now: notify it when the lock is released."""
        self._wake.append(stream)

    def attach(self, w: Watcher, synced: bool) -> None:
        """Add a new watcher: to synced, or to unsynced (caught up from history by the sync thread)."""
        if synced:
            self._add_synced(w)
        else:
            w.state = "unsynced"
            self._unsynced.add(w)
            self._kick.set()

    def detach(self, w: Watcher) -> None:
        if w.state == "synced":
            self._synced.remove(w)
        elif w.state == "unsynced":
            self._unsynced.discard(w)
        elif w.state == "victim":
            self._victims.discard(w)
        w.state = ""

    def room_freed(self) -> None:
        """A stream's queue got room: watchers behind may progress now."""
        if self._behind:
            self._kick.set()

    def forget(self, stream: WatchStream) -> None:
        self._streams.discard(stream)

    def _add_synced(self, w: Watcher) -> None:
        w.state = "synced"
        self._synced.add(w)

    def restored(self) -> None:
        """The KV store was rebuilt from another state (a snapshot from the leader): every synced
        watcher becomes unsynced and catches up from the new store's history at its next revision
        (etcd's watchableStore.Restore)."""
        with self._lock:
            group = self._synced
            every = [w for ws in group.keys.values() for w in ws] + [w for ws in group.ranges.values() for w in ws]
            for w in every:
                group.remove(w)
                w.state = "unsynced"
                self._unsynced.add(w)
            self.progress_revision = self.kv.current_revision
        self._kick.set()

    # --- the write path ----------------------------------------------------------------------------
    def _on_write(self, events: list, rev: int) -> None:
        """KVStore observer: one write txn's events, all at main revision `rev`. Never blocks on a
        consumer: a watcher whose stream is full becomes a victim."""
        if self._prev_observer is not None:
            self._prev_observer(events, rev)
        new_victims = False
        with self.exclusive():
            self.progress_revision = rev
            if not len(self._synced):
                return
            for w, evs in self._synced.batches(events).items():
                if rev < w.min_rev:
                    continue  # watch starts at a future revision
                evs = w.passing(evs)
                if not evs:
                    continue
                s = w.stream
                if s.full():
                    self._synced.remove(w)
                    w.state = "victim"
                    w.min_rev = rev
                    self._victims.add(w)
                    new_victims = True
                    continue
                s.push(WatchResponse(w.id, evs, rev), w, True)
                w.idle = False
        if new_victims:
            self._kick.set()

    # --- catch-up ----------------------------------------------------------------------------------
    def sync_unsynced(self) -> int:
        """One catch-up step: victims whose stream has room go back to unsynced; unsynced watchers
        whose start revision was compacted are canceled (compact_revision set); the others get
        history from the backend (at most history_batch_events events, whole revisions) and move
        to synced once they have seen the current revision. Returns how many watchers are still
        behind and could progress now (their stream has room); 0 means nothing more to do now."""
        with self._sync_lock:
            for _attempt in range(3):
                with self.exclusive():
                    self._cancel_compacted_and_retry_victims()
                    chosen = [w for w in self._unsynced if not w.stream.full()]
                    cur = self.kv.current_revision
                    lo = min((w.min_rev for w in chosen), default=0)
                if not chosen:
                    return 0
                events: list = []
                covered = cur
                if lo <= cur:
                    try:
                        events = self.kv.history(lo, cur, max_events=self.history_batch_events)
                    except ErrCompacted:
                        continue  # compacted while we read: the next pass cancels who needs it
                    if len(events) >= self.history_batch_events:
                        covered = events[-1].kv.mod_revision
                with self.exclusive():
                    self._deliver_history(chosen, events, covered, cur)
                    for s in {w.stream for w in chosen}:
                        s.answer_progress_if_synced()
                    left = sum(1 for w in self._unsynced if not w.stream.full())
                return left
            return len(self._unsynced)

    def _cancel_compacted_and_retry_victims(self) -> None:
        for w in [v for v in self._victims if not v.stream.full()]:
            self._victims.discard(w)
            w.state = "unsynced"
            self._unsynced.add(w)
        compact = self.kv.compact_revision
        if not compact:
            return
        for w in [u for u in self._unsynced if u.min_rev < compact]:
            # etcd: the watcher leaves the store and its client gets compact_revision (canceled).
            self._unsynced.discard(w)
            w.state = ""
            s = w.stream
            s.drop(w)
            s.push(WatchResponse(w.id, [], 0, compact_revision=compact, canceled=True), None, False)
            s.answer_progress_if_synced()

    @staticmethod
    def _history_batches(w, events: list, limit: int) -> list:
        """`w`'s share of `events`: lists of events of whole revisions, after its filters, each at
        most `limit` events unless one revision alone has more."""
        groups: list = []  # [events of one revision], in revision order
        group: list = []
        for ev in events:
            if ev.kv.mod_revision < w.min_rev or not w.contains(ev.kv.key):
                continue
            if group and group[0].kv.mod_revision != ev.kv.mod_revision:
                groups.append(group)
                group = []
            group.append(ev)
        if group:
            groups.append(group)
        batches: list = []
        batch: list = []
        for g in groups:
            g = w.passing(g)
            if not g:
                continue
            if batch and len(batch) + len(g) > limit:
                batches.append(batch)
                batch = []
            batch.extend(g)
        if batch:
            batches.append(batch)
        return batches

    def _deliver_history(self, chosen: list, events: list, covered: int, cur: int) -> None:
        """Queue each chosen watcher's share of `events` (history through revision `covered`, read
        while the current revision was `cur`) as responses of whole revisions, stopping at a full
        stream; a watcher that has seen the current revision moves to synced."""
        limit = self.max_events_per_response
        shared: dict = {}  # watchers with one range, start and filter set get the same batches
        for w in chosen:
            if w.state != "unsynced":
                continue  # canceled, or its stream closed, while we read history
            view = (w.key, w.end, w.min_rev, w.filters)
            batches = shared.get(view)
            if batches is None:
                batches = shared[view] = self._history_batches(w, events, limit)
            s = w.stream
            blocked = False
            for batch in batches:
                if s.full():
                    w.min_rev = batch[0].kv.mod_revision  # resume here when there is room
                    blocked = True
                    break
                s.push(WatchResponse(w.id, batch, cur), w, True)
                w.idle = False
                w.min_rev = batch[-1].kv.mod_revision + 1
            if blocked:
                continue
            w.min_rev = max(w.min_rev, covered + 1)
            if w.min_rev > self.kv.current_revision:
                self._unsynced.discard(w)
                self._add_synced(w)

    # --- progress ------------------------------------------------------------------------------------
    def notify_progress(self) -> None:
        """One progress_notify tick (etcd's progress ticker): every synced watcher that asked for
        progress_notify and got no events since the previous tick receives an empty response with
        the current revision."""
        with self.exclusive():
            cur = self.progress_revision
            for s in self._streams:
                for w in s.watchers():
                    if not w.progress_notify:
                        continue
                    if w.idle and w.state == "synced" and not s.full():
                        s.push(WatchResponse(w.id, [], cur), w, True)
                    w.idle = True

    # --- background thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        import time

        next_progress = time.monotonic() + self.progress_notify_interval
        while not self._closed:
            timeout = self.sync_interval
            if self._victims:
                timeout = min(timeout, self.victim_retry_interval)
            self._kick.wait(timeout)
            self._kick.clear()
            if self._closed:
                return
            try:
                while self._behind and self.sync_unsynced() > 0 and not self._closed:
                    pass
                if time.monotonic() >= next_progress:
                    next_progress = time.monotonic() + self.progress_notify_interval
                    self.notify_progress()
            except Exception:  # noqa: BLE001 - keep the loop alive; the store is reopened by its owner
                import logging

                logging.getLogger(__name__).exception("watch sync step failed")

    def close(self) -> None:
        self._closed = True
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.kv.observer == self._on_write:
            self.kv.observer = self._prev_observer
        with self._lock:
            for s in list(self._streams):
                s.closed = True
            self._streams.clear()
            self._synced = WatcherGroup()
            self._unsynced.clear()
            self._victims.clear()
