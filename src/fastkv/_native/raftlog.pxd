# The compiled raft log storage (twin: raftlog_py.py). _ents[0] is the dummy entry at the snapshot
# point; _offset caches its index so term()/entries() do no attribute lookups on it.
cdef class MemoryStorage:
    cdef list _ents
    cdef object _hard_state
    cdef object _snapshot
    cdef long long _offset

    cpdef long long first_index(self)
    cpdef long long last_index(self)
    cpdef term(self, long long i)
