"""Recorded operations and their JSON-lines files.

An operation is one client request against one key. `call` and `ret` are monotonic-clock seconds
taken just before the request was sent and just after its answer arrived. An operation whose
outcome is unknown (a write that timed out or failed in flight) has `ret = None`: it may have
taken effect at any point after `call`, or never.

Kinds and their fields (values are text; None means "the key is absent"):
  get     out: value read
  put     in: value
  delete  out: deleted (0/1); prev: value it deleted, when the request asked for prev_kv
  cas     in: expected (None = key must be absent), value; out: succeeded, and on failure `read`,
          the value the failure branch read
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

GET, PUT, DELETE, CAS = "get", "put", "delete", "cas"
KINDS = (GET, PUT, DELETE, CAS)
WRITES = (PUT, DELETE, CAS)

# Marks a field that the request did not ask for (distinct from None, "absent key").
NOT_RECORDED = "<not recorded>"


@dataclass
class Op:
    kind: str
    key: str
    call: float
    ret: float | None  # None: outcome unknown
    client: int = 0
    value: str | None = None      # put/cas: value written
    expected: str | None = None   # cas: value compared against (None = absent)
    out: Any = None               # get: value; delete: deleted count; cas: succeeded
    read: str | None = None       # cas failure branch: value read
    prev: Any = NOT_RECORDED      # delete: value deleted (prev_kv), when asked
    revision: int = 0             # header revision of the answer (0 when unknown)
    error: str = ""               # why the outcome is unknown
    id: int = field(default=-1, compare=False)

    @property
    def unknown(self) -> bool:
        return self.ret is None

    def to_json(self) -> dict:
        d = asdict(self)
        if d["prev"] == NOT_RECORDED:
            del d["prev"]
        return {k: v for k, v in d.items() if v not in ("",) and not (k == "id" and v < 0)}

    @classmethod
    def from_json(cls, d: dict) -> "Op":
        return cls(**d)

    def describe(self) -> str:
        if self.kind == GET:
            body = f"get {self.key} -> {self.out!r}" if not self.unknown else f"get {self.key} -> ?"
        elif self.kind == PUT:
            body = f"put {self.key}={self.value!r}"
        elif self.kind == DELETE:
            body = f"delete {self.key}"
            if not self.unknown:
                body += f" -> deleted {self.out}" + ("" if self.prev == NOT_RECORDED else f" prev {self.prev!r}")
        else:
            body = f"cas {self.key} {self.expected!r}->{self.value!r}"
            if not self.unknown:
                body += " -> ok" if self.out else f" -> failed, read {self.read!r}"
        end = "?" if self.unknown else f"{self.ret:.6f}"
        return f"[client {self.client} {self.call:.6f}..{end}] {body}" + (" (unknown)" if self.unknown else "")


def save_jsonl(path, records: Iterable[dict]) -> None:
    with open(path, "w") as f:
        for rec in records:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")


def load_jsonl(path) -> Iterator[dict]:
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                yield json.loads(line)


def save_ops(path, ops: Iterable[Op]) -> None:
    save_jsonl(path, ({"type": "op", **op.to_json()} for op in ops))


def load_ops(path) -> list[Op]:
    ops = []
    for rec in load_jsonl(path):
        if rec.pop("type", "op") == "op":
            ops.append(Op.from_json(rec))
    return ops
