"""CRC-32C: published test vectors, chaining, and the compiled module against its twin."""
import os
import zlib

import pytest
from hypothesis import given, settings, strategies as st

from fastkv._native import load
from tests.conftest import native_and_twin

impl = native_and_twin("crc32c")

# RFC 3720 (iSCSI) appendix B.4 vectors, plus the common "123456789" check value.
RFC3720_READ_PDU = bytes.fromhex(
    "01c0000000000000000000000000000014000000000004000000001400000018"
    "28000000000000000200000000000000"
)
VECTORS = [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (RFC3720_READ_PDU, 0xD9963A56),
]


@pytest.mark.parametrize("data,expected", VECTORS, ids=lambda v: str(v)[:20])
def test_published_vectors(impl, data, expected):
    assert impl.crc32c(data) == expected
    assert impl.crc32c_software(data) == expected


def test_not_plain_crc32(impl):
    # guards against accidentally using zlib's polynomial
    assert impl.crc32c(b"123456789") != zlib.crc32(b"123456789")


def test_accepts_buffers(impl):
    data = bytes(range(256)) * 3
    want = impl.crc32c(data)
    assert impl.crc32c(bytearray(data)) == want
    assert impl.crc32c(memoryview(data)) == want
    assert impl.crc32c(memoryview(data)[5:77]) == impl.crc32c(data[5:77])
    assert impl.crc32c(memoryview(data)[::2]) == impl.crc32c(data[::2])


def test_hardware_present_on_this_machine():
    # the target machine is x86-64 with SSE4.2; the compiled module must use it there
    crc = load("crc32c", pure=False)
    with open("/proc/cpuinfo") as f:
        has_sse42 = "sse4_2" in f.read()
    assert crc.has_hardware() == has_sse42


@settings(max_examples=150, deadline=None)
@given(a=st.binary(max_size=300), b=st.binary(max_size=300))
def test_chaining(impl, a, b):
    assert impl.crc32c(b, impl.crc32c(a)) == impl.crc32c(a + b)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=200), seed=st.integers(0, 0xFFFFFFFF), skip=st.integers(0, 7))
def test_native_matches_twin(data, seed, skip):
    native, twin = load("crc32c", pure=False), load("crc32c", pure=True)
    view = memoryview(data)[min(skip, len(data)):]  # every alignment of the start pointer
    want = twin.crc32c(view, seed)
    assert native.crc32c(view, seed) == want
    assert native.crc32c_software(view, seed) == want


def test_hardware_and_table_paths_agree_on_large_input():
    native = load("crc32c", pure=False)
    data = os.urandom(1 << 20)
    for off in range(8):
        assert native.crc32c(data[off:]) == native.crc32c_software(data[off:])


def test_single_bit_flips_change_the_crc(impl):
    data = bytearray(os.urandom(64))
    base = impl.crc32c(data)
    for bit in range(0, 64 * 8, 7):
        data[bit // 8] ^= 1 << (bit % 8)
        assert impl.crc32c(data) != base
        data[bit // 8] ^= 1 << (bit % 8)
