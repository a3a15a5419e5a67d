"""WAL record codec: format, round trips, error reporting, fuzzing; compiled module vs its twin."""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from fastkv._native import load
from fastkv._native import raftpb_py as pb
from tests.conftest import native_and_twin

impl = native_and_twin("walcodec")

NATIVE = load("walcodec", pure=False)
TWIN = load("walcodec", pure=True)

entries_st = st.lists(
    st.builds(
        pb.Entry,
        term=st.integers(0, 2**64 - 1),
        index=st.integers(0, 2**64 - 1),
        type=st.integers(0, 1),
        data=st.binary(max_size=40),
    ),
    max_size=8,
)
hard_state_st = st.none() | st.builds(
    pb.HardState, term=st.integers(0, 2**64 - 1), vote=st.integers(0, 2**64 - 1), commit=st.integers(0, 2**64 - 1)
)


def _ents(n, size=10, term=1, start=1):
    return [pb.Entry(term, start + i, 0, bytes([i % 251]) * size) for i in range(n)]


def test_layout_of_one_entry_record(impl):
    e = pb.Entry(7, 42, 1, b"hello")
    buf, crc = impl.encode_batch(None, [e], 0)
    payload = pb.encode_entry(e)
    n = len(payload)  # 26: padded to 32
    word, stored_crc, rtype = struct.unpack_from("<QII", buf)
    assert word & ((1 << 56) - 1) == 8 + n
    assert word >> 56 == 0x80 | (-n & 7)
    assert rtype == impl.ENTRY_TYPE and stored_crc == crc
    assert buf[16 : 16 + n] == payload  # exactly raftpb's encode_entry bytes
    assert buf[16 + n :] == bytes(-n & 7)
    assert len(buf) % 8 == 0
    crc32c = load("crc32c", pure=True).crc32c
    assert crc == crc32c(buf[12 : 16 + n])  # type field + data, seeded with 0


def test_unpadded_record_has_plain_length_word(impl):
    buf, _ = impl.encode_record(impl.METADATA_TYPE, b"12345678", 0)
    assert struct.unpack_from("<Q", buf)[0] == 16 and len(buf) == 24


@settings(max_examples=120, deadline=None)
@given(hs=hard_state_st, ents=entries_st, seed=st.integers(0, 2**32 - 1))
def test_native_bytes_equal_twin_and_round_trip(hs, ents, seed):
    buf, crc = NATIVE.encode_batch(hs, ents, seed)
    assert (buf, crc) == TWIN.encode_batch(hs, ents, seed)
    for mod in (NATIVE, TWIN):
        records, end, crc2, err = mod.decode_records(buf, 0, seed, pb.Entry)
        assert err is None and end == len(buf) and crc2 == crc
        got_entries = [v for t, v in records if t == mod.ENTRY_TYPE]
        assert got_entries == ents
        states = [pb.decode_hard_state(v) for t, v in records if t == mod.STATE_TYPE]
        assert states == ([hs] if hs is not None else [])
        # without a factory the entry value is the raftpb encoding
        raw, *_ = mod.decode_records(buf, 0, seed)
        assert [v for t, v in raw if t == mod.ENTRY_TYPE] == [pb.encode_entry(e) for e in ents]


def test_chain_across_calls_and_crc_record(impl):
    a, crc1 = impl.encode_batch(None, _ents(3), 0)
    c, crc2 = impl.encode_record(impl.CRC_TYPE, b"", crc1)
    assert crc2 == crc1
    b, crc3 = impl.encode_batch(pb.HardState(1, 2, 3), _ents(2, start=4), crc2)
    recs, end, crc, err = impl.decode_records(a + c + b, 0, 0)
    assert err is None and crc == crc3 and len(recs) == 3 + 1 + 3
    # a reader starting at the crc record with chain 0 adopts the carried value
    recs, end, crc, err = impl.decode_records(c + b, 0, 0)
    assert err is None and crc == crc3
    # ...but one that already has a different chain value rejects it
    recs, end, crc, err = impl.decode_records(c + b, 0, 12345)
    assert err.kind == "crc" and err.offset == 0 and recs == []


def test_wrong_seed_is_a_crc_error(impl):
    buf, _ = impl.encode_batch(None, _ents(2), 99)
    recs, end, crc, err = impl.decode_records(buf, 0, 98)
    assert err.kind == "crc" and err.offset == 0 and end == 0 and crc == 98


def test_zero_length_word_ends_cleanly(impl):
    buf, crc = impl.encode_batch(None, _ents(4), 0)
    recs, end, crc2, err = impl.decode_records(buf + bytes(4096), 0, 0)
    assert err is None and end == len(buf) and crc2 == crc and len(recs) == 4


def test_every_truncation_is_reported_or_clean(impl):
    buf, _ = impl.encode_batch(pb.HardState(1, 1, 1), _ents(3, size=13), 0)
    boundaries = {0}
    recs, *_ = impl.decode_records(buf, 0, 0)
    off = 0
    for _t, v in recs:
        off += 16 + ((len(v) + 7) & ~7)
        boundaries.add(off)
    for cut in range(len(buf)):
        recs, end, _, err = impl.decode_records(buf[:cut], 0, 0)
        if cut in boundaries:
            assert err is None and end == cut
        else:
            assert err is not None and err.kind == "truncated"
            assert end == max(b for b in boundaries if b <= cut) == err.offset


def test_every_bit_flip_is_detected(impl):
    """No single flipped bit in a record yields silent different data."""
    ents = _ents(2, size=5)
    buf, _ = impl.encode_batch(None, ents, 0)
    for bit in range(len(buf) * 8):
        bad = bytearray(buf)
        bad[bit // 8] ^= 1 << (bit % 8)
        recs, end, _, err = impl.decode_records(bytes(bad), 0, 0, pb.Entry)
        got = [v for _t, v in recs]
        assert got == ents[: len(got)]  # what is returned is a correct prefix
        pad_bit = (bit // 8) % 48 >= 16 + 26  # records are 48 bytes; flips in padding are harmless
        if err is None and not pad_bit:
            pytest.fail(f"flip of bit {bit} went unnoticed")


def test_malformed_inputs(impl):
    good, _ = impl.encode_record(impl.METADATA_TYPE, b"abc", 0)
    bad_top = bytearray(good)
    bad_top[7] = 0x05  # padding bits without the 0x80 flag
    assert impl.decode_records(bytes(bad_top))[3].kind == "malformed"
    short = struct.pack("<Q", 4) + bytes(8)
    assert impl.decode_records(short)[3].kind == "malformed"
    # unknown type with a valid crc
    crc32c = load("crc32c", pure=True).crc32c
    body = struct.pack("<I", 9)
    rec = struct.pack("<QI", 8, crc32c(body)) + body
    assert impl.decode_records(rec)[3].kind == "malformed"
    # entry whose inner data length disagrees with the record length
    inner = struct.pack("<QQBI", 1, 1, 0, 5) + b"abc"
    bad_entry, _ = impl.encode_record(impl.ENTRY_TYPE, inner, 0)
    assert impl.decode_records(bad_entry)[3].kind == "malformed"
    with pytest.raises(ValueError):
        impl.encode_record(9, b"", 0)
    with pytest.raises(ValueError):
        impl.encode_record(impl.CRC_TYPE, b"x", 0)
    with pytest.raises(TypeError):
        impl.encode_batch(None, [pb.Entry(1, 1, 0, bytearray(b"x"))], 0)
    with pytest.raises(ValueError):
        impl.decode_records(b"", 5)


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=300), seed=st.integers(0, 2**32 - 1))
def test_fuzz_random_bytes_same_verdict(data, seed):
    """Arbitrary bytes never crash either decoder and both reach the same verdict."""
    a = NATIVE.decode_records(data, 0, seed, pb.Entry)
    b = TWIN.decode_records(data, 0, seed, pb.Entry)
    assert a[:3] == b[:3]
    assert (a[3] is None) == (b[3] is None)
    if a[3] is not None:
        assert (a[3].kind, a[3].offset) == (b[3].kind, b[3].offset)


@settings(max_examples=300, deadline=None)
@given(
    ents=entries_st,
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 10_000),
)
def test_fuzz_mutated_valid_streams(ents, edits, cut):
    buf, _ = NATIVE.encode_batch(pb.HardState(1, 2, 3), ents, 0)
    bad = bytearray(buf)
    for pos, val in edits:
        if bad:
            bad[pos % len(bad)] = val
    bad = bytes(bad[: cut % (len(bad) + 1)])
    a = NATIVE.decode_records(bad, 0, 0, pb.Entry)
    b = TWIN.decode_records(bad, 0, 0, pb.Entry)
    assert a[:3] == b[:3]
    assert (a[3] is None) == (b[3] is None)
    # a decoded entry is always one that was encoded, in order
    got = [v for t, v in a[0] if t == NATIVE.ENTRY_TYPE]
    assert got == ents[: len(got)]


def test_entry_fast_path_equals_calling_the_class(impl):
    """The compiled decoder fills raftpb_py.Entry's slots without running its __init__; that is
    only valid while Entry is exactly these four slots set by __init__."""
    assert pb.Entry.__slots__ == ("term", "index", "type", "data")
    ents = [pb.Entry(2**64 - 1, 7, 1, b"abc"), pb.Entry(0, 0, 0, b"")]
    buf, _ = impl.encode_batch(None, ents, 0)
    fast = impl.decode_records(buf, 0, 0, pb.Entry)[0]
    slow = impl.decode_records(buf, 0, 0, lambda t, i, ty, d: pb.Entry(t, i, ty, d))[0]
    assert fast == slow == [(impl.ENTRY_TYPE, e) for e in ents]
    assert all(type(v) is pb.Entry and v.data.__class__ is bytes for _t, v in fast)


def test_decode_leaves_gc_state_alone(impl):
    import gc

    buf, _ = impl.encode_batch(None, [pb.Entry(1, 1, 0, b"x")], 0)
    assert gc.isenabled()
    impl.decode_records(buf, 0, 0, pb.Entry)
    assert gc.isenabled()
    gc.disable()
    try:
        impl.decode_records(buf, 0, 0, pb.Entry)
        assert not gc.isenabled()
    finally:
        gc.enable()


@settings(max_examples=200, deadline=None)
@given(
    indexes=st.lists(st.integers(1, 12), max_size=25),
    first=st.integers(1, 5),
    others_at=st.sets(st.integers(0, 25), max_size=4),
)
def test_collect_entries_native_equals_twin_and_model(indexes, first, others_at):
    records = []
    for k, idx in enumerate(indexes):
        if k in others_at:
            records.append((NATIVE.STATE_TYPE, b"hs%d" % k))
        records.append((NATIVE.ENTRY_TYPE, pb.Entry(k, idx, 0, b"")))
    # model: the raft log as a dict index -> entry, truncated on overwrite
    model, error, last = [], None, None
    for t, v in records:
        if t != NATIVE.ENTRY_TYPE:
            continue
        last = v.index
        if v.index < first:
            continue
        pos = v.index - first
        if pos > len(model):
            error = ValueError
            break
        model = model[:pos] + [v]
    for mod in (NATIVE, TWIN):
        ents = []
        if error:
            with pytest.raises(ValueError, match="gap"):
                mod.collect_entries(records, ents, first)
            continue
        others, seen = mod.collect_entries(records, ents, first)
        assert ents == model and seen == last
        assert others == [r for r in records if r[0] != NATIVE.ENTRY_TYPE]
