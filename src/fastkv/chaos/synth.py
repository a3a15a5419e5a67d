"""Synthetic histories: a real sequential execution of a register per key, stretched into
overlapping intervals, and deliberate corruptions of recorded histories.

Used by the checker's tests, its speed benchmark, and `fastkv chaos --corrupt-history` (which
proves on every run that the checker catches a planted stale read).
"""
from __future__ import annotations

import random

from fastkv.chaos.history import CAS, DELETE, GET, NOT_RECORDED, PUT, Op


def sequential_history(rng: random.Random, *, ops: int = 1000, clients: int = 8, keys: int = 4,
                       unknown_rate: float = 0.0, overlap: float = 3.0, delete_prev: bool = True) -> list[Op]:
    """Execute `ops` random operations one after another against a dict; each op's linearization
    point is its position; its call and return are stretched around it by up to `overlap` steps,
    keeping each client's ops sequential. A fraction `unknown_rate` of writes lose their answer
    (ret=None); half of those really took effect, half never happened."""
    state: dict[str, str | None] = {}
    client_free = [0.0] * clients
    out: list[Op] = []
    t = 0.0
    serial = 0
    for n in range(ops):
        t += 1.0
        # pick a client that is free (its previous op returned) before this linearization point
        free = [c for c in range(clients) if client_free[c] < t]
        if not free:
            t = min(client_free) + 0.5
            free = [c for c in range(clients) if client_free[c] < t]
        c = rng.choice(free)
        call = max(client_free[c], t - rng.uniform(0, overlap)) + 1e-3
        call = min(call, t - 1e-3)
        ret = t + rng.uniform(0.001, overlap)
        key = f"k{rng.randrange(keys)}"
        cur = state.get(key)
        r = rng.random()
        serial += 1
        value = f"v{serial}"
        if r < 0.35:
            op = Op(GET, key, call, ret, c, out=cur)
        elif r < 0.65:
            op = Op(PUT, key, call, ret, c, value=value)
            state[key] = value
        elif r < 0.75:
            op = Op(DELETE, key, call, ret, c, out=0 if cur is None else 1,
                    prev=cur if delete_prev else NOT_RECORDED)
            state[key] = None
        else:
            # compare against the current value most of the time, a stale one otherwise
            expected = cur if rng.random() < 0.6 else rng.choice([None, f"v{rng.randrange(1, serial + 1)}"])
            ok = expected == cur
            op = Op(CAS, key, call, ret, c, value=value, expected=expected, out=ok,
                    read=None if ok else cur)
            if ok:
                state[key] = value
        if op.kind != GET and rng.random() < unknown_rate:
            if rng.random() < 0.5:
                # it never happened: undo its effect
                state[key] = cur
            op.ret, op.out, op.read = None, None, None
            if op.kind == DELETE:
                op.prev = NOT_RECORDED
            op.error = "synthetic: answer lost"
            client_free[c] = t + overlap + 1  # a client that lost an answer moves on later
        else:
            client_free[c] = ret
        op.id = n
        out.append(op)
    return out


def plant_stale_read(ops: list[Op], rng: random.Random) -> Op | None:
    """Turn one completed get into a read of a value that was certainly overwritten before the get
    was called: a put P1 of X, then a put P2 that was called after P1 returned and returned
    before the get was called. No linearization can let the get see X. Returns the changed op,
    or None when the history has no such triple."""
    by_key: dict[str, list[Op]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    candidates = []
    for key, kops in by_key.items():
        writes = [o for o in kops if not o.unknown and (o.kind == PUT or (o.kind == CAS and o.out))]
        gets = [o for o in kops if o.kind == GET and not o.unknown]
        writes.sort(key=lambda o: o.ret)
        for g in gets:
            # P2: a completed write returned before g's call; P1: a completed write returned before P2's call
            before = [w for w in writes if w.ret < g.call]
            if len(before) < 2:
                continue
            p2 = before[-1]
            older = [w for w in before if w.ret < p2.call and w.value != g.out]
            if older:
                candidates.append((g, older[-1]))
    if not candidates:
        return None
    g, p1 = rng.choice(candidates)
    g.out = p1.value
    return g
