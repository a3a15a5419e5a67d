"""The leader's per-request lease work must not grow with the number of leases: a keep-alive
(renew) and the periodic expiry check are heap operations, not scans. Measured as a ratio of the
per-call cost at 20k leases to the cost at 200 leases in the same run (wide margin: the machine is
shared and noisy; an O(n) scan would make the ratio ~100)."""
from __future__ import annotations

import time

from fastkv.backend import open_backend
from fastkv.lease import Lessor


def _per_call(fn, args, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for a in args:
            fn(a)
        best = min(best, (time.perf_counter() - t0) / len(args))
    return best


def _leader_with(n: int):
    be = open_backend("memory", batch_interval=0)
    lessor = Lessor(be, min_ttl=2, clock=time.monotonic)
    for lease_id in range(1, n + 1):
        lessor.grant(lease_id, 600)
    lessor.promote(1.0)
    return be, lessor


def test_renew_and_expiry_check_cost_does_not_grow_with_lease_count():
    small_be, small = _leader_with(200)
    big_be, big = _leader_with(20_000)
    try:
        ids = list(range(1, 201)) * 10
        renew_ratio = _per_call(big.renew, ids) / _per_call(small.renew, ids)
        checks = [1000] * 2000
        check_ratio = _per_call(big.expired_leases, checks) / _per_call(small.expired_leases, checks)
        print(f"renew cost ratio 20k/200 leases: {renew_ratio:.2f}; expiry check ratio: {check_ratio:.2f}")
        assert renew_ratio < 5, renew_ratio
        assert check_ratio < 5, check_ratio
        # the stale heap entries left by 10 renews per lease are bounded, not accumulated
        assert len(big._expiries._heap) <= 2 * 20_000 + 65
    finally:
        small_be.close()
        big_be.close()
