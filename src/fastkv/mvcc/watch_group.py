"""Watchers, the groups that index them by key, and the responses they produce.

The watchable store (watchable.py) keeps every watcher in exactly one of three places: the synced
group (fed at the end of each write txn), the unsynced set (catching up from backend history) or
the victim set (its stream's buffer was full; retried later from history). This module holds the
plain data those places are made of; all locking lives in watchable.py.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from enum import IntEnum

from fastkv.mvcc.ops import EventType

# etcd's WatchCreateRequest.FilterType numbers.


class WatchFilter(IntEnum):
    NOPUT = 0
    NODELETE = 1


# etcd's mvcc error texts (mvcc/watcher.go); clients see them as a created+canceled response's
# cancel_reason.
ERR_WATCHER_DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"
ERR_EMPTY_WATCHER_RANGE = "mvcc: watcher range is empty"

# Rough protobuf overhead of one Event (tags, lengths, the four int64 fields of each KeyValue); only
# used to decide where to cut fragments when the caller gives no exact sizer.
_EVENT_OVERHEAD = 48
_RESPONSE_OVERHEAD = 64


@dataclass(slots=True)
class WatchResponse:
    """One message for the client. Field names follow etcd's WatchResponse; `revision` is the
    header revision. Responses carrying events never split one revision's events (unless the
    watcher asked for `fragment` and the gRPC layer cut a too-large one: then every piece but the
    last has fragment=True)."""

    watch_id: int
    events: list = field(default_factory=list)
    revision: int = 0
    compact_revision: int = 0
    canceled: bool = False
    created: bool = False
    cancel_reason: str = ""
    fragment: bool = False


class Watcher:
    """One watch on [key, end) (end None = the single key, b"" = every key >= key).

    `min_rev` is the next revision this watcher must see: for an unsynced watcher or a victim it is
    where catch-up resumes; for a synced one it only matters when the watch started in the future
    (events below it are skipped)."""

    __slots__ = ("id", "key", "end", "min_rev", "filters", "prev_kv", "progress_notify", "fragment",
                 "stream", "state", "idle")

    def __init__(self, watch_id: int, key: bytes, end, min_rev: int, filters, prev_kv: bool,
                 progress_notify: bool, fragment: bool, stream):
        self.id = watch_id
        self.key = key
        self.end = end
        self.min_rev = min_rev
        self.filters = frozenset(int(f) for f in filters)
        self.prev_kv = prev_kv
        self.progress_notify = progress_notify
        self.fragment = fragment
        self.stream = stream
        self.state = ""  # "synced" | "unsynced" | "victim" | "" (gone)
        self.idle = True  # no event response since the last progress tick (etcd's progress map)

    def contains(self, k: bytes) -> bool:
        end = self.end
        if end is None:
            return k == self.key
        return k >= self.key and (end == b"" or k < end)

    def passing(self, events: list) -> list:
        """The events that pass this watcher's filters (NOPUT drops puts, NODELETE deletes)."""
        f = self.filters
        if not f:
            return events
        drop_put = WatchFilter.NOPUT in f
        drop_del = WatchFilter.NODELETE in f
        return [e for e in events if not ((drop_put and e.type == EventType.PUT)
                                          or (drop_del and e.type == EventType.DELETE))]


class WatcherGroup:
    """Watchers indexed for the write path: single-key watchers by key, range watchers by their
    (key, end) range. Distinct ranges are kept sorted by start key so an event only tests those
    starting at or below its key (many watchers on one prefix cost one test; an interval tree would
    pay off only with many overlapping distinct ranges)."""

    __slots__ = ("keys", "ranges", "count", "_starts", "_spans")

    def __init__(self):
        self.keys: dict = {}
        self.ranges: dict = {}  # (key, end) -> set of watchers
        self.count = 0
        self._starts: list | None = None  # sorted range starts, rebuilt after a change
        self._spans: list = []  # (key, end, watchers) in the order of _starts

    def add(self, w: Watcher) -> None:
        if w.end is None:
            self.keys.setdefault(w.key, set()).add(w)
        else:
            self.ranges.setdefault((w.key, w.end), set()).add(w)
            self._starts = None
        self.count += 1

    def remove(self, w: Watcher) -> bool:
        if w.end is None:
            s = self.keys.get(w.key)
            if not s or w not in s:
                return False
            s.discard(w)
            if not s:
                del self.keys[w.key]
        else:
            s = self.ranges.get((w.key, w.end))
            if not s or w not in s:
                return False
            s.discard(w)
            if not s:
                del self.ranges[(w.key, w.end)]
                self._starts = None
        self.count -= 1
        return True

    def batches(self, events: list) -> dict:
        """watcher -> its events among `events` (all of one revision), in event order."""
        out: dict = {}
        keys = self.keys
        ranges = self.ranges
        if ranges and self._starts is None:
            self._spans = sorted((lo, hi, ws) for (lo, hi), ws in ranges.items())
            self._starts = [sp[0] for sp in self._spans]
        starts, spans = self._starts, self._spans
        for ev in events:
            k = ev.kv.key
            ws = keys.get(k)
            if ws:
                for w in ws:
                    out.setdefault(w, []).append(ev)
            if ranges:
                for j in range(bisect_right(starts, k)):
                    hi = spans[j][1]
                    if hi == b"" or k < hi:
                        for w in spans[j][2]:
                            out.setdefault(w, []).append(ev)
        return out

    def __len__(self) -> int:
        return self.count


def estimate_event_size(ev) -> int:
    n = _EVENT_OVERHEAD + len(ev.kv.key) + len(ev.kv.value)
    if ev.prev_kv is not None:
        n += _EVENT_OVERHEAD + len(ev.prev_kv.key) + len(ev.prev_kv.value)
    return n


def estimate_response_size(resp: WatchResponse) -> int:
    return _RESPONSE_OVERHEAD + sum(estimate_event_size(e) for e in resp.events)


def split_fragments(resp: WatchResponse, max_bytes: int, size_of=estimate_response_size) -> list:
    """Cut a response into pieces below max_bytes, as etcd's sendFragments does: nothing to do when
    it is small enough or has fewer than two events; otherwise each piece holds at least one event,
    and all pieces but the last carry fragment=True. `size_of` may be the exact protobuf size."""
    if len(resp.events) < 2 or size_of(resp) < max_bytes:
        return [resp]
    pieces = []
    events = resp.events
    i = 0
    while i < len(events):
        cur = WatchResponse(resp.watch_id, [events[i]], resp.revision, resp.compact_revision,
                            resp.canceled, resp.created, resp.cancel_reason, True)
        i += 1
        while i < len(events):
            cur.events.append(events[i])
            if size_of(cur) >= max_bytes:
                cur.events.pop()
                break
            i += 1
        pieces.append(cur)
    pieces[-1].fragment = False
    return pieces
