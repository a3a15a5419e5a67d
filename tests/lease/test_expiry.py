"""Expiry on the leader only: order, limits, re-reporting, promote/demote, spreading after promote,
checkpoints, and the DeadlineQueue underneath. Time is a ManualClock (conftest)."""
from __future__ import annotations

import random

import pytest

from fastkv.lease.queue import DeadlineQueue
from fastkv.mvcc import PutOp


def test_leases_expire_in_expiry_order(member, clock):
    lessor = member.lessor
    lessor.promote(0.0)
    ttls = {11: 30, 12: 5, 13: 20, 14: 5, 15: 10}
    for lease_id, ttl in ttls.items():
        lessor.grant(lease_id, ttl)
    clock.advance(4.999)
    assert lessor.expired_leases() == []
    clock.advance(0.001)
    assert lessor.expired_leases() == [12, 14]  # equal expiry: id order
    clock.advance(1)
    assert lessor.expired_leases() == []
    lessor.revoke(12)  # the server applied the revokes it proposed
    lessor.revoke(14)
    clock.advance(100)
    assert lessor.expired_leases() == [15, 13, 11]


def test_expired_leases_respects_limit_and_reports_once_until_retry(member, clock):
    lessor = member.lessor
    lessor.promote(0.0)
    for lease_id in range(1, 8):
        lessor.grant(lease_id, 10 + lease_id)
    clock.advance(60)
    assert lessor.expired_leases(limit=3) == [1, 2, 3]
    assert lessor.expired_leases(limit=3) == [4, 5, 6]
    assert lessor.expired_leases(limit=3) == [7]
    assert lessor.expired_leases() == []  # reported, revokes are on their way
    lessor.revoke(1)
    lessor.revoke(2)
    clock.advance(lessor.expired_retry_interval)
    # the revoke proposals for 3..7 were lost (e.g. dropped by raft): report them again
    assert lessor.expired_leases() == [3, 4, 5, 6, 7]


def test_renewed_and_revoked_leases_are_not_reported(member, clock):
    lessor = member.lessor
    lessor.promote(0.0)
    lessor.grant(1, 10)
    lessor.grant(2, 10)
    lessor.grant(3, 10)
    clock.advance(8)
    lessor.renew(1)
    lessor.revoke(2)
    clock.advance(2)
    assert lessor.expired_leases() == [3]
    lessor.revoke(3)
    clock.advance(7.9)
    assert lessor.expired_leases() == []
    clock.advance(0.1)
    assert lessor.expired_leases() == [1]


def test_followers_never_expire(member, clock):
    lessor = member.lessor
    lessor.grant(1, 5)
    clock.advance(1e6)
    assert lessor.expired_leases() == []
    assert lessor.checkpoint_due() == []
    assert lessor.next_deadline() is None


def test_promote_refreshes_every_expiry_with_extend(member, clock):
    lessor = member.lessor
    lessor.promote(0.0)
    lessor.grant(1, 10)
    clock.advance(9)  # almost run out under the old leader...
    lessor.demote()
    assert lessor.expired_leases() == []
    clock.advance(50)
    lessor.promote(1.5)  # ...a new leader gives it a full TTL again, plus the election timeout
    assert lessor.lookup(1).remaining == pytest.approx(11.5)
    clock.advance(11.4)
    assert lessor.expired_leases() == []
    clock.advance(0.1)
    assert lessor.expired_leases() == [1]


def test_demote_stops_reporting_and_renewing(member, clock):
    lessor = member.lessor
    lessor.promote(0.0)
    lessor.grant(1, 5)
    clock.advance(10)
    lessor.demote()
    assert lessor.expired_leases() == []
    assert lessor.lookup(1).remaining == float("inf")
    assert lessor.next_deadline() is None


def test_grant_on_follower_starts_counting_only_after_promote(member, clock):
    lessor = member.lessor
    lessor.grant(1, 5)
    clock.advance(100)
    lessor.promote(0.0)
    assert lessor.expired_leases() == []
    clock.advance(5)
    assert lessor.expired_leases() == [1]


def test_promote_spreads_a_pile_up_of_expiries(open_member, clock):
    # revoke_rate 40: at most 30 expiries fall due per second after promote.
    m = open_member(revoke_rate=40)
    lessor = m.lessor
    for lease_id in range(1, 101):
        lessor.grant(lease_id, 10)
    lessor.grant(500, 60)  # far in the future: untouched
    lessor.promote(0.0)
    expiries = sorted(lease.expiry for lease in lessor.leases() if lease.id != 500)
    assert expiries[0] == pytest.approx(clock() + 10)
    assert expiries[-1] == pytest.approx(clock() + 10 + 99 / 30)
    gaps = [b - a for a, b in zip(expiries, expiries[1:])]
    assert min(gaps) >= 1 / 30 - 1e-9
    assert lessor.lookup(500).expiry == pytest.approx(clock() + 60)
    # Every lease still expires, in the stretched order, and no second has more than 30.
    clock.advance(10)
    per_second = []
    seen = []
    for _ in range(5):
        got = lessor.expired_leases(limit=1000)
        per_second.append(len(got))
        seen += got
        for lease_id in got:
            lessor.revoke(lease_id)
        clock.advance(1)
    assert sorted(seen) == list(range(1, 101))
    assert max(per_second) <= 31  # window edges may catch one extra


def test_small_lease_sets_are_not_spread(member, clock):
    lessor = member.lessor
    for lease_id in range(1, 11):
        lessor.grant(lease_id, 10)
    lessor.promote(0.0)
    assert {lease.expiry for lease in lessor.leases()} == {clock() + 10}


def test_next_deadline_tells_the_server_when_to_look(open_member, clock):
    m = open_member(checkpoint_interval=60)
    lessor = m.lessor
    lessor.promote(0.0)
    assert lessor.next_deadline() is None
    lessor.grant(1, 100)
    assert lessor.next_deadline() == clock() + 60  # a checkpoint comes before the expiry
    lessor.grant(2, 30)
    assert lessor.next_deadline() == clock() + 30
    lessor.revoke(2)
    assert lessor.next_deadline() == clock() + 60


# --- checkpoints ----------------------------------------------------------------------------------
def test_checkpoints_report_remaining_ttl_of_long_leases(open_member, clock):
    m = open_member(checkpoint_interval=60)
    lessor = m.lessor
    lessor.promote(0.0)
    lessor.grant(1, 300)
    lessor.grant(2, 60)  # not longer than the interval: never checkpointed
    clock.advance(59.5)
    assert lessor.checkpoint_due() == []
    clock.advance(0.75)  # 60.25 s in: 239.75 s left, reported rounded up as etcd does
    assert lessor.checkpoint_due() == [(1, 240)]
    assert lessor.checkpoint_due() == []
    lessor.apply_checkpoint(1, 240)
    assert lessor.lookup(1).remaining_ttl == 240
    clock.advance(60)
    assert lessor.checkpoint_due() == [(1, 180)]


def test_renew_clears_a_checkpointed_remainder(open_member, clock):
    m = open_member(checkpoint_interval=60)
    lessor = m.lessor
    lessor.promote(0.0)
    lessor.grant(1, 300)
    clock.advance(60)
    assert lessor.checkpoint_due() == [(1, 240)]
    lessor.apply_checkpoint(1, 240)
    lessor.renew(1)
    assert lessor.next_deadline() == clock()
    assert lessor.checkpoint_due() == [(1, 0)]
    lessor.apply_checkpoint(1, 0)
    assert lessor.lookup(1).remaining_ttl == 0
    lessor.renew(1)  # nothing to clear any more
    assert lessor.checkpoint_due() == []


def test_promote_resumes_from_checkpointed_remainder(open_member, clock):
    m = open_member(checkpoint_interval=60)
    lessor = m.lessor
    lessor.grant(1, 300)
    lessor.apply_checkpoint(1, 100)  # applied on this follower from the old leader's proposal
    lessor.apply_checkpoint(42, 5)  # unknown (already revoked): ignored
    assert lessor.lookup(42) is None
    lessor.promote(2.0)
    assert lessor.lookup(1).remaining == pytest.approx(102.0)
    assert lessor.time_to_live(1) == (300, 102, [])


def test_checkpointing_can_be_turned_off(open_member, clock):
    m = open_member(checkpoint_interval=0)
    m.lessor.promote(0.0)
    m.lessor.grant(1, 10_000)
    clock.advance(5000)
    assert m.lessor.checkpoint_due() == []


def test_expiry_then_revoke_deletes_the_keys(member, clock):
    # The whole loop the server runs: leader notices expiry, "proposes", applies the revoke.
    lessor, kv = member.lessor, member.kv
    lessor.promote(0.0)
    lessor.grant(1, 5)
    kv.put(PutOp(b"lock/owner", b"me", lease=1))
    clock.advance(5)
    for lease_id in lessor.expired_leases():
        lessor.revoke(lease_id)
    assert member.get(b"lock/owner") is None
    assert lessor.leases() == []


# --- DeadlineQueue --------------------------------------------------------------------------------
def test_deadline_queue_matches_a_plain_model():
    rng = random.Random(5)
    q = DeadlineQueue()
    model: dict = {}
    now = 0.0
    for _ in range(5000):
        r = rng.random()
        lease_id = rng.randrange(50)
        if r < 0.55:
            d = now + rng.choice([0.0, 1.0, 2.5, rng.random() * 10])
            q.set(lease_id, d)
            model[lease_id] = d
        elif r < 0.7:
            q.discard(lease_id)
            model.pop(lease_id, None)
        else:
            now += rng.random() * 3
            limit = rng.choice([0, 1, 3])
            want = sorted((d, i) for i, d in model.items() if d <= now)
            if limit:
                want = want[:limit]
            assert q.pop_due(now, limit) == want
            for _d, i in want:
                del model[i]
        assert len(q) == len(model)
        top = q.peek()
        assert top == (min((d, i) for i, d in model.items()) if model else None)
        assert len(q._heap) <= 2 * len(model) + 65  # stale entries are bounded
