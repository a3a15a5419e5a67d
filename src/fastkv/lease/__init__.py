"""Leases: etcd's lessor (see lessor.py for the contract between applied and leader-local calls)."""
from fastkv.lease.lease import FOREVER, Lease  # noqa: F401
from fastkv.lease.lessor import (  # noqa: F401
    DEFAULT_EXPIRED_LIMIT, DEFAULT_REVOKE_RATE, MAX_CHECKPOINT_BATCH, MAX_LEASE_TTL, NO_LEASE, ErrNotPrimary, Lessor,
)
