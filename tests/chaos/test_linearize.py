"""The linearizability checker against hand-made and generated histories."""
from __future__ import annotations

import random

import pytest

from fastkv.chaos import linearize, synth
from fastkv.chaos.history import CAS, DELETE, GET, PUT, Op, load_ops, save_ops


def get(t0, t1, out, key="k", c=0):
    return Op(GET, key, t0, t1, c, out=out)


def put(t0, t1, value, key="k", c=0):
    return Op(PUT, key, t0, t1, c, value=value)


def delete(t0, t1, deleted, key="k", c=0, **kw):
    return Op(DELETE, key, t0, t1, c, out=deleted, **kw)


def cas(t0, t1, expected, value, ok, read=None, key="k", c=0):
    return Op(CAS, key, t0, t1, c, value=value, expected=expected, out=ok, read=read)


def verdict(ops):
    return linearize.check(ops, time_limit=30).linearizable


# --- legal histories -------------------------------------------------------------------------

def test_empty_and_sequential():
    assert verdict([]) is True
    assert verdict([get(0, 1, None), put(2, 3, "a"), get(4, 5, "a"), delete(6, 7, 1), get(8, 9, None),
                    delete(10, 11, 0)]) is True


def test_concurrent_read_may_see_old_or_new():
    w = put(0, 10, "a")
    assert verdict([w, get(1, 2, None, c=1)]) is True
    assert verdict([w, get(1, 2, "a", c=1)]) is True


def test_reads_in_two_clients_must_agree_on_order():
    # once a read returned the new value, a later read may not return the old one
    ops = [put(0, 1, "a"), put(2, 20, "b", c=1), get(3, 4, "b", c=2), get(5, 6, "a", c=3)]
    assert verdict(ops) is False
    ops[-1] = get(5, 6, "b", c=3)
    assert verdict(ops) is True


# --- violations ------------------------------------------------------------------------------

def test_stale_read_is_caught():
    ops = [put(0, 1, "a"), put(2, 3, "b"), get(4, 5, "a")]
    res = linearize.check(ops)
    assert res.linearizable is False
    kr = res.violations[0]
    assert kr.key == "k" and kr.stuck is not None
    # the shortest failing window still proves it from any initial value
    assert 1 <= len(kr.failing) <= 3 and any(o.kind == GET for o in kr.failing)


def test_lost_write_is_caught():
    # an acknowledged put that a later read does not see
    assert verdict([put(0, 1, "a"), get(2, 3, None, c=1)]) is False


def test_read_of_value_never_written_is_caught():
    assert verdict([put(0, 1, "a"), get(2, 3, "zzz")]) is False


def test_delete_count_must_match_presence():
    assert verdict([delete(0, 1, 1)]) is False
    assert verdict([put(0, 1, "a"), delete(2, 3, 0)]) is False
    assert verdict([put(0, 1, "a"), delete(2, 3, 1, prev="b")]) is False
    assert verdict([put(0, 1, "a"), delete(2, 3, 1, prev="a"), get(4, 5, None)]) is True


# --- unknown outcomes ------------------------------------------------------------------------

def test_unknown_write_that_happened():
    lost = put(0, None, "a")
    assert verdict([lost, get(5, 6, "a", c=1), get(7, 8, "a", c=2)]) is True


def test_unknown_write_that_did_not_happen():
    assert verdict([put(0, None, "a"), get(5, 6, None, c=1)]) is True


def test_unknown_write_cannot_happen_before_its_call():
    assert verdict([get(0, 1, "a", c=1), put(2, None, "a")]) is False


def test_unknown_write_cannot_be_undone():
    # once a read saw it, it happened; a later read cannot go back
    assert verdict([put(0, None, "a"), get(5, 6, "a", c=1), get(7, 8, None, c=2)]) is False


def test_unknown_delete_may_explain_absence():
    ops = [put(0, 1, "a"), delete(2, None, None, c=1), get(5, 6, None, c=2)]
    assert verdict(ops) is True
    ops.append(get(7, 8, "a", c=3))
    assert verdict(ops) is False


def test_unknown_get_is_ignored():
    assert verdict([put(0, 1, "a"), get(2, None, None)]) is True


# --- compare-and-swap ------------------------------------------------------------------------

def test_cas_race_only_one_winner():
    base = [put(0, 1, "a")]
    both = base + [cas(2, 5, "a", "b", True, c=1), cas(2, 5, "a", "c", True, c=2)]
    assert verdict(both) is False
    one = base + [cas(2, 5, "a", "b", True, c=1), cas(2, 5, "a", "c", False, read="b", c=2), get(6, 7, "b")]
    assert verdict(one) is True


def test_cas_failure_branch_read_is_checked():
    assert verdict([put(0, 1, "a"), cas(2, 3, "x", "b", False, read="a")]) is True
    assert verdict([put(0, 1, "a"), cas(2, 3, "x", "b", False, read="q")]) is False
    # failure while the expected value was certainly there
    assert verdict([put(0, 1, "a"), cas(2, 3, "a", "b", False, read="a")]) is False


def test_cas_on_absent_key():
    assert verdict([cas(0, 1, None, "a", True), get(2, 3, "a")]) is True
    assert verdict([put(0, 1, "z"), cas(2, 3, None, "a", True)]) is False


def test_unknown_cas_either_way():
    start = [put(0, 1, "a")]
    assert verdict(start + [cas(2, None, "a", "b", None), get(5, 6, "b", c=1)]) is True
    assert verdict(start + [cas(2, None, "a", "b", None), get(5, 6, "a", c=1)]) is True
    assert verdict(start + [cas(2, None, "x", "b", None), get(5, 6, "b", c=1)]) is False


# --- reduction is exact ----------------------------------------------------------------------

def test_reduction_keeps_unknown_writes_a_delete_may_depend_on():
    # deleted=1 without prev_kv could be explained only by the unknown put happening
    ops = [put(0, None, "a"), delete(5, 6, 1, c=1)]
    kept, dropped = linearize.reduce_ops(ops)
    assert dropped == 0 and verdict(ops) is True
    # with prev_kv recorded, the delete names what it removed, so the put is observed
    ops = [put(0, None, "a"), delete(5, 6, 1, c=1, prev="a")]
    assert linearize.reduce_ops(ops)[1] == 0 and verdict(ops) is True
    # an unknown put nobody observed is dropped
    ops = [put(0, None, "a"), put(1, 2, "b", c=1), get(3, 4, "b")]
    assert linearize.reduce_ops(ops)[1] == 1 and verdict(ops) is True


@pytest.mark.parametrize("seed", range(12))
def test_reduction_never_changes_the_verdict(seed):
    rng = random.Random(seed)
    ops = synth.sequential_history(rng, ops=60, clients=4, keys=1, unknown_rate=0.3, overlap=4)
    if seed % 2:
        synth.plant_stale_read(ops, rng)
    ordered = sorted(ops, key=lambda o: o.call)
    full = linearize.search(ordered).ok
    kept, _ = linearize.reduce_ops(ordered)
    assert linearize.search(kept).ok is full


# --- generated histories from a real sequential execution ------------------------------------

@pytest.mark.parametrize("seed", range(25))
def test_generated_histories_are_linearizable(seed):
    rng = random.Random(seed)
    ops = synth.sequential_history(rng, ops=1500, clients=8, keys=3, unknown_rate=0.02,
                                   overlap=rng.choice([1, 3, 10]), delete_prev=bool(seed % 2))
    res = linearize.check(ops, time_limit=60)
    assert res.linearizable is True, [(k.key, k.stuck) for k in res.violations]
    assert res.ops == 1500 and res.unknown > 0


@pytest.mark.parametrize("seed", range(25))
def test_corrupted_generated_histories_are_caught(seed):
    rng = random.Random(1000 + seed)
    ops = synth.sequential_history(rng, ops=1500, clients=8, keys=3, unknown_rate=0.02, overlap=3)
    changed = synth.plant_stale_read(ops, rng)
    assert changed is not None
    res = linearize.check(ops, time_limit=60)
    assert res.linearizable is False
    bad = res.violations[0]
    assert bad.key == changed.key
    assert len(bad.failing) < 50
    # the shrunk window alone fails from every starting value
    assert linearize._window_fails(bad.failing, None) is True


def test_time_limit_gives_unknown_never_pass():
    rng = random.Random(5)
    ops = synth.sequential_history(rng, ops=20000, clients=8, keys=1, unknown_rate=0.01, overlap=3)
    res = linearize.check(ops, time_limit=0.0)
    assert res.linearizable is None
    assert res.undecided


def test_history_file_round_trip(tmp_path):
    ops = synth.sequential_history(random.Random(3), ops=200, keys=2, unknown_rate=0.05)
    save_ops(tmp_path / "h.jsonl", ops)
    back = load_ops(tmp_path / "h.jsonl")
    assert back == ops
    assert linearize.check(back).linearizable is True


def test_thirty_thousand_ops_in_seconds():
    rng = random.Random(7)
    ops = synth.sequential_history(rng, ops=30000, clients=8, keys=8, unknown_rate=0.002, overlap=5)
    res = linearize.check(ops, time_limit=120)
    assert res.linearizable is True and res.unknown >= 20
    assert res.elapsed < 30  # generous on a loaded 2-core machine; measured well under a second


@pytest.mark.parametrize("seed", range(4))
def test_violation_deep_in_a_busy_single_key_history_is_proved_locally(seed):
    # one key, 8 clients, long overlapping ops, many unknowns: the full search would have to
    # exhaust thousands of configurations; the window around where it got stuck proves it
    rng = random.Random(500 + seed)
    ops = synth.sequential_history(rng, ops=8000, clients=8, keys=1, unknown_rate=0.01, overlap=10)
    assert linearize.check(ops, time_limit=60).linearizable is True
    assert synth.plant_stale_read(ops, rng) is not None
    res = linearize.check(ops, time_limit=60)
    assert res.linearizable is False
    window = res.violations[0].failing
    assert 0 < len(window) < 500
    assert linearize._window_fails(window, None) is True


def test_window_across_a_busy_cut_makes_running_ops_unknown():
    ops = sorted([put(0, 10, "a"), get(1, 2, None, c=1), get(3, 4, "a", c=2), get(5, 6, "a", c=1)],
                 key=lambda o: o.call)
    w = linearize.window_from(ops, 2)  # cut at t=3: the put runs across it
    assert [o.kind for o in w] == ["put", "get", "get"]
    assert w[0].unknown and w[0].value == "a" and not ops[0].unknown
