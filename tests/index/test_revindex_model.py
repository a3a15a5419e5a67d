"""Property test: the revision index against a naive event-log model (independent of etcd's
generation layout), over random put/tombstone/compact sequences on a tiny keyspace.

The model keeps every event ever applied; the index must answer reads at or above the last
compaction revision exactly as the model does, and compact() must keep exactly the revision each
key shows at the compaction revision (nothing for a key deleted at or before it).
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from fastkv._native import load

# load(pure=False) raises ImportError when the extension is not built: a failure, never a skip
IMPLS = {"twin": lambda: load("revindex", pure=True), "native": lambda: load("revindex", pure=False)}

KEYS = [b"", b"a", b"ab", b"b", b"c\x00", b"c\xff"]


class Model:
    def __init__(self):
        self.events: dict[bytes, list[tuple[tuple[int, int], bool]]] = {}  # key -> [(rev, is_tomb)]
        self.compacted = 0

    def live(self, key):
        ev = self.events.get(key)
        return bool(ev) and not ev[-1][1]

    def get(self, key, at):
        ev = [e for e in self.events.get(key, []) if e[0][0] <= at]
        if not ev or ev[-1][1]:
            return None
        start = len(ev) - 1
        while start > 0 and not ev[start - 1][1]:
            start -= 1
        return ev[-1][0], ev[start][0], len(ev) - start

    def since(self, key, rev):
        out = []
        for r, _ in self.events.get(key, []):
            if r[0] < rev:
                continue
            if out and out[-1][0] == r[0]:
                out[-1] = r
            else:
                out.append(r)
        return out

    def keep(self, rev):
        out = set()
        for key, ev in self.events.items():
            ev = [e for e in ev if e[0][0] <= rev]
            if ev and not ev[-1][1]:
                out.add(ev[-1][0])
        return out

    def held(self):
        # keys survive compaction while they have an event above it or are alive at it
        return sum(
            1 for ev in self.events.values()
            if any(r[0] > self.compacted for r, _ in ev) or (ev and not ev[-1][1])
        )


op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.booleans()),
    st.tuples(st.just("del"), st.sampled_from(KEYS), st.booleans()),
    st.tuples(st.just("compact"), st.integers(0, 3)),
)


@pytest.mark.parametrize("name", sorted(IMPLS))
@settings(max_examples=150, deadline=None)
@given(ops=st.lists(op, max_size=50))
def test_index_matches_event_log(name, ops):
    mod = IMPLS[name]()
    idx, model = mod.TreeIndex(), Model()
    main, sub = 1, 0
    for o in ops:
        if o[0] in ("put", "del"):
            _, key, same_txn = o
            if same_txn and main > 1:  # another change in the same transaction: next sub revision
                sub += 1
            else:
                main, sub = main + 1, 0
            if o[0] == "put":
                idx.put(key, main, sub)
                model.events.setdefault(key, []).append(((main, sub), False))
            elif model.live(key):
                idx.tombstone(key, main, sub)
                model.events[key].append(((main, sub), True))
            else:
                with pytest.raises(mod.RevisionNotFoundError):
                    idx.tombstone(key, main, sub)
        else:
            rev = max(model.compacted, main - o[1])
            assert idx.keep(rev) == model.keep(rev)
            assert idx.compact(rev) == model.keep(rev)
            model.compacted = rev
            assert len(idx) == model.held()
    for at in range(model.compacted, main + 2):
        want_keys = [k for k in sorted(KEYS) if model.get(k, at) is not None]
        assert idx.range(b"", b"", at) == (want_keys, [model.get(k, at)[0] for k in want_keys])
        for key in KEYS:
            want = model.get(key, at)
            if want is None:
                with pytest.raises(mod.RevisionNotFoundError):
                    idx.get(key, at)
            else:
                assert idx.get(key, at) == want
    for rev in range(model.compacted + 1, main + 2):
        want = sorted(r for k in KEYS if k >= b"a" for r in model.since(k, rev))
        assert idx.range_since(b"a", b"", rev) == want
        for key in KEYS:
            assert idx.range_since(key, None, rev) == model.since(key, rev)
