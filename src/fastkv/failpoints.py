"""Named failpoints at the durability boundaries, for crash and fault tests (etcd's gofail habit).

Off unless the environment sets FASTKV_FAILPOINTS (FASTKV_WAL_FAILPOINTS is read too) or a test
calls enable(), so a hot path pays one module-global bool check (`if failpoints.ACTIVE:`) or one
call to hit(). Syntax: "name=action[@N][;name=action[@N]...]"; the action fires on the N-th time the
point is reached (default the first):
  kill        SIGKILL this process right there (a crash: no cleanup, no flush of user buffers)
  raise       raise FailpointError
  sleep(MS)   pause this thread MS milliseconds, on the N-th pass and every pass after it (a slow
              disk, when put on a write path)

Points:
  wal.save.before_write     before a batch's pwrite
  wal.save.torn_write       write the batch except its middle 512-byte sector, then fire: the torn
                            tail a crash leaves when the disk persisted the other sectors (counts
                            only batches over 1024 bytes: smaller ones cannot tear that way)
  wal.save.before_fsync     after the pwrite, before its fdatasync
  wal.save.after_fsync      after the fdatasync, before save() returns
  wal.cut.before_rename     new segment written and fsynced under its .tmp name
  wal.cut.after_rename      renamed, directory not yet fsynced
  wal.repair.before_truncate  .broken copy made, torn segment not yet truncated
  snap.save.before_rename   snapshot written and fsynced under its .tmp name
  raft.wal_save.before      a Ready's durable write is about to start (its messages may be out)
  raft.wal_save.after       a Ready's entries and hard state are durable, nothing applied after them
  raft.save_snapshot.before a snapshot received from the leader is about to be saved
  raft.apply_snapshot.before  a received snapshot is saved, the state not yet replaced
  raft.apply_snapshot.after   the state was replaced by the received snapshot's
  backend.commit.before     a backend batch is about to be committed
  backend.commit.after      a backend batch is committed (durable), not yet visible as such
  transport.send_snapshot.before / .after  a snapshot is about to go / went to a peer
"""
from __future__ import annotations

import os
import signal
import time

ENV = "FASTKV_FAILPOINTS"
WAL_ENV = "FASTKV_WAL_FAILPOINTS"  # the older name, from when only the WAL had failpoints
ACTIVE = False
_points: dict[str, list] = {}  # name -> [action, hits remaining before it fires]


class FailpointError(RuntimeError):
    pass


def enable(name: str, action: str = "raise", nth: int = 1) -> None:
    global ACTIVE
    if action not in ("kill", "raise") and not _sleep_ms(action):
        raise ValueError(f"unknown failpoint action {action!r}")
    _points[name] = [action, nth]
    ACTIVE = True


def disable_all() -> None:
    global ACTIVE
    _points.clear()
    ACTIVE = False


def fires(name: str) -> bool:
    """Count a pass through `name`; True when this is the pass that must fire."""
    point = _points.get(name)
    if point is None:
        return False
    point[1] -= 1
    return point[1] == 0 or (point[1] < 0 and point[0].startswith("sleep"))


def trigger(name: str) -> None:
    action = _points[name][0]
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    ms = _sleep_ms(action)
    if ms:
        time.sleep(ms / 1000.0)
        return
    raise FailpointError(f"failpoint {name} fired")


def _sleep_ms(action: str) -> float:
    if action.startswith("sleep(") and action.endswith(")"):
        try:
            return max(0.0, float(action[6:-1]))
        except ValueError:
            return 0.0
    return 0.0


def hit(name: str) -> None:
    if ACTIVE and fires(name):
        trigger(name)


def reload(spec: str) -> None:
    """Replace every failpoint with those `spec` names ("" turns them all off). A member started
    with FASTKV_FAILPOINTS_RELOAD set does this on SIGUSR2 with its <data-dir>/failpoints file, so
    a fault injector can slow a member's disk for a while (fastkv chaos's slowdisk fault)."""
    disable_all()
    _from_env(spec)


def _from_env(spec: str) -> None:
    for item in filter(None, (s.strip() for s in spec.split(";"))):
        name, _, action = item.partition("=")
        action, _, nth = action.partition("@")
        enable(name.strip(), action.strip() or "raise", int(nth) if nth else 1)


for _var in (WAL_ENV, ENV):
    if os.environ.get(_var):
        _from_env(os.environ[_var])
