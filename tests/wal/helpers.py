"""Shared helpers for the WAL tests: deterministic entries whose bytes can be checked on recovery."""
from __future__ import annotations

import hashlib

from fastkv._native import load

pb = load("raftpb")


def payload(index: int, term: int = 1) -> bytes:
    """Data of the entry at `index`: its size and bytes both depend on (index, term), so any stray
    or misplaced entry shows up as a mismatch."""
    h = hashlib.blake2b(f"{term}:{index}".encode(), digest_size=16).digest()
    return (h * 8)[: 20 + index % 97]


def entry(index: int, term: int = 1):
    return pb.Entry(term, index, 0, payload(index, term))


def entries(lo: int, hi: int, term: int = 1) -> list:
    """Entries lo..hi inclusive."""
    return [entry(i, term) for i in range(lo, hi + 1)]
