"""CRC-32C (Castagnoli): pure-Python twin of crc32c.pyx (same API, a byte-at-a-time table loop).

Chaining contract: crc32c(b, crc32c(a)) == crc32c(a + b); crc32c(b"") == 0.
"""
from __future__ import annotations

_POLY = 0x82F63B78


def _make_table() -> tuple:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_TABLE = _make_table()


def crc32c(data, crc: int = 0) -> int:
    """CRC-32C of `data` (any contiguous buffer), continuing from the finished value `crc`."""
    if not 0 <= crc <= 0xFFFFFFFF:
        raise OverflowError("crc must fit in 32 bits")
    table = _TABLE
    c = crc ^ 0xFFFFFFFF
    view = memoryview(data)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    for b in view.cast("B"):
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc32c_software(data, crc: int = 0) -> int:
    """Same as crc32c(); exists so both implementations share one API."""
    return crc32c(data, crc)


def has_hardware() -> bool:
    return False
