"""Request ids carry the member id (etcd's idutil layout), so two members never collide."""
from fastkv.server.wait import RequestIDs


def test_ids_of_two_members_never_collide_and_carry_the_member_id():
    a, b = RequestIDs(0x1234_5678_9ABC_0001, 1_700_000_000_000), RequestIDs(0x0002, 1_700_000_000_000)
    ids_a = [a.next() for _ in range(10_000)]
    ids_b = [b.next() for _ in range(10_000)]
    assert len(set(ids_a)) == 10_000 and not set(ids_a) & set(ids_b)
    assert {i >> 48 for i in ids_a} == {0x0001} and {i >> 48 for i in ids_b} == {0x0002}
    assert ids_a == sorted(ids_a)


def test_a_restart_later_starts_above_the_ids_of_the_earlier_run():
    first = RequestIDs(7, 1_000_000)
    earlier = [first.next() for _ in range(200)]  # under 256 per ms, as in any real run
    later = RequestIDs(7, 1_000_001)
    assert later.next() > max(earlier)
