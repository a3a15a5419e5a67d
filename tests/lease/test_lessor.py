"""Lessor semantics with a real KVStore attached: grant, revoke, attach/detach through puts and
deletes, renew, TimeToLive, Leases. Runs over LMDB and memory backends (conftest.backend_kind)."""
from __future__ import annotations

import pytest

from fastkv.errors import ErrLeaseExist, ErrLeaseNotFound, ErrLeaseTTLTooLarge
from fastkv.lease import MAX_LEASE_TTL, ErrNotPrimary
from fastkv.mvcc import DeleteOp, EventType, PutOp, RangeOp, TxnOp


# --- grant ----------------------------------------------------------------------------------------
def test_grant_lookup_and_leases_sorted(member):
    lessor = member.lessor
    for lease_id, ttl in ((30, 10), (7, 60), (12, 5)):
        lease = lessor.grant(lease_id, ttl)
        assert (lease.id, lease.ttl, lease.keys) == (lease_id, ttl, set())
    assert [lease.id for lease in lessor.leases()] == [7, 12, 30]
    assert lessor.lookup(12).ttl == 5
    assert lessor.lookup(99) is None
    assert lessor.exists(7) and not lessor.exists(99)


def test_grant_raises_ttl_to_minimum(member):
    MIN_TTL = member.lessor.min_ttl
    assert MIN_TTL == 2
    assert member.lessor.grant(1, 1).ttl == MIN_TTL
    assert member.lessor.grant(2, 0).ttl == MIN_TTL
    assert member.lessor.grant(3, -5).ttl == MIN_TTL
    assert member.lessor.grant(4, MIN_TTL + 1).ttl == MIN_TTL + 1


def test_grant_errors_leave_state_untouched(member):
    lessor = member.lessor
    lessor.grant(5, 10)
    with pytest.raises(ErrLeaseExist) as e:
        lessor.grant(5, 99)
    assert str(e.value) == "etcdserver: lease already exists" and e.value.code == "FAILED_PRECONDITION"
    assert lessor.lookup(5).ttl == 10
    with pytest.raises(ErrLeaseTTLTooLarge) as e:
        lessor.grant(6, MAX_LEASE_TTL + 1)
    assert str(e.value) == "etcdserver: too large lease TTL" and e.value.code == "OUT_OF_RANGE"
    assert lessor.lookup(6) is None
    assert lessor.grant(6, MAX_LEASE_TTL).ttl == MAX_LEASE_TTL  # the maximum itself is allowed
    with pytest.raises(ErrLeaseNotFound):
        lessor.grant(0, 10)  # id 0 means "no lease"; the server picks an id before proposing
    assert [lease.id for lease in lessor.leases()] == [5, 6]


# --- attach / detach through the KV store ---------------------------------------------------------
def test_put_with_missing_lease_fails_and_changes_nothing(member):
    kv, lessor = member.kv, member.lessor
    kv.put(PutOp(b"k", b"v0"))
    lessor.grant(1, 10)
    rev = kv.current_revision
    with pytest.raises(ErrLeaseNotFound) as e:
        kv.put(PutOp(b"k", b"v1", lease=2))
    assert str(e.value) == "etcdserver: requested lease not found" and e.value.code == "NOT_FOUND"
    with pytest.raises(ErrLeaseNotFound):
        kv.put(PutOp(b"new", b"x", lease=2))
    assert kv.current_revision == rev
    got = member.get(b"k")
    assert (got.value, got.lease) == (b"v0", 0)
    assert member.get(b"new") is None
    assert lessor.lookup(1).keys == set()


def test_txn_with_one_missing_lease_changes_nothing(member):
    kv, lessor = member.kv, member.lessor
    lessor.grant(1, 10)
    rev = kv.current_revision
    with pytest.raises(ErrLeaseNotFound):
        kv.txn(TxnOp(success=[PutOp(b"a", b"1", lease=1), PutOp(b"b", b"2", lease=2)]))
    assert kv.current_revision == rev
    kv.put(PutOp(b"x", b"y"))
    assert [(x.key, x.value) for x in kv.range(RangeOp(b"\x00", b"\x00")).kvs] == [(b"x", b"y")]
    assert lessor.lookup(1).keys == set()


def test_put_attaches_and_moves_between_leases(member):
    kv, lessor = member.kv, member.lessor
    lessor.grant(1, 10)
    lessor.grant(2, 10)
    kv.put(PutOp(b"a", b"1", lease=1))
    kv.put(PutOp(b"b", b"1", lease=1))
    assert lessor.lookup(1).keys == {b"a", b"b"}
    kv.put(PutOp(b"a", b"2", lease=2))  # moves a: 1 -> 2
    assert lessor.lookup(1).keys == {b"b"}
    assert lessor.lookup(2).keys == {b"a"}
    kv.put(PutOp(b"b", b"2"))  # put without a lease detaches
    assert lessor.lookup(1).keys == set()
    assert member.get(b"b").lease == 0
    kv.put(PutOp(b"a", b"3", ignore_lease=True))  # keeps the lease it had
    assert lessor.lookup(2).keys == {b"a"}
    assert member.get(b"a").lease == 2
    # revoking the old lease leaves the moved key alone
    lessor.revoke(1)
    assert member.get(b"a").value == b"3" and member.get(b"b").value == b"2"
    assert (lessor.lease_of(b"a"), lessor.lease_of(b"b")) == (2, 0)
    kv.put_value(b"a", b"4")  # the lean put detaches too
    assert lessor.lookup(2).keys == set() and lessor.lease_of(b"a") == 0
    lessor.revoke(2)
    assert member.get(b"a").value == b"4"


def test_delete_detaches(member):
    kv, lessor = member.kv, member.lessor
    lessor.grant(1, 10)
    for k in (b"p/1", b"p/2", b"q"):
        kv.put(PutOp(k, b"v", lease=1))
    kv.delete_range(DeleteOp(b"p/", b"p0"))
    assert lessor.lookup(1).keys == {b"q"}
    kv.txn(TxnOp(success=[DeleteOp(b"q")]))
    assert lessor.lookup(1).keys == set()
    rev = kv.current_revision
    lessor.revoke(1)  # nothing attached: no write, no revision
    assert kv.current_revision == rev


# --- revoke ---------------------------------------------------------------------------------------
def test_revoke_deletes_attached_keys_in_one_revision(member):
    kv, lessor = member.kv, member.lessor
    lessor.grant(1, 10)
    lessor.grant(2, 10)
    for k in (b"c", b"a", b"b"):
        kv.put(PutOp(k, b"v", lease=1))
    kv.put(PutOp(b"other", b"v", lease=2))
    kv.put(PutOp(b"free", b"v"))
    rev = kv.current_revision
    member.events.clear()
    lessor.revoke(1)
    assert kv.current_revision == rev + 1
    assert len(member.events) == 1  # one write txn
    ev_rev, events = member.events[0]
    assert ev_rev == rev + 1
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == [
        (EventType.DELETE, b"a", rev + 1), (EventType.DELETE, b"b", rev + 1), (EventType.DELETE, b"c", rev + 1)]
    assert [kv_.key for kv_ in kv.range(RangeOp(b"\x00", b"\x00")).kvs] == [b"free", b"other"]
    assert lessor.lookup(1) is None and not lessor.exists(1)
    assert lessor.lookup(2).keys == {b"other"}
    with pytest.raises(ErrLeaseNotFound):
        lessor.revoke(1)
    with pytest.raises(ErrLeaseNotFound):
        kv.put(PutOp(b"a", b"again", lease=1))
    assert kv.current_revision == rev + 1


def test_revoke_of_many_keys_is_one_revision(open_member):
    # etcd deletes a lease's keys in one raw write txn with no op limit; the server's range
    # deleter must not be bound by the client txn limit (128) either.
    m = open_member(max_txn_ops=100_000)
    m.lessor.grant(9, 10)
    keys = [b"k%05d" % i for i in range(1000)]
    m.kv.txn(TxnOp(success=[PutOp(k, b"v", lease=9) for k in keys]))
    rev = m.kv.current_revision
    m.events.clear()
    m.lessor.revoke(9)
    assert m.kv.current_revision == rev + 1
    assert [e.kv.key for e in m.events[0][1]] == keys
    assert m.kv.range(RangeOp(b"\x00", b"\x00", count_only=True)).count == 0


def test_revoke_that_fails_keeps_the_lease(member):
    member.lessor.grant(1, 10)
    member.kv.put(PutOp(b"a", b"v", lease=1))

    def broken(keys):
        raise RuntimeError("deleter failed")

    member.lessor.set_range_deleter(broken)
    with pytest.raises(RuntimeError):
        member.lessor.revoke(1)
    assert member.lessor.lookup(1).keys == {b"a"}
    member.lessor.set_range_deleter(member.delete_keys)
    member.lessor.revoke(1)
    assert member.get(b"a") is None


def test_revoke_without_deleter_refuses_when_keys_are_attached(open_member):
    m = open_member()
    m.lessor.set_range_deleter(None)
    m.lessor.grant(1, 10)
    m.lessor.grant(2, 10)
    m.kv.put(PutOp(b"a", b"v", lease=1))
    with pytest.raises(RuntimeError):
        m.lessor.revoke(1)
    assert m.lessor.exists(1)
    m.lessor.revoke(2)  # nothing attached: nothing to delete
    assert not m.lessor.exists(2)


# --- renew and TimeToLive -------------------------------------------------------------------------
def test_renew_needs_leadership_and_restarts_countdown(member, clock):
    lessor = member.lessor
    lessor.grant(1, 10)
    with pytest.raises(ErrNotPrimary):
        lessor.renew(1)
    lessor.promote(0.0)
    clock.advance(6)
    assert lessor.time_to_live(1) == (10, 4, [])
    assert lessor.renew(1) == 10
    assert lessor.time_to_live(1) == (10, 10, [])
    clock.advance(9.5)
    assert lessor.time_to_live(1)[1] == 0  # truncated like etcd (0.5 s left)
    assert lessor.expired_leases() == []
    with pytest.raises(ErrLeaseNotFound):
        lessor.renew(2)


def test_renew_of_a_lease_that_ran_out_fails(member, clock):
    member.lessor.promote(0.0)
    member.lessor.grant(1, 5)
    clock.advance(5)
    with pytest.raises(ErrLeaseNotFound):
        member.lessor.renew(1)
    assert member.lessor.expired_leases() == [1]


def test_time_to_live_with_keys(member, clock):
    kv, lessor = member.kv, member.lessor
    lessor.promote(0.0)
    lessor.grant(1, 30)
    for k in (b"z", b"m", b"a"):
        kv.put(PutOp(k, b"v", lease=1))
    clock.advance(10.25)
    assert lessor.time_to_live(1, keys=True) == (30, 19, [b"a", b"m", b"z"])
    assert lessor.time_to_live(1) == (30, 19, [])
    assert lessor.lookup(1).remaining == pytest.approx(19.75)
    with pytest.raises(ErrLeaseNotFound):
        lessor.time_to_live(2)
    clock.advance(100)
    assert lessor.time_to_live(1)[1] == 0  # never negative while the revoke is on its way


def test_time_to_live_on_a_follower_reports_granted_ttl(member, clock):
    member.lessor.grant(1, 30)
    clock.advance(1000)
    assert member.lessor.time_to_live(1) == (30, 30, [])
    assert member.lessor.lookup(1).remaining == float("inf")


def test_counters_for_metrics(member, clock):
    lessor = member.lessor
    lessor.grant(1, 10)
    lessor.grant(2, 10)
    lessor.promote(0.0)
    lessor.renew(1)
    lessor.renew(1)
    lessor.revoke(2)
    assert (lessor.granted_total, lessor.revoked_total, lessor.renewed_total) == (2, 1, 2)
