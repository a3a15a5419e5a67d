"""Named failpoints at the WAL's durability boundaries, for crash tests (etcd's gofail habit).

Off unless the environment sets FASTKV_WAL_FAILPOINTS (or a test calls enable()), so the hot path
pays one module-global bool check. Syntax: "name=action[@N][;name=action[@N]...]"; the action
fires on the N-th time the point is reached (default the first):
  kill   SIGKILL this process right there (a crash: no cleanup, no flush of user buffers)
  raise  raise FailpointError

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
"""
from __future__ import annotations

import os
import signal

ENV = "FASTKV_WAL_FAILPOINTS"
ACTIVE = False
_points: dict[str, list] = {}  # name -> [action, hits remaining before it fires]


class FailpointError(RuntimeError):
    pass


def enable(name: str, action: str = "raise", nth: int = 1) -> None:
    global ACTIVE
    if action not in ("kill", "raise"):
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
    return point[1] == 0


def trigger(name: str) -> None:
    action = _points[name][0]
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise FailpointError(f"failpoint {name} fired")


def hit(name: str) -> None:
    if ACTIVE and fires(name):
        trigger(name)


def _from_env(spec: str) -> None:
    for item in filter(None, (s.strip() for s in spec.split(";"))):
        name, _, action = item.partition("=")
        action, _, nth = action.partition("@")
        enable(name.strip(), action.strip() or "raise", int(nth) if nth else 1)


if os.environ.get(ENV):
    _from_env(os.environ[ENV])
