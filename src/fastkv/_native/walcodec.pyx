# distutils: extra_compile_args = -O3
"""WAL record framing (etcd's layout, our field order); the pure-Python twin is walcodec_py.py.

One record on disk:

    length word u64 LE | crc u32 LE | type u32 LE | data | zero padding to an 8-byte boundary

The length word's low 56 bits hold the body length (8 + len(data)); when padding is present its top
byte is 0x80 | pad, otherwise 0 (the decoder accepts nothing else, so every bit of it is checked). Records therefore start 8-byte aligned, so a length word never straddles a
sector and is never torn on its own. A zero length word is the end of the written data
(segments are preallocated with zeros).

The crc is CRC-32C over the type field and the data (adjacent on purpose: one pass, and a flipped
type is caught), seeded with the previous record's crc: the chain makes a reordered or replayed
record detectable. A CRC record (type 4, no data) carries the chain value itself; it opens every
segment so the chain continues across files, and a reader that starts with crc 0 adopts it.

Entry records hold exactly raftpb's encode_entry() bytes; the encoder writes them straight from the
Entry attributes (term, index, type, data) into the batch buffer.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.ref cimport Py_INCREF
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

import gc as _gc

from fastkv._native.raftpb_py import Entry as _PY_ENTRY

_py_entry_new = _PY_ENTRY.__new__

fastkv_crc32c_init()

METADATA_TYPE = 1
ENTRY_TYPE = 2
STATE_TYPE = 3
CRC_TYPE = 4
SNAPSHOT_TYPE = 5
RECORD_HEADER_SIZE = WAL_RECORD_HEADER
ENTRY_HEADER_SIZE = WAL_ENTRY_HEADER

cdef uint64_t _LEN_MASK = (<uint64_t>1 << 56) - 1
cdef object _ENTRY_TYPE_OBJ = ENTRY_TYPE


class RecordError(ValueError):
    """Why decoding stopped early. `kind` is one of:
    "truncated" (the record runs past the end of the buffer), "crc" (checksum mismatch) or
    "malformed" (impossible length word, unknown type, inconsistent entry); `offset` is where the
    failing record's length word starts."""

    def __init__(self, kind, offset, detail):
        super().__init__(f"{kind} record at byte offset {offset}: {detail}")
        self.kind = kind
        self.offset = offset
        self.detail = detail


cdef inline void _put_u64(unsigned char *p, uint64_t v) noexcept nogil:
    memcpy(p, &v, 8)


cdef inline void _put_u32(unsigned char *p, uint32_t v) noexcept nogil:
    memcpy(p, &v, 4)


cdef inline uint64_t _get_u64(const unsigned char *p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef inline uint32_t _get_u32(const unsigned char *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline Py_ssize_t _framed_size(Py_ssize_t n) noexcept nogil:
    """Bytes one record with n data bytes takes on disk."""
    return WAL_RECORD_HEADER + ((n + 7) & ~7)


cdef inline uint32_t _frame(unsigned char *p, uint32_t rtype, Py_ssize_t n, uint32_t crc) noexcept nogil:
    """Write the length word, type and padding around n data bytes already at p + 16; fill the
    chained crc and return it."""
    cdef uint64_t pad = (-n) & 7
    cdef uint64_t word = <uint64_t>(8 + n)
    if pad:
        word |= (0x80 | pad) << 56
        memset(p + WAL_RECORD_HEADER + n, 0, pad)
    _put_u64(p, word)
    _put_u32(p + 12, rtype)
    crc = fastkv_crc32c_update(crc, p + 12, 4 + n)
    _put_u32(p + 8, crc)
    return crc


def encode_record(unsigned int rtype, data, unsigned int crc):
    """Frame one record; returns (bytes, crc after it). A CRC record must have empty data and
    carries `crc` unchanged."""
    cdef const unsigned char[::1] view = bytes(data)
    cdef Py_ssize_t n = view.shape[0]
    if rtype < 1 or rtype > 5:
        raise ValueError(f"unknown WAL record type {rtype}")
    out = PyBytes_FromStringAndSize(NULL, _framed_size(n))
    cdef unsigned char *p = <unsigned char *>PyBytes_AS_STRING(out)
    if rtype == CRC_TYPE:
        if n:
            raise ValueError("a CRC record carries no data")
        _put_u64(p, 8)
        _put_u32(p + 8, crc)
        _put_u32(p + 12, rtype)
        return out, crc
    if n:
        memcpy(p + WAL_RECORD_HEADER, &view[0], n)
    crc = _frame(p, rtype, n, crc)
    return out, crc


def encode_batch(hard_state, list entries, unsigned int crc):
    """Frame `entries` (one ENTRY record each, raftpb Entry layout) followed by a STATE record for
    `hard_state` unless it is None, in one bytes object. Returns (bytes, crc after the last)."""
    cdef Py_ssize_t count = PyList_GET_SIZE(entries)
    cdef Py_ssize_t i, n, total = 0
    cdef object e, data
    # first pass: sizes (and a type check, so the second pass cannot fail half-way)
    for i in range(count):
        e = <object>PyList_GET_ITEM(entries, i)
        data = e.data
        if type(data) is not bytes:
            raise TypeError(f"entry data must be bytes, got {type(data).__name__}")
        total += _framed_size(WAL_ENTRY_HEADER + PyBytes_GET_SIZE(data))
    if hard_state is not None:
        total += _framed_size(24)
    out = PyBytes_FromStringAndSize(NULL, total)
    cdef unsigned char *p = <unsigned char *>PyBytes_AS_STRING(out)
    cdef unsigned char *q
    cdef uint64_t term, index
    cdef uint8_t etype
    for i in range(count):
        e = <object>PyList_GET_ITEM(entries, i)
        data = e.data
        term = e.term
        index = e.index
        etype = e.type
        n = PyBytes_GET_SIZE(data)
        q = p + WAL_RECORD_HEADER
        _put_u64(q, term)
        _put_u64(q + 8, index)
        q[16] = etype
        _put_u32(q + 17, <uint32_t>n)
        memcpy(q + WAL_ENTRY_HEADER, PyBytes_AS_STRING(data), n)
        crc = _frame(p, ENTRY_TYPE, WAL_ENTRY_HEADER + n, crc)
        p += _framed_size(WAL_ENTRY_HEADER + n)
    if hard_state is not None:
        q = p + WAL_RECORD_HEADER
        _put_u64(q, <uint64_t>hard_state.term)
        _put_u64(q + 8, <uint64_t>hard_state.vote)
        _put_u64(q + 16, <uint64_t>hard_state.commit)
        crc = _frame(p, STATE_TYPE, 24, crc)
    return out, crc


def decode_records(buf, Py_ssize_t offset=0, unsigned int crc=0, entry_factory=None):
    """Decode records from `buf` starting at `offset` with the chain value `crc`.

    Returns (records, end, crc, error): records is a list of (type, value) where value is
    entry_factory(term, index, type, data) for ENTRY records when a factory is given and the
    record's data bytes otherwise; end and crc are the offset and chain value just after the last
    good record; error is None when decoding reached a zero length word or the end of the buffer,
    else a RecordError describing the first bad record (nothing after it is returned).
    """
    # A segment holds up to ~500k records: with the cyclic GC running, every few hundred new
    # tuples/entries would trigger a collection that walks all the ones already made (measured 10x
    # slower). Nothing made here can form a cycle, so collection is paused for the call.
    cdef bint gc_was_enabled = _gc.isenabled()
    if gc_was_enabled:
        _gc.disable()
    try:
        return _decode_records(buf, offset, crc, entry_factory)
    finally:
        if gc_was_enabled:
            _gc.enable()


cdef _decode_records(buf, Py_ssize_t offset, unsigned int crc, entry_factory):
    cdef const unsigned char[::1] view = memoryview(buf).cast("B") if not isinstance(buf, bytes) else buf
    cdef Py_ssize_t size = view.shape[0]
    cdef const unsigned char *base
    cdef const unsigned char *p
    cdef uint64_t word, body, top, pad
    cdef uint32_t rtype, want, got
    cdef Py_ssize_t n, k, dlen
    cdef list records = []
    cdef object value, item
    if offset < 0 or offset > size:
        raise ValueError(f"offset {offset} outside a {size}-byte buffer")
    if size == 0:
        return records, offset, crc, None
    base = &view[0]
    while True:
        if size - offset < 8:
            for k in range(offset, size):
                if base[k]:
                    return records, offset, crc, RecordError(
                        "truncated", offset, f"{size - offset} trailing bytes cannot hold a length word")
            return records, offset, crc, None
        p = base + offset
        word = _get_u64(p)
        if word == 0:
            return records, offset, crc, None
        body = word & _LEN_MASK
        top = word >> 56
        pad = 0
        if top:
            if not (top & 0x80) or (top & 0x7F) >= 8 or (top & 0x7F) == 0:
                return records, offset, crc, RecordError("malformed", offset, f"bad length word {word:#018x}")
            pad = top & 0x7F
        if body < 8 or ((body + pad) & 7):
            return records, offset, crc, RecordError("malformed", offset, f"bad length word {word:#018x}")
        if body + pad > <uint64_t>(size - offset - 8):
            return records, offset, crc, RecordError(
                "truncated", offset, f"record of {body + pad + 8} bytes runs past the end ({size - offset} left)")
        n = <Py_ssize_t>body - 8
        want = _get_u32(p + 8)
        rtype = _get_u32(p + 12)
        if rtype == 4:
            if n != 0:
                return records, offset, crc, RecordError("malformed", offset, f"CRC record with {n} data bytes")
            if crc != 0 and want != crc:
                return records, offset, crc, RecordError(
                    "crc", offset, f"CRC record carries {want:#010x}, chain is at {crc:#010x}")
            crc = want
            value = b""
        else:
            got = fastkv_crc32c_update(crc, p + 12, 4 + n)
            if got != want:
                return records, offset, crc, RecordError(
                    "crc", offset, f"stored crc {want:#010x} != computed {got:#010x}")
            if rtype < 1 or rtype > 5:
                return records, offset, crc, RecordError("malformed", offset, f"unknown record type {rtype}")
            if rtype == 2:
                if n < WAL_ENTRY_HEADER:
                    return records, offset, crc, RecordError("malformed", offset, f"entry record of {n} bytes")
                dlen = _get_u32(p + 16 + 17)
                if dlen != n - WAL_ENTRY_HEADER:
                    return records, offset, crc, RecordError(
                        "malformed", offset, f"entry says {dlen} data bytes, record holds {n - WAL_ENTRY_HEADER}")
                if entry_factory is _PY_ENTRY:
                    # the twin raftpb Entry: its __init__ only stores the four slots, so set them
                    # directly instead of running the Python-level __init__ (3x cheaper per entry)
                    value = _py_entry_new(_PY_ENTRY)
                    value.term = _get_u64(p + 16)
                    value.index = _get_u64(p + 24)
                    value.type = p[32]
                    value.data = PyBytes_FromStringAndSize(<const char *>p + 16 + WAL_ENTRY_HEADER, dlen)
                elif entry_factory is not None:
                    value = entry_factory(
                        _get_u64(p + 16), _get_u64(p + 24), p[32],
                        PyBytes_FromStringAndSize(<const char *>p + 16 + WAL_ENTRY_HEADER, dlen))
                else:
                    value = PyBytes_FromStringAndSize(<const char *>p + 16, n)
            else:
                value = PyBytes_FromStringAndSize(<const char *>p + 16, n)
            crc = got
        item = PyTuple_New(2)
        Py_INCREF(_RTYPES[rtype])
        PyTuple_SET_ITEM(item, 0, _RTYPES[rtype])
        Py_INCREF(value)
        PyTuple_SET_ITEM(item, 1, value)
        records.append(item)
        offset += 8 + <Py_ssize_t>(body + pad)


cdef tuple _RTYPES = (0, 1, 2, 3, 4, 5)


def collect_entries(list records, list entries, long long first_index):
    """Fold decoded records into a raft log, as a WAL reader must.

    `entries` is the log from `first_index` on (mutated in place). Each ENTRY record at index i
    replaces everything from i on (a later leader overwrote that suffix) or extends the log when
    i is the next index; entries below first_index (covered by the snapshot) are skipped.
    Returns (others, last_index): the non-entry records in order, and the index of the last
    entry record seen (None if there was none). Raises ValueError when an entry would leave a
    gap. Hot on recovery, hence compiled: one C loop instead of a Python one per record.
    """
    cdef Py_ssize_t i, n = PyList_GET_SIZE(records)
    cdef list others = []
    cdef object item, value
    cdef long long index, pos, have
    cdef object last = None
    for i in range(n):
        item = <object>PyList_GET_ITEM(records, i)
        if (<tuple>item)[0] is not _ENTRY_TYPE_OBJ and (<tuple>item)[0] != 2:
            others.append(item)
            continue
        value = (<tuple>item)[1]
        index = value.index
        last = index
        if index < first_index:
            continue
        pos = index - first_index
        have = PyList_GET_SIZE(entries)
        if pos == have:
            entries.append(value)
        elif pos < have:
            del entries[pos:]
            entries.append(value)
        else:
            raise ValueError(f"entry {index} follows entry {first_index + have - 1}: the log has a gap")
    return others, last
