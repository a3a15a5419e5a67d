"""RaftLog (stable Storage + unstable tail) against a plain-list model, over random sequences of
leader appends, follower appends with conflicts, persistence, commits and compaction. Runs over
the compiled unstable tail and its twin."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from fastkv._native import load, raftlog_py
from fastkv.raft.log import RaftLog

from tests.conftest import native_and_twin  # tests/conftest.py (the shared fixtures)

impl = native_and_twin("unstable")

op = st.one_of(
    st.tuples(st.just("propose"), st.integers(1, 4)),
    st.tuples(st.just("follower"), st.integers(0, 6), st.lists(st.integers(0, 2), min_size=1, max_size=4)),
    st.tuples(st.just("persist"), st.integers(0, 1)),
    st.tuples(st.just("commit"), st.integers(0, 8)),
    st.tuples(st.just("compact"), st.integers(0, 8)),
    st.tuples(st.just("term_up"), st.just(0)),
)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(op, max_size=30))
def test_log_matches_model(impl, ops):
    pb = load("raftpb", pure=not impl.__name__.endswith("unstable"))
    storage = raftlog_py.MemoryStorage()
    log = RaftLog(storage, impl, (raftlog_py.CompactedError, raftlog_py.UnavailableError))
    model = [0]          # model[i] = term of entry i; model[0] is the zero entry
    term = 1
    for o in ops:
        kind = o[0]
        last = len(model) - 1
        if kind == "term_up":
            term += 1
        elif kind == "propose":
            got = log.append_proposals(term, [pb.Entry(data=b"p") for _ in range(o[1])])
            model += [term] * o[1]
            assert got == len(model) - 1
        elif kind == "follower":
            # A leader's append after index `at - 1`, with terms rising from the previous entry's.
            at = max(log.committed + 1, min(o[1], last + 1))
            at = max(at, log.first_index())
            prev_term = model[at - 1]
            terms, t = [], max(prev_term, 1)
            for bump in o[2]:
                t += bump
                terms.append(t)
            if terms[0] < prev_term or max(terms) > term:
                term = max(term, max(terms))
            ents = [pb.Entry(tt, at + k) for k, tt in enumerate(terms)]
            assert log.maybe_append(at - 1, prev_term, log.committed, ents) == at - 1 + len(ents)
            for k, tt in enumerate(terms):
                i = at + k
                if i < len(model) and model[i] != tt:
                    del model[i:]
                if i >= len(model):
                    model.append(tt)
        elif kind == "persist":
            ents = log.unstable_entries()
            if ents:
                storage.append(ents)
                log.stable_to(ents[-1].index, ents[-1].term)
        elif kind == "commit":
            log.commit_to(min(o[1], log.last_index()))
        elif kind == "compact":
            # The application compacts only what it applied, and applies only committed entries
            # it persisted: below the unstable offset (storage may still hold a stale suffix
            # that the unstable tail is replacing).
            i = min(o[1], log.committed, storage.last_index(), log.unstable.offset - 1)
            if i > storage.first_index():
                storage.compact(i)
        # --- compare -----------------------------------------------------------------------
        last = len(model) - 1
        assert log.last_index() == last
        first = log.first_index()
        for i in range(first - 1, last + 1):
            assert log.term(i) == model[i], (i, log.term(i), model)
        assert [e.term for e in log.slice(first, last + 1)] == model[first:]
        assert [e.index for e in log.slice(first, last + 1)] == list(range(first, last + 1))
        assert log.term(last + 1) == 0
