"""Leases: etcd's lessor (see lessor.py for the contract between applied and leader-local calls).

How the server wires it (one backend shared with the KV store):

    lessor = Lessor(backend, min_ttl=math.ceil(1.5 * election_timeout_s), clock=time.monotonic)
    kv = KVStore(backend, lessor=lessor)
    lessor.set_range_deleter(delete_keys)   # one KV write txn deleting every key: one revision
    lessor.recover(kv.restored_leases.items())   # (key, lease) of the live leased keys, from the open
    # raft apply, every member:  grant / revoke / apply_checkpoint (LeaseGrant, LeaseRevoke,
    #                             LeaseCheckpoint entries), with the entry's consistent index set
    # leadership changes:         promote(election_timeout_s) / demote()
    # leader loop (every ~500 ms, or sleep until next_deadline()):
    #     for id in expired_leases(): propose LeaseRevoke(id)
    #     if (cps := checkpoint_due()): propose LeaseCheckpoint(cps)
    # LeaseKeepAlive on the leader:  renew(id) -> TTL (ErrLeaseNotFound -> respond TTL 0)
    # LeaseTimeToLive:               time_to_live(id, keys) (ErrLeaseNotFound -> respond TTL -1)
    # after KVStore.reload() (failed commit): lessor.recover(...) again
"""
from fastkv.lease.lease import FOREVER, Lease  # noqa: F401
from fastkv.lease.lessor import (  # noqa: F401
    DEFAULT_EXPIRED_LIMIT, DEFAULT_REVOKE_RATE, MAX_CHECKPOINT_BATCH, MAX_LEASE_TTL, NO_LEASE, ErrNotPrimary, Lessor,
)
