"""The watch-guarantee checker against hand-made histories."""
from __future__ import annotations

from fastkv.chaos.history import CAS, DELETE, PUT, Op
from fastkv.chaos.watchcheck import WatchRecord, check_watches


def history():
    return [
        Op(PUT, "p/a", 0, 1, value="v1", revision=2),
        Op(PUT, "p/b", 1, 2, value="v2", revision=3),
        Op(DELETE, "p/a", 2, 3, out=1, revision=4),
        Op(DELETE, "p/a", 3, 4, out=0, revision=4),            # nothing deleted: no event
        Op(CAS, "p/b", 4, 5, value="v3", expected="v2", out=True, revision=5),
        Op(CAS, "p/b", 5, 6, value="v9", expected="zz", out=False, read="v3", revision=5),
        Op(PUT, "p/a", 6, None, value="v4"),                    # unknown: may or may not appear
    ]


GOOD = [(2, "p/a", "put", "v1"), (3, "p/b", "put", "v2"), (4, "p/a", "delete", None), (5, "p/b", "put", "v3")]


def kinds(res):
    return sorted({i.kind for i in res.issues})


def test_complete_ordered_stream_passes():
    res = check_watches(history(), [WatchRecord(1, "p/", 1, list(GOOD), caught_up_to=5)], final_revision=5)
    assert res.ok and res.acknowledged_checked == 4
    # the unknown put may show up, at a new revision
    res = check_watches(history(), [WatchRecord(1, "p/", 1, GOOD + [(6, "p/a", "put", "v4")], caught_up_to=6)])
    assert res.ok


def test_watch_resumed_from_a_revision_covers_only_its_window():
    res = check_watches(history(), [WatchRecord(1, "p/", 4, GOOD[2:], caught_up_to=5)])
    assert res.ok and res.acknowledged_checked == 2


def test_gap_is_caught():
    events = [e for e in GOOD if e[0] != 3]
    res = check_watches(history(), [WatchRecord(1, "p/", 1, events, caught_up_to=5)])
    assert kinds(res) == ["missed"]


def test_duplicate_is_caught():
    res = check_watches(history(), [WatchRecord(1, "p/", 1, GOOD + [GOOD[1]], caught_up_to=5)])
    assert "duplicate" in kinds(res)


def test_out_of_order_is_caught():
    events = [GOOD[0], GOOD[2], GOOD[1], GOOD[3]]
    res = check_watches(history(), [WatchRecord(1, "p/", 1, events, caught_up_to=5)])
    assert "out-of-order" in kinds(res)


def test_phantom_and_wrong_revision_are_caught():
    res = check_watches(history(), [WatchRecord(1, "p/", 1, GOOD + [(6, "p/b", "put", "never")], caught_up_to=6)])
    assert kinds(res) == ["phantom"]
    bad = [GOOD[0], (3, "p/b", "put", "v3"), GOOD[2], (5, "p/b", "put", "v2")]
    res = check_watches(history(), [WatchRecord(1, "p/", 1, bad, caught_up_to=5)])
    assert "wrong-revision" in kinds(res)
    res = check_watches(history(), [WatchRecord(1, "p/", 1, GOOD + [(5, "p/a", "delete", None)], caught_up_to=5)])
    assert "phantom" in kinds(res)


def test_watcher_that_did_not_catch_up():
    res = check_watches(history(), [WatchRecord(1, "p/", 1, GOOD[:2], caught_up_to=3)], final_revision=5)
    assert kinds(res) == ["not-caught-up"]


def test_record_round_trip():
    w = WatchRecord(3, "p/", 2, list(GOOD), caught_up_to=5, resumes=2, endpoint="127.0.0.1:1")
    assert WatchRecord.from_json(w.to_json()) == w
