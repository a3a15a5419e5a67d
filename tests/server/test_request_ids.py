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


def test_wait_times_out_pending_requests_in_order_with_one_timer():
    """The registry's request timeout: each request fails with expired() once its own timeout has
    passed, the triggered ones are untouched, and one timer does the sweeping."""
    import asyncio

    from fastkv.server.wait import Wait

    async def run():
        loop = asyncio.get_running_loop()
        w = Wait(1, 1_000, timeout=0.2, expired=lambda: TimeoutError("expired"))
        t0 = loop.time()
        first = [w.register(i) for i in (1, 2, 3)]
        await asyncio.sleep(0.1)
        later = [w.register(i) for i in (4, 5)]
        w.trigger(2, "answered")
        w.trigger(5, "answered")
        outcomes = {}

        async def watch(i, fut):
            try:
                outcomes[i] = (await fut, loop.time() - t0)
            except TimeoutError:
                outcomes[i] = ("timed out", loop.time() - t0)

        await asyncio.gather(*(watch(i, f) for i, f in zip((1, 2, 3, 4, 5), first + later)))
        assert len(w) == 0 and w._timer is None
        return outcomes

    out = asyncio.run(run())
    assert {i: o for i, (o, _t) in out.items()} == {1: "timed out", 2: "answered", 3: "timed out",
                                                      4: "timed out", 5: "answered"}
    assert 0.19 <= out[1][1] < 0.28 and 0.19 <= out[3][1] < 0.28  # at their own deadline
    assert 0.29 <= out[4][1] < 0.4  # registered 0.1 s later, so expired 0.1 s later
