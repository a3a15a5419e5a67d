"""Recovery: torn tails (truncation at every offset of the last record, unwritten sectors) are
repaired; flipped bits anywhere before the tail are refused with the file and offset named."""
import hashlib
import os
import re
import shutil

import pytest

from fastkv._native import load
from fastkv.wal import WAL, WALCorruptError
from fastkv.wal.segment import list_segments
from .helpers import entries, entry, pb

codec = load("walcodec")
SEG = 256 * 1024
SECTOR = 512


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A WAL with 50 acknowledged entries in 5 batches, then one more batch (entries 51..90)
    whose byte range in the tail segment is recorded: the batch a crash would tear."""
    d = str(tmp_path_factory.mktemp("pristine") / "wal")
    with WAL.create(d, b"meta", segment_size=SEG) as w:
        for b in range(5):
            w.save(pb.HardState(1, 1, b * 10), entries(b * 10 + 1, b * 10 + 10))
        start = w.tail_offset
        w.save(None, entries(51, 90))
        end = w.tail_offset
        tail = w.tail_path
    return d, os.path.basename(tail), start, end


@pytest.fixture(scope="module")
def last_record(tmp_path_factory):
    """A WAL whose last record is a single entry (51) after 50 acknowledged ones."""
    d = str(tmp_path_factory.mktemp("last") / "wal")
    with WAL.create(d, b"meta", segment_size=SEG) as w:
        for b in range(5):
            w.save(pb.HardState(1, 1, b * 10), entries(b * 10 + 1, b * 10 + 10))
        start = w.tail_offset
        w.save(None, [entry(51)])
        end = w.tail_offset
        tail = w.tail_path
    return d, os.path.basename(tail), start, end


def _copy(src, tmp_path, name="case"):
    dst = str(tmp_path / name)
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def _recover_and_extend(d, expect_prefix_from):
    """Open, check the recovered log is an exact prefix 1..k with k >= expect_prefix_from, append
    three entries, reopen and check again: stale bytes must not survive the repair."""
    with WAL.open(d, segment_size=SEG) as w:
        meta, hs, ents = w.read_all()
        k = len(ents)
        assert meta == b"meta" and hs.commit == 40
        assert k >= expect_prefix_from and ents == entries(1, k)
        w.save(None, entries(k + 1, k + 3, term=2))
    with WAL.open(d, segment_size=SEG) as w:
        assert w.read_all()[2] == entries(1, k) + entries(k + 1, k + 3, term=2)
    return k


def test_truncate_at_every_offset_of_the_last_record(last_record, tmp_path):
    src, tail, start, end = last_record
    assert end - start > 100
    for cut in range(start, end):
        d = _copy(src, tmp_path)
        os.truncate(os.path.join(d, tail), cut)
        k = _recover_and_extend(d, 50)
        assert k == 50  # the torn entry 51 never appears
        assert os.path.exists(os.path.join(d, tail + ".broken")) == (cut > start)
        # the repaired segment is back to full size and zero after the good records
        assert os.path.getsize(os.path.join(d, tail)) == SEG


def test_truncated_inside_the_last_batch(pristine, tmp_path):
    src, tail, start, end = pristine
    for cut in range(start, end, 61):
        d = _copy(src, tmp_path)
        os.truncate(os.path.join(d, tail), cut)
        k = _recover_and_extend(d, 50)
        assert k < 90


def _zero(path, lo, hi):
    with open(path, "r+b") as f:
        f.seek(lo)
        f.write(bytes(hi - lo))


def test_each_unwritten_sector_of_the_last_batch(pristine, tmp_path):
    """The last batch's bytes in one sector never reached the disk (the sector keeps its older
    content, i.e. earlier records or zeros): everything before is recovered, nothing after."""
    src, tail, start, end = pristine
    first, last = start // SECTOR, (end - 1) // SECTOR
    assert last - first >= 5
    for s in range(first, last + 1):
        d = _copy(src, tmp_path)
        _zero(os.path.join(d, tail), max(start, s * SECTOR), min(end, (s + 1) * SECTOR))
        k = _recover_and_extend(d, 50)
        assert k < 90
        assert os.path.exists(os.path.join(d, tail + ".broken"))


def test_several_unwritten_sectors(pristine, tmp_path):
    src, tail, start, end = pristine
    first, last = start // SECTOR, (end - 1) // SECTOR
    for pattern in ([first + 1, first + 3], list(range(first + 2, last + 1)), [last]):
        d = _copy(src, tmp_path)
        for s in pattern:
            _zero(os.path.join(d, tail), max(start, s * SECTOR), min(end, (s + 1) * SECTOR))
        k = _recover_and_extend(d, 50)
        assert k < 90


def _record_spans(raw):
    """(offset, data_end, framed_end) of every record in a segment's bytes."""
    recs, end, _, err = codec.decode_records(raw, 0, 0)
    assert err is None
    spans, off = [], 0
    for _t, v in recs:
        spans.append((off, off + 16 + len(v), off + 16 + ((len(v) + 7) & ~7)))
        off = spans[-1][2]
    return spans


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _assert_refused(d, path, offset_hint=None):
    before = _digest(path)
    with pytest.raises(WALCorruptError) as info:
        WAL.open(d, segment_size=SEG)
    msg = str(info.value)
    assert path in msg and re.search(r"byte offset \d+", msg), msg
    assert "restore" in msg  # tells the operator what to do
    if offset_hint is not None:
        assert info.value.offset == offset_hint
    assert _digest(path) == before  # nothing was "repaired" away
    assert not os.path.exists(path + ".broken")
    return info.value


def test_flipped_bits_before_the_tail_are_refused(pristine, tmp_path):
    """A flipped bit in any record that is followed by other records -- header, crc, type or
    data, including length words -- is detected: clear error naming file and offset."""
    src, tail, start, end = pristine
    with open(os.path.join(src, tail), "rb") as f:
        raw = f.read(end)
    spans = _record_spans(raw)[:-1]  # every record except the final one
    positions = []
    for off, data_end, _framed in spans:
        positions += [off, off + 1, off + 6, off + 7, off + 8, off + 12]  # length word, crc, type
        positions += list(range(off + 16, data_end, 29))  # data
    d = _copy(src, tmp_path)
    path = os.path.join(d, tail)
    for pos in positions:
        for bit in (0, 3, 7):
            with open(path, "r+b") as f:
                f.seek(pos)
                byte = f.read(1)[0]
                f.seek(pos)
                f.write(bytes([byte ^ (1 << bit)]))
            err = _assert_refused(d, path)
            # the opening CRC record's value is adopted, so damage to it shows at the next record
            assert err.offset <= pos or (pos < 16 and err.offset == 16)
            with open(path, "r+b") as f:
                f.seek(pos)
                f.write(bytes([byte]))
    with WAL.open(d, segment_size=SEG) as w:  # restored: opens fine again
        assert w.read_all()[2] == entries(1, 90)


def test_flipped_bit_in_the_final_record_never_yields_wrong_data(pristine, tmp_path):
    src, tail, start, end = pristine
    with open(os.path.join(src, tail), "rb") as f:
        raw = f.read(end)
    off, data_end, _ = _record_spans(raw)[-1]
    for pos in range(off, data_end, 3):
        d = _copy(src, tmp_path)
        path = os.path.join(d, tail)
        with open(path, "r+b") as f:
            f.seek(pos)
            byte = f.read(1)[0]
            f.seek(pos)
            f.write(bytes([byte ^ 0x10]))
        try:
            with WAL.open(d, segment_size=SEG) as w:
                ents = w.read_all()[2]
        except WALCorruptError:
            continue
        assert ents == entries(1, len(ents)) and len(ents) >= 89


def test_flipped_bit_in_a_closed_segment_is_refused(tmp_path):
    d = str(tmp_path / "wal")
    small = 8 * 1024
    with WAL.create(d, b"meta", segment_size=small) as w:
        for b in range(30):
            w.save(pb.HardState(1, 1, b), entries(b * 10 + 1, b * 10 + 10))
    segs = list_segments(d)
    assert len(segs) >= 3
    path = os.path.join(d, segs[1].filename)
    with open(path, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)[0]
        f.seek(1000)
        f.write(bytes([byte ^ 4]))
    err = _assert_refused(d, path)
    assert err.offset <= 1000
    # a closed segment that lost its end (zeroed tail) is corruption too, not a torn write
    with open(path, "r+b") as f:
        f.seek(1000)
        f.write(bytes([byte]))
    size = os.path.getsize(path)
    _zero(path, size - 300, size)
    _assert_refused(d, path)


def test_zeroed_length_word_of_the_opening_crc_record_is_refused(pristine, tmp_path):
    src, tail, start, end = pristine
    d = _copy(src, tmp_path)
    path = os.path.join(d, tail)
    _zero(path, 0, 1)  # the CRC record's length word is 8: one flipped bit makes it 0
    _assert_refused(d, path, offset_hint=0)


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402


@settings(max_examples=int(os.environ.get("FASTKV_FUZZ_EXAMPLES", "80")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["bytes", "zeros", "truncate"]),
    pos=st.floats(0, 1),
    length=st.integers(1, 1500),
    values=st.binary(min_size=1, max_size=8),
    last_batch_only=st.booleans(),
)
def test_damage_never_yields_wrong_data(pristine, tmp_path, kind, pos, length, values, last_batch_only):
    """Whatever is done to the tail segment, open() either refuses with WALCorruptError or returns
    exactly entries 1..k -- never an altered, invented or reordered entry. When the damage is a
    torn write (zeros/truncation) confined to the last batch, nothing before it is lost."""
    src, tail, start, end = pristine
    d = _copy(src, tmp_path)
    path = os.path.join(d, tail)
    lo = start if last_batch_only else 0
    at = lo + int(pos * (end - lo - 1))
    if kind == "truncate":
        os.truncate(path, at)
    elif kind == "zeros" and last_batch_only:
        # a torn write is sector-granular: the batch's part of whole sectors never arrived
        s_lo, s_hi = at // SECTOR, (at + length) // SECTOR
        _zero(path, max(start, s_lo * SECTOR), min(end, (s_hi + 1) * SECTOR))
    else:
        hi = min(end, at + length) if last_batch_only else at + length
        with open(path, "r+b") as f:
            f.seek(at)
            f.write(bytes(hi - at) if kind == "zeros" else (values * (1 + (hi - at) // len(values)))[: hi - at])
    try:
        with WAL.open(d, segment_size=SEG) as w:
            _, _, ents = w.read_all()
    except WALCorruptError:
        assert not (last_batch_only and kind in ("zeros", "truncate")), "a torn last batch must be repaired"
        return
    assert ents == entries(1, len(ents))
    if last_batch_only and kind in ("zeros", "truncate"):
        assert len(ents) >= 50


def test_damaged_segment_header_is_refused_not_repaired(pristine, tmp_path):
    """The opening CRC + metadata records were fsynced before the segment existed under its name:
    a zeroed first sector is corruption, and the segment must be left as it is."""
    src, tail, start, end = pristine
    d = _copy(src, tmp_path)
    path = os.path.join(d, tail)
    _zero(path, 0, SECTOR)
    _assert_refused(d, path)
