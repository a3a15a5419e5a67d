"""Watch guarantees, checked against the key-value history of the same run.

A watcher records every event it received (revision, key, type, value) over one logical watch:
when its stream breaks it resumes from its last revision + 1, so a correct server gives the same
sequence as one unbroken stream. For each watcher we check, over the revision window it covered
([start revision, last revision it is known to have caught up to]):
  * ordered:    revisions never go down, and events of one key go strictly up;
  * unique:     no (revision, key) twice;
  * consistent: a put event carries a value some write of that key wrote, at the revision that
                write was acknowledged with (unknown writes may appear, at any revision, or not);
                a delete event matches an acknowledged delete at that revision, or an unknown one;
  * reliable:   every acknowledged write that changed a key in the watcher's range, inside its
                window, appears exactly once (no gaps).
Writes in the history are single-key puts, deletes and compare-and-swaps; delete with deleted=0
and failed CAS change nothing and make no event.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fastkv.chaos.history import CAS, DELETE, PUT, Op

PUT_EVENT, DELETE_EVENT = "put", "delete"


@dataclass
class WatchRecord:
    watcher: int
    prefix: str                  # the watcher covers every key starting with this
    start_revision: int
    events: list[tuple[int, str, str, str | None]] = field(default_factory=list)  # (rev, key, type, value)
    caught_up_to: int = 0        # every event up to this revision was delivered (0: unknown)
    resumes: int = 0             # how often the stream broke and was resumed
    endpoint: str = ""

    def to_json(self) -> dict:
        return {"watcher": self.watcher, "prefix": self.prefix, "start_revision": self.start_revision,
                "events": [list(e) for e in self.events], "caught_up_to": self.caught_up_to,
                "resumes": self.resumes, "endpoint": self.endpoint}

    @classmethod
    def from_json(cls, d: dict) -> "WatchRecord":
        d = dict(d)
        d["events"] = [tuple(e) for e in d.get("events", [])]
        return cls(**d)


@dataclass
class WatchIssue:
    watcher: int
    kind: str  # out-of-order | duplicate | phantom | wrong-revision | missed | not-caught-up
    detail: str


@dataclass
class WatchResult:
    ok: bool
    watchers: int
    events: int
    issues: list[WatchIssue]
    acknowledged_checked: int


def _effective_writes(ops: list[Op]):
    """Acknowledged writes that changed something: (revision, key, type, value, op)."""
    acked = []
    for op in ops:
        if op.unknown:
            continue
        if op.kind == PUT or (op.kind == CAS and op.out):
            acked.append((op.revision, op.key, PUT_EVENT, op.value, op))
        elif op.kind == DELETE and op.out:
            acked.append((op.revision, op.key, DELETE_EVENT, None, op))
    return acked


def check_watches(ops: list[Op], watches: list[WatchRecord], final_revision: int | None = None,
                  max_issues: int = 50) -> WatchResult:
    """final_revision: when given, every watcher must have caught up to it (the cluster healed)."""
    acked = _effective_writes(ops)
    by_value = {}  # put value -> (revision or None if unknown, key)
    unknown_delete_keys = set()
    for op in ops:
        if op.kind in (PUT, CAS) and op.value is not None:
            acknowledged = not op.unknown and (op.kind == PUT or op.out)
            by_value[op.value] = (op.revision if acknowledged else None, op.key, op)
        if op.kind == DELETE and op.unknown:
            unknown_delete_keys.add(op.key)
    acked_deletes = {(rev, key) for rev, key, typ, _, _ in acked if typ == DELETE_EVENT}
    issues: list[WatchIssue] = []
    total_events = 0
    checked = 0

    def report(w, kind, detail):
        if len(issues) < max_issues:
            issues.append(WatchIssue(w.watcher, kind, detail))

    for w in watches:
        total_events += len(w.events)
        seen = {}
        last_rev = 0
        last_rev_of_key: dict[str, int] = {}
        for rev, key, typ, value in w.events:
            if rev < last_rev:
                report(w, "out-of-order", f"revision {rev} ({key}) after {last_rev}")
            last_rev = max(last_rev, rev)
            if last_rev_of_key.get(key, 0) >= rev and (rev, key) not in seen:
                report(w, "out-of-order", f"key {key}: revision {rev} after {last_rev_of_key[key]}")
            last_rev_of_key[key] = max(rev, last_rev_of_key.get(key, 0))
            if (rev, key) in seen:
                report(w, "duplicate", f"{typ} {key} at revision {rev} delivered twice")
                continue
            seen[(rev, key)] = (typ, value)
            if rev < w.start_revision:
                report(w, "out-of-order", f"revision {rev} is before the watch's start {w.start_revision}")
            if typ == PUT_EVENT:
                hit = by_value.get(value)
                if hit is None or hit[1] != key:
                    report(w, "phantom", f"put {key}={value!r} at revision {rev}: no client wrote it")
                elif hit[0] is not None and hit[0] != rev:
                    report(w, "wrong-revision", f"put {key}={value!r} seen at revision {rev}, "
                                                f"acknowledged at {hit[0]}")
            else:
                if (rev, key) not in acked_deletes and key not in unknown_delete_keys:
                    report(w, "phantom", f"delete {key} at revision {rev}: no delete was acknowledged there")
        window_end = w.caught_up_to or last_rev
        if final_revision is not None and window_end < final_revision:
            report(w, "not-caught-up", f"delivered up to revision {window_end}, the cluster is at {final_revision}")
        for rev, key, typ, value, op in acked:
            if not key.startswith(w.prefix) or rev < w.start_revision or rev > window_end:
                continue
            checked += 1
            got = seen.get((rev, key))
            if got is None:
                report(w, "missed", f"acknowledged {typ} {key}" + (f"={value!r}" if value else "")
                                    + f" at revision {rev} never delivered")
            elif got != (typ, value):
                report(w, "wrong-revision", f"at revision {rev} {key}: saw {got}, acknowledged {(typ, value)}")
    return WatchResult(not issues, len(watches), total_events, issues, checked)
