"""The bbolt writer and reader (fastkv.backend.bbolt), judged twice: by our own checking reader and by
real bbolt inside `etcdctl snapshot status`, which runs bbolt's tx.Check() over the file and then
reports the number of entries and a CRC-32C over every bucket name, key and value in cursor order.

Random buckets cover what the format has to get right: empty values, values needing overflow pages,
enough keys for branch levels, inline and non-inline buckets, long keys in branch pages.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastkv._native import load
from fastkv.backend import bbolt
from fastkv.backend.bbolt import BboltError, check_bbolt, read_bbolt, read_meta, write_bbolt

_crc32c = load("crc32c")
ETCDCTL = shutil.which("etcdctl")


def _value(spec) -> bytes:
    """(length, seed) -> a value; cheap to generate even when it spans many pages."""
    n, seed = spec
    return (seed * (n // max(len(seed), 1) + 1))[:n] if seed else bytes(n)


_bucket_items = st.dictionaries(
    st.binary(min_size=1, max_size=24),
    st.one_of(
        st.tuples(st.integers(0, 80), st.binary(max_size=4)),          # small, often empty
        st.tuples(st.integers(3000, 20000), st.binary(min_size=1, max_size=4)),  # overflow pages
    ),
    max_size=60,
)
# bucket names avoid "key": etcdctl snapshot status parses that bucket's keys as etcd revisions
_buckets = st.dictionaries(st.binary(min_size=1, max_size=10).filter(lambda n: n != b"key"), _bucket_items,
                           max_size=6)


def _materialise(spec: dict) -> dict[bytes, list[tuple[bytes, bytes]]]:
    return {name: sorted((k, _value(v)) for k, v in items.items()) for name, items in spec.items()}


def _write(buckets, **kw) -> bytes:
    f = io.BytesIO()
    n = write_bbolt(f, buckets, **kw)
    data = f.getvalue()
    assert n == len(data) and n % bbolt.PAGE_SIZE == 0
    return data


def _etcd_status(path) -> dict:
    p = subprocess.run([ETCDCTL, "snapshot", "status", str(path), "-w", "json"], capture_output=True, text=True,
                       env={**os.environ, "ETCDCTL_API": "3"}, timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def _status_hash(buckets: dict) -> int:
    """What etcdctl snapshot status computes: CRC-32C over each bucket name, then its keys and values."""
    crc = 0
    for name in sorted(buckets):
        crc = _crc32c.crc32c(name, crc)
        for k, v in buckets[name]:
            crc = _crc32c.crc32c(v, _crc32c.crc32c(k, crc))
    return crc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_buckets)
def test_round_trip_through_our_reader(spec):
    buckets = _materialise(spec)
    data = _write(buckets)
    assert check_bbolt(data) == []
    assert read_bbolt(data) == buckets


@pytest.mark.etcd
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(_buckets)
def test_real_bbolt_checks_and_reads_random_files(tmp_path, spec):
    assert ETCDCTL, "etcdctl is needed: apt-get install -y etcd-client"
    buckets = _materialise(spec)
    path = tmp_path / "random.db"
    write_bbolt(path, buckets)
    st_ = _etcd_status(path)
    assert st_["totalKey"] == sum(len(v) for v in buckets.values())
    assert st_["hash"] == _status_hash(buckets)
    assert st_["totalSize"] == path.stat().st_size


def _big_buckets() -> dict:
    return {
        # enough keys for a three-level tree (leaves -> branches -> root branch)
        b"many": [(b"k%07d" % i, b"v" * (i % 37)) for i in range(40000)],
        # long keys: a branch page holds few of them, so branch levels are deep and wide
        b"longkeys": [(b"%05d" % i + b"x" * 3000, b"") for i in range(200)],
        b"huge": [(b"a", b""), (b"b", os.urandom(1 << 20)), (b"c", b"small")],
        b"empty": [],
        b"one": [(b"only", b"value")],
    }


def _depth(data: bytes, root: int) -> int:
    depth = 1
    pgid = root
    while True:
        _id, flags, _count, _ov = struct.unpack_from("<QHHI", data, pgid * bbolt.PAGE_SIZE)
        if flags == bbolt.LEAF_PAGE:
            return depth
        pos, _ksize, pgid = struct.unpack_from("<IIQ", data, pgid * bbolt.PAGE_SIZE + 16)
        depth += 1


def _root_bucket_headers(data: bytes) -> dict[bytes, int]:
    """Bucket name -> root pgid (0 = inline), read straight off the root leaf page."""
    root = read_meta(data)["root"]
    base = root * bbolt.PAGE_SIZE
    _id, flags, count, _ov = struct.unpack_from("<QHHI", data, base)
    assert flags == bbolt.LEAF_PAGE
    out = {}
    for i in range(count):
        e = base + 16 + 16 * i
        eflags, pos, ksize, _vsize = struct.unpack_from("<IIII", data, e)
        assert eflags == bbolt.BUCKET_LEAF_FLAG
        out[data[e + pos:e + pos + ksize]] = struct.unpack_from("<Q", data, e + pos + ksize)[0]
    return out


def test_branch_levels_overflow_and_inline_buckets(tmp_path):
    buckets = _big_buckets()
    path = tmp_path / "big.db"
    size = write_bbolt(path, buckets)
    data = path.read_bytes()
    assert size == len(data)
    assert check_bbolt(data) == [] and read_bbolt(path) == buckets
    # the file really has the structures the test is named after
    root_items = _root_bucket_headers(data)
    assert root_items[b"empty"] == 0 and root_items[b"one"] == 0  # inline, as bbolt writes small buckets
    assert _depth(data, root_items[b"many"]) == 3
    assert _depth(data, root_items[b"longkeys"]) >= 3
    # walk the pages in file order: one leaf carries the 1 MiB value in its overflow pages
    pgid, overflows = 3, []
    while pgid < read_meta(data)["pgid"]:
        _id, flags, _count, overflow = struct.unpack_from("<QHHI", data, pgid * bbolt.PAGE_SIZE)
        assert _id == pgid
        overflows.append((overflow, flags))
        pgid += overflow + 1
    assert max(overflows) >= ((1 << 20) // bbolt.PAGE_SIZE, bbolt.LEAF_PAGE)
    assert (1, bbolt.BRANCH_PAGE) in overflows or (2, bbolt.BRANCH_PAGE) in overflows  # long keys


@pytest.mark.etcd
def test_real_bbolt_reads_the_big_file(tmp_path):
    assert ETCDCTL, "etcdctl is needed: apt-get install -y etcd-client"
    buckets = _big_buckets()
    path = tmp_path / "big.db"
    write_bbolt(path, buckets)
    st_ = _etcd_status(path)
    assert st_["totalKey"] == sum(len(v) for v in buckets.values())
    assert st_["hash"] == _status_hash(buckets)


def test_meta_pages_and_file_layout():
    data = _write({b"b": [(b"k", b"v")]}, txid=7)
    m = read_meta(data)
    assert (m["page_size"], m["freelist"], m["txid"], m["meta_page"]) == (4096, 2, 7, 1)
    assert m["pgid"] * 4096 == len(data)
    # both meta pages validate (magic, version, FNV-1a checksum); the other one holds txid - 1
    for pgid, txid in ((0, 6), (1, 7)):
        fields = data[pgid * 4096 + 16: pgid * 4096 + 16 + 56]
        magic, version, psize, _fl, _root, _seq, _free, _hw, t = struct.unpack("<IIIIQQQQQ", fields)
        (checksum,) = struct.unpack_from("<Q", data, pgid * 4096 + 72)
        assert (magic, version, psize, t) == (0xED0CDAED, 2, 4096, txid)
        assert checksum == bbolt.fnv1a_64(fields)


def test_fnv1a_64_known_values():
    # published FNV-1a 64 test vectors
    assert bbolt.fnv1a_64(b"") == 0xCBF29CE484222325
    assert bbolt.fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert bbolt.fnv1a_64(b"foobar") == 0x85944171F73967E8


def test_path_file_and_unseekable_targets_write_the_same_bytes(tmp_path):
    buckets = {b"x": [(b"%04d" % i, b"v" * i) for i in range(300)], b"y": []}

    class Pipe:  # write-only, no seek: the writer must buffer
        def __init__(self):
            self.parts = []

        def write(self, b):
            self.parts.append(bytes(b))

    pipe = Pipe()
    n = write_bbolt(pipe, buckets)
    write_bbolt(tmp_path / "f.db", buckets)
    assert b"".join(pipe.parts) == (tmp_path / "f.db").read_bytes() == _write(buckets)
    assert n == len(b"".join(pipe.parts))
    # written from the current position of a file object (as the snapshot service does after nothing)
    f = io.BytesIO()
    f.write(b"prefix")
    write_bbolt(f, buckets)
    assert f.getvalue()[6:] == _write(buckets)


def test_generators_are_streamed_once():
    gen = ((b"%06d" % i, b"x" * 100) for i in range(5000))
    data = _write({b"g": gen})
    assert len(read_bbolt(data)[b"g"]) == 5000


@pytest.mark.parametrize("items, error", [
    ([(b"b", b""), (b"a", b"")], "out of order"),
    ([(b"a", b""), (b"a", b"")], "out of order"),
    ([(b"", b"v")], "empty"),
    ([(b"k" * 40000, b"")], "MaxKeySize|over bbolt"),
])
def test_writer_rejects_what_bbolt_cannot_hold(items, error):
    with pytest.raises(ValueError, match=error):
        _write({b"b": items})
    with pytest.raises(ValueError, match="empty"):
        _write({b"": []})


def test_reader_catches_damage():
    """The reader is a judge only if it can fail: each kind of damage is reported."""
    good = _write({b"b": [(b"%05d" % i, b"v" * 50) for i in range(400)]})
    assert check_bbolt(good) == []

    # both meta checksums broken: no valid meta
    bad = bytearray(good)
    for pgid in (0, 1):
        bad[pgid * 4096 + 72] ^= 0xFF
    with pytest.raises(BboltError, match="no valid meta"):
        read_bbolt(bytes(bad))

    # one meta broken: bbolt falls back to the other, and so do we
    bad = bytearray(good)
    bad[1 * 4096 + 72] ^= 0xFF
    assert read_bbolt(bytes(bad)) == read_bbolt(good)

    # a key changed inside a leaf so that the order breaks
    bad = bytearray(good)
    at = bytes(bad).index(b"00200")
    bad[at:at + 5] = b"99999"
    assert any("out of order" in p or "branch key" in p for p in check_bbolt(bytes(bad)))

    # a page nobody points to and nobody freed (the high-water mark raised by one page)
    bad = bytearray(good) + bytes(4096)
    m = read_meta(good)
    for pgid in (0, 1):
        off = pgid * 4096 + 16
        fields = bytearray(bad[off:off + 56])
        struct.pack_into("<Q", fields, 40, m["pgid"] + 1)
        bad[off:off + 56] = fields
        struct.pack_into("<Q", bad, off + 56, bbolt.fnv1a_64(bytes(fields)))
    assert check_bbolt(bytes(bad)) == [f"page {m['pgid']}: unreachable unfreed"]

    # truncated file: the high-water mark lies beyond its end
    assert check_bbolt(good[:len(good) - 4096])


@pytest.mark.etcd
def test_real_bbolt_rejects_what_our_reader_rejects(tmp_path):
    """Keeps the two judges calibrated against each other: the unreachable-page damage our reader
    reports makes bbolt's own check fail too."""
    assert ETCDCTL, "etcdctl is needed: apt-get install -y etcd-client"
    good = _write({b"b": [(b"%05d" % i, b"v" * 50) for i in range(400)]})
    m = read_meta(good)
    bad = bytearray(good) + bytes(4096)
    for pgid in (0, 1):
        off = pgid * 4096 + 16
        fields = bytearray(bad[off:off + 56])
        struct.pack_into("<Q", fields, 40, m["pgid"] + 1)
        bad[off:off + 56] = fields
        struct.pack_into("<Q", bad, off + 56, bbolt.fnv1a_64(bytes(fields)))
    path = tmp_path / "bad.db"
    path.write_bytes(bytes(bad))
    p = subprocess.run([ETCDCTL, "snapshot", "status", str(path)], capture_output=True, text=True,
                       env={**os.environ, "ETCDCTL_API": "3"}, timeout=30)
    assert p.returncode != 0 and f"page {m['pgid']}: unreachable unfreed" in p.stderr
    assert check_bbolt(bytes(bad)) == [f"page {m['pgid']}: unreachable unfreed"]
