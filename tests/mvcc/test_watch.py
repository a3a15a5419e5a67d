"""Watch semantics of the watchable store, one etcd rule per test, on a real KVStore (LMDB and memory).

The catch-up thread is off (sync_interval=0) except in the threaded tests, so each step is explicit.
"""
from __future__ import annotations

import threading
import time

import pytest

from fastkv.mvcc import DeleteOp, PutOp, TxnOp
from fastkv.mvcc.ops import EventType
from fastkv.mvcc.watch_group import ERR_EMPTY_WATCHER_RANGE, ERR_WATCHER_DUPLICATE_ID, WatchFilter
from fastkv.mvcc.watchable import WatchableStore, WatchResponse, split_fragments


@pytest.fixture
def ws(store):
    w = WatchableStore(store, sync_interval=0)
    yield w
    w.close()


def evs(resps):
    """(type, key, value, mod_revision) of every event in the responses, in order."""
    return [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for r in resps for e in r.events]


P, D = EventType.PUT, EventType.DELETE


def test_live_events_key_prefix_and_all(store, ws):
    store.put(PutOp(b"a", b"0"))  # rev 2, before the watch: not delivered
    s = ws.new_stream()
    one = s.watch(b"a")
    pre = s.watch(b"a", b"b")
    every = s.watch(b"", b"\x00")  # empty key + "\0": all keys
    assert (one, pre, every) == (0, 1, 2)
    created = s.take()
    assert [(r.watch_id, r.created, r.revision) for r in created] == [(0, True, 2), (1, True, 2), (2, True, 2)]
    store.put(PutOp(b"a", b"1"))  # 3
    store.put(PutOp(b"ab", b"2"))  # 4
    store.put(PutOp(b"c", b"3"))  # 5
    store.delete_range(DeleteOp(b"a"))  # 6
    by_id: dict = {}
    for r in s.take():
        by_id.setdefault(r.watch_id, []).append(r)
    assert evs(by_id[0]) == [(P, b"a", b"1", 3), (D, b"a", b"", 6)]
    assert evs(by_id[1]) == [(P, b"a", b"1", 3), (P, b"ab", b"2", 4), (D, b"a", b"", 6)]
    assert evs(by_id[2]) == [(P, b"a", b"1", 3), (P, b"ab", b"2", 4), (P, b"c", b"3", 5), (D, b"a", b"", 6)]
    # header revision of a live response is the write's revision; a put's kv is complete
    assert [r.revision for r in by_id[0]] == [3, 6]
    kv = by_id[1][1].events[0].kv
    assert (kv.create_revision, kv.mod_revision, kv.version) == (4, 4, 1)


def test_txn_events_arrive_in_one_response(store, ws):
    s = ws.new_stream()
    s.watch(b"k", b"\x00")
    s.take()
    store.txn(TxnOp(success=[PutOp(b"k1", b"a"), PutOp(b"k2", b"b"), DeleteOp(b"k3")]))
    store.put(PutOp(b"k3", b"c"))
    resps = s.take()
    assert [[e.kv.key for e in r.events] for r in resps] == [[b"k1", b"k2"], [b"k3"]]


def test_history_replay_respects_max_events_without_splitting_a_revision(store):
    ws = WatchableStore(store, sync_interval=0, max_events_per_response=2)
    store.put(PutOp(b"x", b"1"))  # 2
    store.txn(TxnOp(success=[PutOp(b"x1", b"a"), PutOp(b"x2", b"b"), PutOp(b"x3", b"c")]))  # 3: 3 events
    store.put(PutOp(b"x", b"2"))  # 4
    store.put(PutOp(b"x", b"3"))  # 5
    s = ws.new_stream()
    s.watch(b"x", b"y", start_revision=2)
    assert ws.counts()["unsynced"] == 1
    s.take()
    assert ws.sync_unsynced() == 0
    resps = s.take()
    assert [[e.kv.mod_revision for e in r.events] for r in resps] == [[2], [3, 3, 3], [4, 5]]
    assert all(r.revision == 5 for r in resps)  # catch-up responses carry the current revision
    assert ws.counts() == {"synced": 1, "unsynced": 0, "victims": 0}
    store.put(PutOp(b"x", b"4"))
    assert evs(s.take()) == [(P, b"x", b"4", 6)]
    ws.close()


def test_start_revision_in_the_future(store, ws):
    s = ws.new_stream()
    s.watch(b"f", start_revision=4)  # current is 1
    s.take()
    for i in range(5):
        store.put(PutOp(b"f", b"%d" % i))  # revs 2..6
    assert [e[3] for e in evs(s.take())] == [4, 5, 6]


def test_compacted_start_revision_cancels_with_compact_revision(store, ws):
    for i in range(6):
        store.put(PutOp(b"c", b"%d" % i))  # revs 2..7
    store.compact(5)
    s = ws.new_stream()
    wid = s.watch(b"c", start_revision=3)
    ok = s.watch(b"c", start_revision=5)  # at the compact revision: allowed
    assert [r.created for r in s.take()] == [True, True]
    ws.sync_unsynced()
    resps = s.take()
    canceled = [r for r in resps if r.watch_id == wid]
    assert len(canceled) == 1
    r = canceled[0]
    assert (r.canceled, r.compact_revision, r.events, r.revision) == (True, 5, [], 0)
    assert [e[3] for e in evs(r for r in resps if r.watch_id == ok)] == [5, 6, 7]
    assert s.watch_ids() == [ok]


def test_compaction_overtakes_a_slow_watcher(store):
    ws = WatchableStore(store, sync_interval=0, max_pending_responses=1)
    s = ws.new_stream()
    wid = s.watch(b"s")
    s.take()
    for i in range(4):
        store.put(PutOp(b"s", b"%d" % i))  # 2..5; only the first fits, then it is a victim
    assert ws.counts()["victims"] == 1
    store.compact(4)
    assert evs(s.take()) == [(P, b"s", b"0", 2)]
    ws.sync_unsynced()
    (r,) = s.take()
    assert (r.watch_id, r.canceled, r.compact_revision) == (wid, True, 4)
    assert ws.counts() == {"synced": 0, "unsynced": 0, "victims": 0}
    ws.close()


def test_slow_consumer_never_blocks_writes_and_loses_nothing(store):
    ws = WatchableStore(store, sync_interval=0, max_pending_responses=2)
    s = ws.new_stream()
    s.watch(b"k", b"\x00")
    s.take()
    for i in range(50):
        store.put(PutOp(b"k%d" % (i % 7), b"%d" % i))
    assert s.pending == 2 and ws.counts()["victims"] == 1
    got = []
    for _ in range(200):
        got += s.take()
        if ws.sync_unsynced() == 0 and s.pending == 0 and ws.counts()["synced"] == 1:
            break
    assert [e[3] for e in evs(got)] == list(range(2, 52))
    store.put(PutOp(b"k", b"live"))
    assert evs(s.take()) == [(P, b"k", b"live", 52)]
    ws.close()


def test_watch_ids_auto_assign_skip_explicit_and_refuse_duplicates(store, ws):
    s = ws.new_stream()
    assert s.watch(b"a", watch_id=1) == 1
    assert s.watch(b"a", watch_id=1) == -1
    assert s.watch(b"a") == 0
    assert s.watch(b"a") == 2  # 1 is taken
    resps = s.take()
    dup = resps[1]
    assert (dup.watch_id, dup.created, dup.canceled, dup.cancel_reason) == (-1, True, True, ERR_WATCHER_DUPLICATE_ID)
    assert [r.watch_id for r in resps] == [1, -1, 0, 2]
    other = ws.new_stream()
    assert other.watch(b"a", watch_id=1) == 1  # ids are per stream


def test_empty_range_is_refused(ws):
    s = ws.new_stream()
    assert s.watch(b"b", b"a") == -1
    assert s.watch(b"b", b"b") == -1
    (r, _) = s.take()
    assert (r.canceled, r.cancel_reason) == (True, ERR_EMPTY_WATCHER_RANGE)


def test_cancel(store, ws):
    s = ws.new_stream()
    wid = s.watch(b"a")
    s.take()
    store.put(PutOp(b"a", b"1"))
    assert s.cancel(wid) is True
    assert s.cancel(wid) is False
    store.put(PutOp(b"a", b"2"))
    resps = s.take()
    assert evs(resps) == [(P, b"a", b"1", 2)]
    assert (resps[-1].watch_id, resps[-1].canceled, resps[-1].revision) == (wid, True, 2)
    assert ws.counts() == {"synced": 0, "unsynced": 0, "victims": 0}


@pytest.mark.parametrize("start", [0, 2])
def test_filters(store, ws, start):
    s = ws.new_stream()
    noput = s.watch(b"a", start_revision=start, filters=[WatchFilter.NOPUT])
    nodel = s.watch(b"a", start_revision=start, filters=[WatchFilter.NODELETE])
    s.take()
    store.put(PutOp(b"a", b"1"))
    store.delete_range(DeleteOp(b"a"))
    store.put(PutOp(b"a", b"2"))
    ws.sync_unsynced()
    by_id: dict = {}
    for r in s.take():
        by_id.setdefault(r.watch_id, []).append(r)
    assert evs(by_id[noput]) == [(D, b"a", b"", 3)]
    assert evs(by_id[nodel]) == [(P, b"a", b"1", 2), (P, b"a", b"2", 4)]


@pytest.mark.parametrize("start", [0, 2])
def test_prev_kv(store, ws, start):
    s = ws.new_stream()
    s.watch(b"p", start_revision=start, prev_kv=True)
    s.take()
    store.put(PutOp(b"p", b"1"))  # 2: create, no prev
    store.put(PutOp(b"p", b"2"))  # 3
    store.delete_range(DeleteOp(b"p"))  # 4
    ws.sync_unsynced()
    got = [e for r in s.take() for e in r.events]
    assert got[0].prev_kv is None
    assert (got[1].prev_kv.value, got[1].prev_kv.mod_revision) == (b"1", 2)
    assert (got[2].prev_kv.value, got[2].prev_kv.mod_revision, got[2].prev_kv.version) == (b"2", 3, 2)


def test_request_progress_waits_until_every_watcher_is_synced(store, ws):
    for i in range(3):
        store.put(PutOp(b"r", b"%d" % i))  # 2..4
    s = ws.new_stream()
    s.watch(b"r")
    s.watch(b"r", start_revision=2)  # unsynced
    s.take()
    s.request_progress()
    assert s.take() == []  # a progress response now would bookmark revision 4 falsely
    ws.sync_unsynced()
    resps = s.take()
    assert evs(resps) == [(P, b"r", b"0", 2), (P, b"r", b"1", 3), (P, b"r", b"2", 4)]
    last = resps[-1]
    assert (last.watch_id, last.events, last.revision) == (-1, [], 4)  # after the events it covers
    s.request_progress()
    assert [(r.watch_id, r.revision) for r in s.take()] == [(-1, 4)]


def test_progress_notify_only_when_idle_and_synced(store, ws):
    s = ws.new_stream()
    a = s.watch(b"a", progress_notify=True)
    s.watch(b"b")  # did not ask
    s.take()
    ws.notify_progress()
    assert [(r.watch_id, r.events, r.revision) for r in s.take()] == [(a, [], 1)]
    store.put(PutOp(b"a", b"1"))
    ws.notify_progress()  # had events since the last tick: elided
    assert evs(s.take()) == [(P, b"a", b"1", 2)]
    store.put(PutOp(b"b", b"1"))
    ws.notify_progress()
    resps = s.take()
    assert [(r.watch_id, r.events, r.revision) for r in resps if r.watch_id == a] == [(a, [], 3)]


def test_progress_notify_timer(store):
    ws = WatchableStore(store, sync_interval=0.01, progress_notify_interval=0.05)
    ready = threading.Event()
    s = ws.new_stream(ready.set)
    wid = s.watch(b"a", progress_notify=True)
    got = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len([r for r in got if not r.created]) < 2:
        ready.wait(0.1)
        ready.clear()
        got += s.take()
    assert [(r.watch_id, r.revision) for r in got if not r.created][:2] == [(wid, 1), (wid, 1)]
    ws.close()


def test_fragment_splits_large_responses(store):
    ws = WatchableStore(store, sync_interval=0, max_response_bytes=1000)
    s = ws.new_stream()
    frag = s.watch(b"f", b"g", fragment=True)
    whole = s.watch(b"f", b"g")
    s.take()
    store.txn(TxnOp(success=[PutOp(b"f%d" % i, b"v" * 300) for i in range(6)]))
    resps = s.take()
    pieces = [r for r in resps if r.watch_id == frag]
    assert [r.fragment for r in pieces] == [True] * (len(pieces) - 1) + [False] and len(pieces) > 2
    assert [e.kv.key for r in pieces for e in r.events] == [b"f%d" % i for i in range(6)]
    assert [len(r.events) for r in resps if r.watch_id == whole] == [6]
    ws.close()


def test_split_fragments_keeps_small_and_single_event_responses():
    r = WatchResponse(1, [], 5)
    assert split_fragments(r, 10) == [r]


def test_on_ready_fires_when_the_queue_becomes_non_empty(store, ws):
    calls = []
    s = ws.new_stream(lambda: calls.append(1))
    s.watch(b"a")
    assert calls == [1]
    store.put(PutOp(b"a", b"1"))  # queue already non-empty: no second wake-up
    assert calls == [1]
    s.take()
    store.put(PutOp(b"a", b"2"))
    assert calls == [1, 1]


def test_closing_a_stream_drops_its_watchers(store, ws):
    s = ws.new_stream()
    s.watch(b"a")
    s.watch(b"a", start_revision=1)
    s.close()
    assert ws.counts() == {"synced": 0, "unsynced": 0, "victims": 0}
    store.put(PutOp(b"a", b"1"))
    assert s.take() == []


def test_close_restores_the_previous_observer(store):
    seen = []
    store.observer = lambda events, rev: seen.append(rev)
    ws = WatchableStore(store, sync_interval=0)
    store.put(PutOp(b"a", b"1"))
    ws.close()
    store.put(PutOp(b"a", b"2"))
    assert seen == [2, 3]
