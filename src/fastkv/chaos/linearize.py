"""Linearizability checker for etcd key-value histories.

The search is Wing & Gong's, with Lowe's improvements (as in "Testing for linearizability", 2017):
calls and returns form one time-ordered doubly linked list; the search linearizes a pending call
(lifts it and its return out of the list) whenever the model accepts it, and backtracks when it
meets a return whose call is not linearized yet. A cache of (linearized set, model state) pairs
cuts off every branch that reaches a configuration already explored. Linearizability is local, so
each key is checked on its own (P-compositionality): a few thousand operations per key instead of
the whole history.

Model: a register per key whose state is its value (None = absent). Values written are unique, so
equality of values says which write a read saw.

Unknown outcomes: such an operation has its return at +infinity and an unconstrained answer: it
may be linearized anywhere after its call, and placing it after everything else is the same as
"never happened". Pending forever, unknown writes multiply the configurations the search must
exhaust before it can call a history non-linearizable, so three exact reductions come first:
  * an unknown get is dropped (it has no effect);
  * an unknown put or cas whose written value nobody observed is dropped, when every delete that
    reported deleted=1 also reported the value it deleted (prev_kv). Then any state-reading
    operation after that write would have observed its value, so in any linearization the write
    is overwritten blindly before anyone reads it, and removing it changes no answer;
  * an unknown put or cas whose value a completed op certainly read (a get, a successful cas's
    expected value, a failed cas's read, a delete's prev) happened before that reader returned:
    it gets the earliest such return as its own (and a cas is known to have succeeded).

The search is bounded by a deadline; running out of time gives the verdict None ("unknown"),
which is never counted as a pass.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Iterable

from fastkv.chaos.history import CAS, DELETE, GET, NOT_RECORDED, PUT, Op

_GET, _PUT, _DELETE, _CAS = 0, 1, 2, 3
_CODES = {GET: _GET, PUT: _PUT, DELETE: _DELETE, CAS: _CAS}


class _Other:
    """Initial state of a window: some value that no operation in the window mentions."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<some other value>"


OTHER = _Other()


class Timeout(Exception):
    pass


def _step(state, op):
    """Apply one encoded op to the register. Returns (accepted, new_state)."""
    code, unknown, value, expected, out, read, prev = op
    if code == _GET:
        return out == state, state
    if code == _PUT:
        return True, value
    if code == _DELETE:
        if unknown:
            return True, None
        if out != (0 if state is None else 1):
            return False, state
        if prev is not NOT_RECORDED and prev != state:
            return False, state
        return True, None
    # cas
    matches = state is None if expected is None else (state is not None and state == expected)
    if unknown:
        return True, (value if matches else state)
    if out:
        return matches, value
    return (not matches and (read == state if read is not None else state is None)), state


def _encode(op: Op):
    return (_CODES[op.kind], op.unknown, op.value, op.expected, op.out, op.read,
            op.prev if op.kind == DELETE else NOT_RECORDED)


@dataclass
class SearchOutcome:
    ok: bool | None            # True linearizable, False not, None: ran out of time
    steps: int = 0
    stuck: Op | None = None    # the op whose return the deepest branch could not get past
    deepest: int = 0           # most ops linearized on one branch


def search(ops: list[Op], init=None, deadline: float | None = None, max_steps: int | None = None) -> SearchOutcome:
    """Is this single-key history linearizable from register state `init`? (None: out of time or
    of `max_steps`.)"""
    n = len(ops)
    if n == 0:
        return SearchOutcome(True)
    inf = float("inf")
    events = []
    for i, op in enumerate(ops):
        # calls sort before returns at equal times: concurrent rather than ordered (never a false alarm)
        events.append((op.call, 0, i))
        events.append((inf if op.ret is None else op.ret, 1, i))
    events.sort()
    head, tail = 0, 2 * n + 1
    nxt = [0] * (2 * n + 2)
    prv = [0] * (2 * n + 2)
    node_op = [0] * (2 * n + 2)
    is_call = [False] * (2 * n + 2)
    call_node = [0] * n
    ret_node = [0] * n
    for pos, (_, is_ret, i) in enumerate(events, start=1):
        node_op[pos] = i
        is_call[pos] = not is_ret
        if is_ret:
            ret_node[i] = pos
        else:
            call_node[i] = pos
    for pos in range(2 * n + 2):
        nxt[pos] = pos + 1 if pos < tail else tail
        prv[pos] = pos - 1 if pos > 0 else 0
    enc = [_encode(op) for op in ops]
    # Unknown deletes are interchangeable (no answer, same effect): when one is linearized, any
    # other that was already called could take its place. So only the latest-called visible one
    # is ever tried -- the earlier ones stay available longer -- which removes the 2^k choices
    # among k pending unknown deletes without losing any linearization.
    next_ud = [-1] * n
    uds = sorted((i for i, op in enumerate(ops) if op.unknown and op.kind == DELETE), key=lambda i: ops[i].call)
    for a, b in zip(uds, uds[1:]):
        next_ud[a] = b
    is_ud = [False] * n
    for i in uds:
        is_ud[i] = True

    cache = set()
    stack = []  # (call node, state before, linearized bits before)
    state = init
    bits = 0
    entry = nxt[head]
    steps = 0
    deepest = 0
    stuck = None
    stuck_depth = -1
    while nxt[head] != tail:
        steps += 1
        if (steps & 0xFFF) == 0 and ((deadline is not None and time.monotonic() > deadline)
                                     or (max_steps is not None and steps > max_steps)):
            return SearchOutcome(None, steps, stuck, deepest)
        if is_call[entry]:
            i = node_op[entry]
            if is_ud[i]:
                j = next_ud[i]
                while j != -1 and (bits >> j) & 1:
                    j = next_ud[j]
                if j != -1:
                    later, e = call_node[j], nxt[head]
                    while is_call[e] and e != later:
                        e = nxt[e]
                    if e == later:
                        entry = nxt[entry]
                        continue
            accepted, new_state = _step(state, enc[i])
            if accepted:
                new_bits = bits | (1 << i)
                key = (new_bits, new_state)
                if key not in cache:
                    cache.add(key)
                    stack.append((entry, state, bits))
                    state, bits = new_state, new_bits
                    r = ret_node[i]
                    nxt[prv[entry]] = nxt[entry]
                    prv[nxt[entry]] = prv[entry]
                    nxt[prv[r]] = nxt[r]
                    prv[nxt[r]] = prv[r]
                    if len(stack) > deepest:
                        deepest = len(stack)
                    entry = nxt[head]
                    continue
            entry = nxt[entry]
        else:
            if stuck is None or len(stack) > stuck_depth:
                stuck, stuck_depth = ops[node_op[entry]], len(stack)
            if not stack:
                return SearchOutcome(False, steps, stuck, deepest)
            entry, state, bits = stack.pop()
            i = node_op[entry]
            r = ret_node[i]
            nxt[prv[r]] = r
            prv[nxt[r]] = r
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            entry = nxt[entry]
    return SearchOutcome(True, steps, None, deepest)


def _observed_values(ops: Iterable[Op]) -> set:
    seen = set()
    for op in ops:
        if op.kind == CAS:
            seen.add(op.expected)
            if not op.unknown and not op.out:
                seen.add(op.read)
        elif op.unknown:
            continue
        elif op.kind == GET:
            seen.add(op.out)
        elif op.kind == DELETE and op.prev is not NOT_RECORDED:
            seen.add(op.prev)
    seen.discard(None)
    return seen


def reduce_ops(ops: list[Op]) -> tuple[list[Op], int]:
    """Drop operations that cannot change the verdict (see the module doc). Returns (kept, dropped)."""
    kept = [op for op in ops if not (op.unknown and op.kind == GET)]
    prev_known = all(op.unknown or op.kind != DELETE or op.out == 0 or op.prev is not NOT_RECORDED
                     for op in kept)
    if prev_known:
        seen = _observed_values(kept)
        kept = [op for op in kept
                if not (op.unknown and op.kind in (PUT, CAS) and op.value not in seen)]
    # an unknown write whose value someone certainly read did happen, and before that reader
    # returned: give it that return time (a cas then certainly succeeded)
    first_read: dict = {}
    for op in kept:
        if op.unknown:
            continue
        v = _value_certainly_read(op)
        if v is not None and op.ret < first_read.get(v, float("inf")):
            first_read[v] = op.ret
    if first_read:
        kept = [replace(op, ret=max(first_read[op.value], op.call), out=True if op.kind == CAS else None,
                        error=op.error or "answer lost; bounded by its first reader")
                if op.unknown and op.kind in (PUT, CAS) and op.value in first_read else op
                for op in kept]
    return kept, len(ops) - len(kept)


def _value_certainly_read(op: Op):
    """The value a completed op proves was the register's state at its linearization point."""
    if op.kind == GET:
        return op.out
    if op.kind == CAS:
        return op.expected if op.out else op.read
    if op.kind == DELETE and op.prev is not NOT_RECORDED:
        return op.prev
    return None


@dataclass
class KeyResult:
    key: str
    linearizable: bool | None
    ops: int
    unknown: int
    dropped: int
    steps: int
    elapsed: float
    stuck: Op | None = None
    failing: list[Op] = field(default_factory=list)  # shortest failing sub-history found
    failing_note: str = ""


@dataclass
class CheckResult:
    linearizable: bool | None
    keys: dict[str, KeyResult]
    elapsed: float
    ops: int
    unknown: int

    @property
    def violations(self) -> list[KeyResult]:
        return [k for k in self.keys.values() if k.linearizable is False]

    @property
    def undecided(self) -> list[KeyResult]:
        return [k for k in self.keys.values() if k.linearizable is None]


def check_key(key: str, ops: list[Op], deadline: float | None = None, shrink: bool = True) -> KeyResult:
    """Check one key. The full search proves linearizability; proving the opposite can need it to
    exhaust every configuration up to the violation, which on a long history is slow. So the full
    search first gets a budget of steps; if it runs out, a window around the op it could not get
    past is tried (a window that fails from every initial value is a proof on its own); only then
    does the full search get the rest of the time."""
    t0 = time.monotonic()
    ordered = sorted(ops, key=lambda o: o.call)
    kept, dropped = reduce_ops(ordered)
    # a linearizable history usually goes through in about one step per op; far more means the
    # search is backtracking, typically exhausting configurations in front of a violation
    outcome = search(kept, None, deadline, max_steps=50 * len(kept) + 20000)
    proof = None
    if outcome.ok is None and outcome.stuck is not None:
        proof = local_proof(kept, outcome.stuck, deadline)
        if proof is None:
            outcome = search(kept, None, deadline)
    res = KeyResult(key, False if proof else outcome.ok, len(ops), sum(op.unknown for op in ops), dropped,
                    outcome.steps, 0.0, outcome.stuck)
    if proof:
        res.failing, res.failing_note = proof
    elif outcome.ok is False and shrink:
        proof = local_proof(kept, outcome.stuck, deadline) if outcome.stuck is not None else None
        res.failing, res.failing_note = proof or shortest_failing(kept, deadline)
    res.elapsed = time.monotonic() - t0
    return res


def check(ops: Iterable[Op], time_limit: float | None = 60.0, shrink: bool = True) -> CheckResult:
    """Check a whole history key by key. Verdict: True, False (some key violated) or None (ran out
    of time on some key and no key violated)."""
    t0 = time.monotonic()
    deadline = None if time_limit is None else t0 + time_limit
    by_key: dict[str, list[Op]] = {}
    total = unknown = 0
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
        total += 1
        unknown += op.unknown
    results = {}
    for key in sorted(by_key):
        results[key] = check_key(key, by_key[key], deadline, shrink)
    verdicts = [r.linearizable for r in results.values()]
    if any(v is False for v in verdicts):
        verdict = False
    elif any(v is None for v in verdicts):
        verdict = None
    else:
        verdict = True
    return CheckResult(verdict, results, time.monotonic() - t0, total, unknown)


# ---------------------------------------------------------------------------------------------
# Shrinking: the shortest window of one key's history that cannot be linearized


def _window_fails(window: list[Op], deadline) -> bool | None:
    """True when no initial value makes the window linearizable (so it proves a violation alone)."""
    candidates = [None, OTHER]
    for v in _observed_values(window):
        candidates.append(v)
    for op in window:
        if op.kind == GET and not op.unknown and op.out is not None:
            candidates.append(op.out)
    for init in dict.fromkeys(candidates):
        fails = _fails(window, init, deadline)
        if not fails:
            return fails
    return True


def truncate(ops: list[Op], t: float) -> list[Op]:
    """The history as it stood at time t: ops called by t; those still waiting for their answer at
    t become unknown. If a history is linearizable, so is every truncation of it, which makes
    "fails at t" monotone in t (the shortest failing truncation can be found by bisection)."""
    out = []
    for op in ops:
        if op.call > t:
            continue
        if op.ret is not None and op.ret > t:
            op = replace(op, ret=None, out=None, read=None, prev=NOT_RECORDED, error="answered after the cut")
        out.append(op)
    return out


def _fails(ops: list[Op], init, deadline) -> bool | None:
    kept, _ = reduce_ops(ops)
    out = search(kept, init, deadline)
    return None if out.ok is None else not out.ok


def shortest_failing(ops: list[Op], deadline=None) -> tuple[list[Op], str]:
    """Shrink a failing single-key history (sorted by call) to a short window that fails alone.

    1. The earliest time t at which the truncated history (see `truncate`) is already not
       linearizable: found by bisection over return times.
    2. Then the latest quiescent cut before t (every op completed before it returned before the
       window's first call) such that the window -- the ops called after the cut, plus the unknown
       writes still pending at it -- fails from *every* initial value of the key. Such a window is
       a self-contained proof of the violation.
    """
    ops = sorted(ops, key=lambda o: o.call)
    times = sorted({op.ret for op in ops if op.ret is not None})
    if not times or not _fails(truncate(ops, times[-1]), None, deadline):
        return list(ops), "whole history (no failing truncation found)"
    lo, hi = 0, len(times) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _fails(truncate(ops, times[mid]), None, deadline):
            hi = mid
        else:
            lo = mid + 1
    prefix = truncate(ops, times[hi])
    cuts = _quiescent_cuts(prefix)
    for s in reversed(cuts):
        if deadline is not None and time.monotonic() > deadline:
            break
        pending = [op for op in prefix[:s] if op.unknown and op.kind != GET]
        window = pending + prefix[s:]
        if _window_fails(window, deadline):
            return window, (f"{len(window)} ops from a quiescent point: not linearizable from any "
                            f"initial value of the key")
    return prefix, f"shortest failing truncation from the empty key ({len(prefix)} ops)"


def _quiescent_cuts(prefix: list[Op]) -> list[int]:
    """Indices s (in call order) such that every op completed before s returned before prefix[s]
    was called."""
    cuts = []
    max_ret = float("-inf")
    for s, op in enumerate(prefix):
        if s > 0 and max_ret < op.call:
            cuts.append(s)
        if op.ret is not None:
            max_ret = max(max_ret, op.ret)
    return cuts


def window_from(prefix: list[Op], s: int) -> list[Op]:
    """The ops of `prefix` (sorted by call) from index s on, plus the ops called before
    c = prefix[s].call that were still running at c, made unknown (gets dropped).

    Sound as a self-contained check: in any linearization of the whole history, take the state at
    time c as the initial value; the ops called from c on keep their order; an op running across
    c either took effect before c (already part of that state; as an unknown op it can go last,
    where it changes nothing anyone reads) or after c (where it stays). Ops that returned before
    c took effect before c. So a window that fails from every initial value proves the whole
    history is not linearizable."""
    c = prefix[s].call
    carried = []
    for op in prefix[:s]:
        if op.ret is not None and op.ret <= c:
            continue
        if op.kind == GET:
            continue
        if op.ret is not None:
            op = replace(op, ret=None, out=None, read=None, prev=NOT_RECORDED, error="running across the cut")
        carried.append(op)
    return carried + prefix[s:]


def local_proof(ops: list[Op], stuck: Op, deadline=None, max_window: int = 4000):
    """Look for a short window ending where the search got stuck (the history truncated at
    `stuck`'s return) that fails from every initial value: start 1, 2, 4, ... ops back, then
    bisect between the last two tries. Returns (window, note) or None."""
    ops = sorted(ops, key=lambda o: o.call)
    t = stuck.ret if stuck.ret is not None else max((o.ret for o in ops if o.ret is not None), default=0.0)
    prefix = truncate(ops, t)
    n = len(prefix)

    def fails(back):
        window = window_from(prefix, n - back)
        return window if len(window) <= max_window and _window_fails(window, deadline) else None

    back, last_ok = 1, 0
    found = None
    while back <= n:
        if deadline is not None and time.monotonic() > deadline:
            return None
        found = fails(back)
        if found is not None:
            break
        last_ok = back
        back = min(back * 2, n) if back < n else n + 1
    if found is None:
        return None
    lo, hi = last_ok + 1, back
    while lo < hi:
        mid = (lo + hi) // 2
        w = fails(mid)
        if w is not None:
            hi, found = mid, w
        else:
            lo = mid + 1
    return found, (f"{len(found)} ops (the last {hi} called before the op the search could not get "
                   f"past, plus ops running across that cut): not linearizable from any initial value")
