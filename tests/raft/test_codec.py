"""raftpb: the data model and its codec, compiled and twin. Both must produce the same bytes, and
every decoder must reject truncated or padded input with CodecError."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from fastkv._native import load

from tests.conftest import native_and_twin  # tests/conftest.py (the shared fixtures)

impl = native_and_twin("raftpb")
twin = load("raftpb", pure=True)

u64 = st.integers(min_value=0, max_value=2**64 - 1)
small = st.integers(min_value=0, max_value=2**20)
blob = st.binary(max_size=64)


def make_entry(pb, t):
    return pb.Entry(*t)


entry_t = st.tuples(u64, u64, st.sampled_from([0, 1]), blob)
conf_t = st.tuples(st.lists(u64, max_size=5, unique=True), st.lists(u64, max_size=3, unique=True))
snap_t = st.none() | st.tuples(u64, u64, conf_t, blob)
msg_t = st.tuples(st.integers(0, 18), u64, u64, u64, u64, u64, st.lists(entry_t, max_size=4), u64,
                  st.booleans(), u64, snap_t, blob)


def make_message(pb, t):
    typ, to, frm, term, log_term, index, ents, commit, reject, hint, snap, ctx = t
    snapshot = None
    if snap is not None:
        snapshot = pb.Snapshot(pb.SnapshotMetadata(snap[0], snap[1], pb.ConfState(*snap[2])), snap[3])
    return pb.Message(typ, to, frm, term, log_term, index, [pb.Entry(*e) for e in ents], commit,
                      reject, hint, snapshot, ctx)


@settings(max_examples=150, deadline=None)
@given(t=msg_t)
def test_message_roundtrip_and_bytes_match_twin(impl, t):
    m = make_message(impl, t)
    enc = impl.encode_message(m)
    assert enc == twin.encode_message(make_message(twin, t))
    back = impl.decode_message(enc)
    assert back == m
    assert twin.decode_message(enc) == m  # cross-decodes


@settings(max_examples=100, deadline=None)
@given(t=msg_t, data=st.data())
def test_message_truncation_and_padding_rejected(impl, t, data):
    enc = impl.encode_message(make_message(impl, t))
    cut = data.draw(st.integers(0, len(enc) - 1))
    with pytest.raises(impl.CodecError):
        impl.decode_message(enc[:cut])
    with pytest.raises(impl.CodecError):
        impl.decode_message(enc + b"\x00")


@settings(max_examples=100, deadline=None)
@given(t=entry_t)
def test_entry_roundtrip(impl, t):
    e = impl.Entry(*t)
    enc = impl.encode_entry(e)
    assert enc == twin.encode_entry(twin.Entry(*t))
    assert impl.decode_entry(enc) == e
    assert e.size() == len(enc)
    with pytest.raises(impl.CodecError):
        impl.decode_entry(enc[:-1])


@settings(max_examples=60, deadline=None)
@given(t=conf_t, idx=u64, term=u64, data=blob, cc=st.tuples(st.sampled_from([0, 1, 3]), u64, blob))
def test_other_records_roundtrip(impl, t, idx, term, data, cc):
    cs = impl.ConfState(*t)
    assert impl.decode_conf_state(impl.encode_conf_state(cs)) == cs
    meta = impl.SnapshotMetadata(idx, term, cs)
    enc = impl.encode_snapshot_metadata(meta)
    assert enc == twin.encode_snapshot_metadata(twin.SnapshotMetadata(idx, term, twin.ConfState(*t)))
    assert impl.decode_snapshot_metadata(enc) == meta
    snap = impl.Snapshot(meta, data)
    assert impl.decode_snapshot(impl.encode_snapshot(snap)) == snap
    c = impl.ConfChange(*cc)
    enc = impl.encode_conf_change(c)
    assert enc == twin.encode_conf_change(twin.ConfChange(*cc))
    assert impl.decode_conf_change(enc) == c
    hs = impl.HardState(idx, term, 7)
    assert impl.decode_hard_state(impl.encode_hard_state(hs)) == hs


def test_known_layout(impl):
    """Pin the byte layout (the WAL and the wire depend on it)."""
    e = impl.Entry(2, 5, impl.ENTRY_NORMAL, b"ab")
    assert impl.encode_entry(e).hex() == "0200000000000000" "0500000000000000" "00" "02000000" "6162"
    m = impl.Message(type=impl.MSG_HEARTBEAT, to=2, frm=1, term=3, commit=9, context=b"c")
    enc = impl.encode_message(m)
    assert len(enc) == 62 + 1 + 4 + 1
    assert enc[0] == 8 and enc[1:9] == (2).to_bytes(8, "little") and enc[-1:] == b"c"


def test_decoders_accept_buffers(impl):
    e = impl.Entry(1, 1, 0, b"xyz")
    enc = impl.encode_entry(e)
    assert impl.decode_entry(bytearray(enc)) == e
    assert impl.decode_entry(memoryview(enc)) == e


def test_compiled_and_twin_expose_the_same_public_api():
    native = load("raftpb", pure=False)
    public = lambda mod: {n for n in dir(mod) if not n.startswith("_") and n not in {"annotations", "struct"}}
    assert public(twin) - public(native) == set()
    for name in ("Entry", "HardState", "ConfState", "SnapshotMetadata", "Snapshot", "ConfChange", "Message"):
        t, n = getattr(twin, name)(), getattr(native, name)()
        assert set(t.__slots__) <= {a for a in dir(n) if not a.startswith("_")}, name
    u_native, u_twin = load("unstable", pure=False), load("unstable", pure=True)
    assert public(u_twin) - public(u_native) == set()
    for attr in dir(u_twin.Unstable):
        if not attr.startswith("_"):
            assert hasattr(u_native.Unstable, attr), attr
