"""The lessor: etcd's lease manager (grant, revoke, renew, attach, expiry, checkpoints, recovery).

Two kinds of calls, and the split is what keeps replicas identical:

* Applied from the raft log, on every member, in log order: `grant`, `revoke`, `apply_checkpoint`
  (and `attach`/`detach`, which the KV store calls while applying puts and deletes). These change
  replicated state and persist it to the backend's "lease" bucket through the shared batch tx, so
  a lease row commits in the same backend batch as the KV writes (and consistent index) of the
  entry that changed it. They never read the clock to decide anything.
* Leader-local: `renew`, `expired_leases`, `checkpoint_due`, `promote`, `demote`, `time_to_live`.
  Only the leader's clock decides that a lease has run out; the leader then *proposes* a revoke
  (the server's job), so deleting the lease's keys happens through the log on every member.

Expiry: on the leader each lease has `expiry = clock() + TTL`; renew moves it forward. Followers
hold every lease at FOREVER. `promote(extend)` restarts every countdown from its checkpointed
remainder (or full TTL) plus `extend` (etcd passes the election timeout), so a leader change never
mass-expires leases; with many leases it also spreads expiries out so that the new leader does not
have to propose thousands of revokes at once (etcd does the same with its leaseRevokeRate).

Checkpoints (etcd's lease checkpointing): for a lease whose TTL exceeds `checkpoint_interval`, the
leader reports its remaining TTL every interval (`checkpoint_due`); the server proposes it and every
member applies it (`apply_checkpoint`), persisting it. After a restart or leader change the lease
then resumes from that remainder instead of its full TTL. A renew on a checkpointed lease queues a
checkpoint of 0, which clears the remainder again.

Locking: a threading.RLock guards the lessor. Methods that write the backend take the backend tx
lock first and the lessor lock second, the same order as the KV store (which holds the tx lock when
it calls exists/attach/detach), so the two can never deadlock. A lease's key set changes only
under the backend tx lock.
"""
from __future__ import annotations

import logging
import math
import threading
import time

from fastkv.backend import LEASE
from fastkv.errors import EtcdError, ErrLeaseExist, ErrLeaseNotFound, ErrLeaseTTLTooLarge
from fastkv.lease.lease import FOREVER, Lease, decode_lease_row, encode_lease_row, lease_key, parse_lease_key
from fastkv.lease.queue import DeadlineQueue

log = logging.getLogger(__name__)

MAX_LEASE_TTL = 9_000_000_000  # seconds; etcd's MaxLeaseTTL
NO_LEASE = 0
DEFAULT_REVOKE_RATE = 1000  # leases per second a leader aims to revoke at most (etcd's leaseRevokeRate)
DEFAULT_EXPIRED_LIMIT = DEFAULT_REVOKE_RATE // 2  # per check; etcd checks every 500 ms
DEFAULT_EXPIRED_RETRY_INTERVAL = 3.0  # seconds before a reported expiry is reported again
MAX_CHECKPOINT_BATCH = 1000  # etcd's maxLeaseCheckpointBatchSize
_RECOVER_CHUNK = 10000


class ErrNotPrimary(EtcdError):
    """Raised by leader-only calls (renew) on a member that is not the leader. The server forwards
    the request to the leader instead of showing this to a client. Text: etcd's lease.ErrNotPrimary."""

    message = "not a primary lessor"
    code = "UNAVAILABLE"


class Lessor:
    def __init__(self, backend, *, min_ttl: int, clock=time.monotonic, checkpoint_interval: float = 300.0,
                 revoke_rate: int = DEFAULT_REVOKE_RATE,
                 expired_retry_interval: float = DEFAULT_EXPIRED_RETRY_INTERVAL):
        """min_ttl: grants below it are raised to it (etcd: ceil(1.5 * election timeout) seconds).
        clock: monotonic seconds; injected so tests decide time. checkpoint_interval <= 0 turns
        checkpointing off. revoke_rate: with at least this many leases, promote spreads expiries to
        at most 3/4 of it per second. The lessor starts as a follower (no expiries) with the
        leases found in the backend; call recover() to attach their keys, promote() when leader."""
        self.backend = backend
        self.min_ttl = min_ttl
        self.clock = clock
        self.checkpoint_interval = checkpoint_interval
        self.revoke_rate = revoke_rate
        self.expired_retry_interval = expired_retry_interval
        self._tx = backend.batch_tx()
        self._mu = threading.RLock()
        self._leases: dict[int, Lease] = {}
        # key -> the lease it is attached to (etcd's itemMap): a put learns the key's old lease here
        # instead of reading the key's previous record from the backend
        self._items: dict[bytes, int] = {}
        self._expiries = DeadlineQueue()
        self._checkpoints = DeadlineQueue()
        self._clear_remaining: dict[int, None] = {}  # ordered set: renewed leases whose remainder must go
        self._primary = False
        self._range_deleter = None
        # Counters for /metrics (etcd_debugging_lease_granted_total, _revoked_total, _renewed_total).
        self.granted_total = 0
        self.revoked_total = 0
        self.renewed_total = 0
        with self._tx as tx, self._mu:
            self._load(tx)

    # --- wiring -----------------------------------------------------------------------------------
    def set_range_deleter(self, fn) -> None:
        """fn(keys: list[bytes]) deletes the keys in ONE write txn (one revision) of the KV store."""
        self._range_deleter = fn

    @property
    def is_primary(self) -> bool:
        return self._primary

    # --- the KV store's protocol (called with the backend tx lock held) -------------------------
    def exists(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def attach(self, lease_id: int, key: bytes) -> None:
        """Attach a key (the KV store checked exists() before changing anything)."""
        lease = self._leases.get(lease_id)
        if lease is None:
            raise ErrLeaseNotFound()
        lease.keys.add(key)
        self._items[key] = lease_id

    def detach(self, lease_id: int, key: bytes) -> None:
        """Detach a key; a lease already gone is not an error (nothing is attached to it)."""
        lease = self._leases.get(lease_id)
        if lease is not None:
            lease.keys.discard(key)
        if self._items.get(key) == lease_id:
            del self._items[key]

    def lease_of(self, key: bytes) -> int:
        """The lease `key` is attached to (NO_LEASE if none)."""
        return self._items.get(key, NO_LEASE)

    # --- applied from the log -------------------------------------------------------------------
    def grant(self, lease_id: int, ttl: int) -> Lease:
        if lease_id == NO_LEASE:
            raise ErrLeaseNotFound()
        if ttl > MAX_LEASE_TTL:
            raise ErrLeaseTTLTooLarge()
        with self._tx as tx, self._mu:
            if lease_id in self._leases:
                raise ErrLeaseExist()
            lease = Lease(lease_id, max(ttl, self.min_ttl), self.clock)
            tx.unsafe_put(LEASE, lease_key(lease_id), encode_lease_row(lease.ttl, 0))
            self._leases[lease_id] = lease
            self.granted_total += 1
            if self._primary:
                now = self.clock()
                self._start_countdown(lease, now, 0.0)
                self._schedule_checkpoint(lease, now)
            return lease

    def revoke(self, lease_id: int) -> None:
        """Delete the lease's keys in one revision (via the range deleter), then forget the lease."""
        with self._tx as tx, self._mu:
            lease = self._leases.get(lease_id)
            if lease is None:
                raise ErrLeaseNotFound()
            keys = sorted(lease.keys)
            if keys and self._range_deleter is None:
                raise RuntimeError("Lessor.revoke: no range deleter set (call set_range_deleter first)")
            row = lease_key(lease_id)
            # The lease row goes first: the deleter's own txn may end in a backend commit (batch
            # limit reached), and that commit must carry both the key deletions and this removal.
            tx.unsafe_delete(LEASE, row)
            if keys:
                try:
                    self._range_deleter(keys)
                except BaseException:
                    tx.unsafe_put(LEASE, row, encode_lease_row(lease.ttl, lease.remaining_ttl))
                    raise
            del self._leases[lease_id]
            for key in keys:  # the deleter detached them; a failed one left nothing behind
                if self._items.get(key) == lease_id:
                    del self._items[key]
            self.revoked_total += 1
            self._expiries.discard(lease_id)
            self._checkpoints.discard(lease_id)
            self._clear_remaining.pop(lease_id, None)

    def apply_checkpoint(self, lease_id: int, remaining_ttl: int) -> None:
        """Record the leader's reading of a lease's remaining TTL (0 clears it). Unknown leases are
        ignored: the lease was revoked after the checkpoint was proposed."""
        with self._tx as tx, self._mu:
            lease = self._leases.get(lease_id)
            if lease is None:
                return
            lease.remaining_ttl = remaining_ttl
            tx.unsafe_put(LEASE, lease_key(lease_id), encode_lease_row(lease.ttl, remaining_ttl))

    # --- reads --------------------------------------------------------------------------------------
    def lookup(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def leases(self) -> list[Lease]:
        with self._mu:
            return sorted(self._leases.values(), key=lambda lease: lease.id)

    def time_to_live(self, lease_id: int, keys: bool = False) -> tuple[int, int, list]:
        """(granted TTL, remaining seconds, sorted attached keys if asked). Remaining is truncated to
        whole seconds like etcd's and never negative; a member that is not the leader reports the
        checkpointed remainder or the granted TTL (the server asks the leader instead)."""
        with self._mu:
            lease = self._leases.get(lease_id)
            if lease is None:
                raise ErrLeaseNotFound()
            if lease.expiry == FOREVER:
                remaining = lease.restart_ttl()
            else:
                remaining = max(0, int(lease.expiry - self.clock()))
            return lease.ttl, remaining, (sorted(lease.keys) if keys else [])

    # --- leader-local -----------------------------------------------------------------------------
    def renew(self, lease_id: int) -> int:
        """Keep-alive: restart the lease's countdown from its granted TTL; returns that TTL.
        A lease that has already run out cannot be renewed (ErrLeaseNotFound, as a client sees for a
        lease that expired): its revoke is proposed or about to be."""
        with self._mu:
            if not self._primary:
                raise ErrNotPrimary()
            lease = self._leases.get(lease_id)
            if lease is None:
                raise ErrLeaseNotFound()
            now = self.clock()
            if lease.expiry <= now:
                raise ErrLeaseNotFound()
            lease.expiry = now + lease.ttl
            self._expiries.set(lease_id, lease.expiry)
            if lease.remaining_ttl > 0:
                self._clear_remaining[lease_id] = None
            self.renewed_total += 1
            return lease.ttl

    def promote(self, extend: float) -> None:
        """This member became leader: restart every countdown (+extend), spread pile-ups."""
        with self._mu:
            self._primary = True
            now = self.clock()
            self._expiries.clear()
            self._checkpoints.clear()
            leases = list(self._leases.values())
            for lease in leases:
                lease.expiry = now + extend + lease.restart_ttl()
            if len(leases) >= self.revoke_rate:
                self._spread_expiries(leases)
            for lease in leases:
                self._expiries.set(lease.id, lease.expiry)
                self._schedule_checkpoint(lease, now)

    def demote(self) -> None:
        """Lost leadership: leases stop running out here; nothing is reported any more."""
        with self._mu:
            self._primary = False
            for lease in self._leases.values():
                lease.expiry = FOREVER
            self._expiries.clear()
            self._checkpoints.clear()
            self._clear_remaining.clear()

    def expired_leases(self, limit: int = DEFAULT_EXPIRED_LIMIT) -> list[int]:
        """Ids of leases that have run out, earliest first, at most `limit`. The server proposes a
        revoke for each. A reported lease is reported again only if it still exists after
        `expired_retry_interval` (its revoke proposal was lost). Empty on a non-leader."""
        with self._mu:
            if not self._primary:
                return []
            now = self.clock()
            out = []
            for _deadline, lease_id in self._expiries.pop_due(now, limit):
                lease = self._leases[lease_id]
                if lease.expiry > now:  # cannot happen (renew replaces the entry); stay safe
                    self._expiries.set(lease_id, lease.expiry)
                    continue
                out.append(lease_id)
                self._expiries.set(lease_id, now + self.expired_retry_interval)
            return out

    def checkpoint_due(self, limit: int = MAX_CHECKPOINT_BATCH) -> list[tuple[int, int]]:
        """[(lease_id, remaining_ttl)] for the server to propose as one LeaseCheckpoint request.
        Includes (id, 0) for checkpointed leases renewed since. Empty on a non-leader."""
        with self._mu:
            if not self._primary:
                return []
            out = []
            while self._clear_remaining and len(out) < limit:
                lease_id = next(iter(self._clear_remaining))
                del self._clear_remaining[lease_id]
                out.append((lease_id, 0))
            if len(out) >= limit:
                return out
            now = self.clock()
            for _deadline, lease_id in self._checkpoints.pop_due(now, limit - len(out)):
                lease = self._leases[lease_id]
                remaining = math.ceil(lease.expiry - now)
                if remaining <= 0:
                    continue  # run out: the revoke takes care of it
                self._schedule_checkpoint(lease, now)
                if remaining < lease.ttl:
                    out.append((lease_id, remaining))
            return out

    def next_deadline(self) -> float | None:
        """Clock reading at which expired_leases or checkpoint_due next has something (now if
        already), or None (not the leader, or nothing scheduled). Lets the server sleep exactly."""
        with self._mu:
            if not self._primary:
                return None
            if self._clear_remaining:
                return self.clock()
            times = [e[0] for e in (self._expiries.peek(), self._checkpoints.peek()) if e is not None]
            return min(times) if times else None

    # --- startup ----------------------------------------------------------------------------------
    def recover(self, kvs_with_leases) -> None:
        """Rebuild from the backend's lease bucket, then attach keys: kvs_with_leases is an iterable
        of (key, lease_id) over the live keys of the KV store. A key whose lease is missing is
        logged and skipped (etcd does the same)."""
        with self._tx as tx, self._mu:
            self._load(tx)
            orphans = 0
            for key, lease_id in kvs_with_leases:
                if lease_id == NO_LEASE:
                    continue
                lease = self._leases.get(lease_id)
                if lease is None:
                    orphans += 1
                    continue
                lease.keys.add(key)
                self._items[key] = lease_id
            if orphans:
                log.warning("lessor recover: %d keys name a lease that does not exist; left unattached", orphans)

    def _load(self, tx) -> None:
        self._leases.clear()
        self._items.clear()
        self._expiries.clear()
        self._checkpoints.clear()
        self._clear_remaining.clear()
        start = b""
        while True:
            rows = tx.unsafe_range(LEASE, start, b"", limit=_RECOVER_CHUNK)
            for k, v in rows:
                lease_id = parse_lease_key(k)
                ttl, remaining_ttl = decode_lease_row(v)
                self._leases[lease_id] = Lease(lease_id, max(ttl, self.min_ttl), self.clock, remaining_ttl)
            if len(rows) < _RECOVER_CHUNK:
                break
            start = rows[-1][0] + b"\x00"
        if self._primary:
            now = self.clock()
            for lease in self._leases.values():
                self._start_countdown(lease, now, 0.0)
                self._schedule_checkpoint(lease, now)

    # --- helpers (lessor lock held) -------------------------------------------------------------
    def _start_countdown(self, lease: Lease, now: float, extend: float) -> None:
        lease.expiry = now + extend + lease.restart_ttl()
        self._expiries.set(lease.id, lease.expiry)

    def _schedule_checkpoint(self, lease: Lease, now: float) -> None:
        if self.checkpoint_interval > 0 and lease.ttl > self.checkpoint_interval:
            self._checkpoints.set(lease.id, now + self.checkpoint_interval)

    def _spread_expiries(self, leases: list) -> None:
        """Keep consecutive expiries at least 1/(3/4 revoke_rate) seconds apart, in expiry order.
        Leases that already run out at a lower rate are untouched; a pile-up (e.g. every lease
        restarted with the same TTL by promote) is stretched so at most 3/4 of the revoke rate
        falls due per second, leaving room for leases that run out naturally meanwhile."""
        gap = 1.0 / max(1.0, 0.75 * self.revoke_rate)
        leases.sort(key=lambda lease: (lease.expiry, lease.id))
        prev = -FOREVER
        for lease in leases:
            if lease.expiry < prev + gap:
                lease.expiry = prev + gap
            prev = lease.expiry
