# Compiled raft data model; the contract is raftpb_py.py (same names, behaviour and byte layout).
from libc.stdint cimport uint64_t


cdef class Entry:
    cdef public uint64_t term
    cdef public uint64_t index
    cdef public int type
    cdef public bytes data
    cpdef Py_ssize_t size(self)


cdef class HardState:
    cdef public uint64_t term
    cdef public uint64_t vote
    cdef public uint64_t commit


cdef class ConfState:
    cdef public tuple voters
    cdef public tuple learners


cdef class SnapshotMetadata:
    cdef public uint64_t index
    cdef public uint64_t term
    cdef public object conf_state


cdef class Snapshot:
    cdef public object metadata
    cdef public bytes data


cdef class ConfChange:
    cdef public int type
    cdef public uint64_t node_id
    cdef public bytes context


cdef class Message:
    cdef public int type
    cdef public uint64_t to
    cdef public uint64_t frm
    cdef public uint64_t term
    cdef public uint64_t log_term
    cdef public uint64_t index
    cdef public list entries
    cdef public uint64_t commit
    cdef public bint reject
    cdef public uint64_t reject_hint
    cdef public object snapshot
    cdef public bytes context
