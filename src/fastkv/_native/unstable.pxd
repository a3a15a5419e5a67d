# Compiled unstable log tail; the contract is unstable_py.py.
cdef class Unstable:
    cdef public object snapshot
    cdef public list entries
    cdef public Py_ssize_t offset
    cpdef Py_ssize_t maybe_first_index(self)
    cpdef Py_ssize_t maybe_last_index(self)
    cpdef long long maybe_term(self, Py_ssize_t i)
    cpdef stable_to(self, Py_ssize_t i, long long t)
    cpdef stable_snap_to(self, Py_ssize_t i)
    cpdef restore(self, snap)
    cpdef truncate_and_append(self, ents)
    cpdef Py_ssize_t append_proposals(self, unsigned long long term, Py_ssize_t first_index, list ents) except -1
    cpdef list slice(self, Py_ssize_t lo, Py_ssize_t hi)
