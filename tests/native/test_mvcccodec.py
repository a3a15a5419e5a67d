"""mvcccodec: compiled and twin produce identical bytes and objects."""
import pytest
from hypothesis import given, settings, strategies as st

from fastkv._native import load
from tests.conftest import native_and_twin

impl = native_and_twin("mvcccodec")
twin = load("mvcccodec", pure=True)


def test_rev_key_orders_bytewise_like_revisions(impl):
    revs = [(1, 0), (1, 1), (2, 0), (255, 7), (256, 0), (1 << 40, 3)]
    keys = [impl.rev_key(m, s) for m, s in revs]
    assert keys == sorted(keys)
    assert impl.rev_key(5, 2, True) == impl.rev_key(5, 2) + b"t"
    assert impl.parse_rev_key(impl.rev_key(5, 2, True)) == (5, 2, True)
    assert impl.parse_rev_key(impl.rev_key(1 << 62, 9)) == (1 << 62, 9, False)
    with pytest.raises(ValueError):
        impl.parse_rev_key(b"short")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=300), st.integers(0, 2**62), st.integers(0, 2**62),
       st.integers(0, 2**62), st.integers(-2**62, 2**62))
def test_record_round_trip_matches_twin(key, value, c, m, v, lease):
    native = load("mvcccodec")
    b = native.encode_record(key, value, c, m, v, lease)
    assert b == twin.encode_record(key, value, c, m, v, lease)
    for mod in (native, twin):
        kv = mod.decode_record(b)
        assert (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) == (key, value, c, m, v, lease)
        assert mod.record_key(b) == key


def test_truncated_record_is_a_clean_error(impl):
    b = impl.encode_record(b"key", b"value", 1, 2, 3, 4)
    for n in range(0, impl.HEADER_SIZE + 3):
        with pytest.raises(ValueError):
            impl.decode_record(b[:n])
