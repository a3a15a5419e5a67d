"""One lease, and how a lease is stored in the backend's "lease" bucket.

A lease is replicated state (id, granted TTL, the remaining TTL at the last applied checkpoint, the
keys attached to it) plus one piece of leader-local state: `expiry`, a reading of the leader's
clock. Only the replicated part is persisted; `expiry` is recomputed whenever a member becomes
leader (Lessor.promote), which is why a follower's leases never run out on their own.
"""
from __future__ import annotations

import math
import struct

FOREVER = math.inf  # expiry of a lease on a member that is not the leader

# Bucket row: key = lease id as a big-endian int64 (etcd's layout, so rows sort by id for
# non-negative ids); value = granted TTL and remaining TTL at the last checkpoint (0 = none), both
# int64 seconds.
_ID = struct.Struct(">q")
_ROW = struct.Struct(">qq")


def lease_key(lease_id: int) -> bytes:
    return _ID.pack(lease_id)


def parse_lease_key(raw: bytes) -> int:
    return _ID.unpack(raw)[0]


def encode_lease_row(ttl: int, remaining_ttl: int) -> bytes:
    return _ROW.pack(ttl, remaining_ttl)


def decode_lease_row(raw: bytes) -> tuple[int, int]:
    """(ttl, remaining_ttl) from a stored row; raises ValueError on a row of the wrong size."""
    if len(raw) != _ROW.size:
        raise ValueError(f"lease row has {len(raw)} bytes, expected {_ROW.size}")
    return _ROW.unpack(raw)


class Lease:
    """A lease as the lessor keeps it. Read it; only the Lessor changes it.

    id           the lease id (int64, never 0)
    ttl          granted TTL in seconds (after raising to the lessor's minimum)
    remaining_ttl  remaining TTL in seconds recorded by the last applied checkpoint; 0 = none.
                 A new leader starts the lease from this instead of the full TTL.
    expiry       the leader's clock reading at which the lease runs out; FOREVER on non-leaders
    keys         the keys attached to the lease (set of bytes)
    """

    __slots__ = ("id", "ttl", "remaining_ttl", "expiry", "keys", "_clock")

    def __init__(self, lease_id: int, ttl: int, clock, remaining_ttl: int = 0):
        self.id = lease_id
        self.ttl = ttl
        self.remaining_ttl = remaining_ttl
        self.expiry = FOREVER
        self.keys: set = set()
        self._clock = clock

    @property
    def remaining(self) -> float:
        """Seconds until the lease runs out by the leader's clock (negative once past; inf on a
        member that is not the leader, where leases never run out)."""
        if self.expiry == FOREVER:
            return FOREVER
        return self.expiry - self._clock()

    def restart_ttl(self) -> int:
        """The TTL a fresh countdown starts from: the checkpointed remainder if any, else the grant."""
        return self.remaining_ttl if self.remaining_ttl > 0 else self.ttl

    def __repr__(self) -> str:
        return (f"Lease(id={self.id}, ttl={self.ttl}, remaining={self.remaining:.3f}, "
                f"remaining_ttl={self.remaining_ttl}, keys={len(self.keys)})")
