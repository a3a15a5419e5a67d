"""bbolt database files (go.etcd.io/bbolt, file format version 2): a writer and a checking reader.

etcd's backend is a bbolt file and an etcd snapshot is that file, so this is what lets fastkv hand
out snapshots that `etcdctl snapshot status/restore` and real etcd can read. Written from bbolt's
documented on-disk layout; everything is little-endian and packed:

    page      = header {id u64, flags u16, count u16, overflow u32} (16 bytes) then the body.
                A page of `overflow` extra pages occupies 1 + overflow consecutive page slots.
    meta      = pages 0 and 1: {magic u32 = 0xED0CDAED, version u32 = 2, page size u32, flags u32,
                root bucket {root pgid u64, sequence u64}, freelist pgid u64, high-water pgid u64,
                txid u64, checksum u64 = FNV-1a 64 of the fields before it}. A reader takes the
                valid meta with the higher txid.
    freelist  = count (0xFFFF means: the real count is the first u64) then sorted free pgids.
    branch    = count elements {pos u32, ksize u32, child pgid u64}; each element's key is the first
                key of its child subtree; `pos` counts from the element itself to its key bytes.
    leaf      = count elements {flags u32, pos u32, ksize u32, vsize u32}, key and value adjacent.
                flags = 1 marks a sub-bucket: the value is a bucket header {root pgid u64,
                sequence u64}; root = 0 means the bucket is "inline": a leaf page (header with id 0)
                follows the header inside the value.

The writer lays a file out the way a fresh compaction would: pages 0-1 meta, page 2 an empty
freelist, then every bucket's pages bottom-up (leaves in key order, then each branch level), then
the root tree; no free pages, so bbolt's consistency check (every page below the high-water mark
reachable or free) holds by construction. Small buckets are written inline exactly when bbolt would
inline them (a leaf of plain keys whose page would be at most page_size / 4 bytes).

The reader is deliberately independent of the writer's layout choices (it follows pointers and
checks what bbolt's `tx.Check` checks); tests use it as one judge, real etcd as the other.
"""
from __future__ import annotations

import io
import os
import struct
from typing import BinaryIO, Iterable, Mapping

PAGE_SIZE = 4096
MAGIC = 0xED0CDAED
VERSION = 2
MAX_KEY_SIZE = 32768            # bbolt's MaxKeySize
MAX_VALUE_SIZE = (1 << 31) - 2  # bbolt's MaxValueSize

BRANCH_PAGE, LEAF_PAGE, META_PAGE, FREELIST_PAGE = 0x01, 0x02, 0x04, 0x10
BUCKET_LEAF_FLAG = 0x01
NO_FREELIST = 0xFFFFFFFFFFFFFFFF  # meta.freelist when the freelist is not synced to disk

_PAGE_HEADER = struct.Struct("<QHHI")
_BRANCH_ELEMENT = struct.Struct("<IIQ")
_LEAF_ELEMENT = struct.Struct("<IIII")
_BUCKET_HEADER = struct.Struct("<QQ")
_META = struct.Struct("<IIIIQQQQQ")  # magic .. txid: the checksummed part (56 bytes)
_U64 = struct.Struct("<Q")
HEADER_SIZE = _PAGE_HEADER.size      # 16
ELEMENT_SIZE = _LEAF_ELEMENT.size    # 16, the same for branch elements
FREELIST_PGID = 2
FIRST_DATA_PGID = 3

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1


class BboltError(ValueError):
    """The file is not a bbolt database this module can read, or it fails the consistency check."""


def fnv1a_64(data: bytes) -> int:
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _MASK64
    return h


# --- writer ------------------------------------------------------------------------------------

Items = Iterable[tuple[bytes, bytes]]


def write_bbolt(target: str | os.PathLike | BinaryIO, buckets: Mapping[bytes, Items], *,
                page_size: int = PAGE_SIZE, txid: int = 1) -> int:
    """Write a bbolt file holding `buckets` (name -> (key, value) pairs) as top-level buckets.

    Each bucket's items must be in strictly increasing byte order of key (bbolt's order) and keys
    must be non-empty; items may be any iterable, consumed once, so a caller can stream a large
    bucket without holding it. A violation raises ValueError (or TypeError) when the writer reaches it,
    leaving a partial, unusable file behind.
    `target` is a path (the file is created, written and fsynced) or a binary file object (written
    from its current position; not fsynced: the caller owns it). Returns the bytes written, always a
    multiple of `page_size`. `txid` is the transaction id recorded in the meta pages.
    """
    if isinstance(target, (str, os.PathLike)):
        with open(target, "wb") as f:
            n = write_bbolt(f, buckets, page_size=page_size, txid=txid)
            f.flush()
            os.fsync(f.fileno())
        return n
    seekable = getattr(target, "seekable", lambda: False)()
    if not seekable:
        buf = io.BytesIO()
        n = write_bbolt(buf, buckets, page_size=page_size, txid=txid)
        target.write(buf.getbuffer())
        return n
    if page_size < 1024 or page_size & (page_size - 1):
        raise ValueError("page size must be a power of two >= 1024")
    for name in buckets:
        _check_key(name, "bucket name")
    w = _PageWriter(target, page_size)
    # pages 0-2 (two metas, the freelist) are written last, when the root and the high-water mark
    # are known; reserve them now so data pages go out in pgid order
    target.write(bytes(FIRST_DATA_PGID * page_size))
    root_elements = []
    for name in sorted(buckets):
        root_elements.append((BUCKET_LEAF_FLAG, bytes(name), w.write_bucket(buckets[name])))
    root = w.write_tree(root_elements)
    high_water = w.next_pgid
    end = target.tell()
    target.seek(w.start)
    for pgid in (0, 1):
        target.write(_meta_page(pgid, page_size, root, high_water, _meta_txid(txid, pgid)))
    target.write(_page(FREELIST_PGID, FREELIST_PAGE, 0, b"", page_size))
    target.seek(end)
    return end - w.start


def _meta_txid(txid: int, pgid: int) -> int:
    """The txid stored on meta page `pgid`: `txid` on the page bbolt would have written it to
    (txid % 2), txid - 1 on the other one (the previous transaction)."""
    return txid if txid % 2 == pgid else max(txid - 1, 0)


def _meta_page(pgid: int, page_size: int, root: int, high_water: int, txid: int) -> bytes:
    fields = _META.pack(MAGIC, VERSION, page_size, 0, root, 0, FREELIST_PGID, high_water, txid)
    body = fields + _U64.pack(fnv1a_64(fields))
    return _page(pgid, META_PAGE, 0, body, page_size)


def _page(pgid: int, flags: int, count: int, body: bytes, page_size: int, overflow: int = 0) -> bytes:
    raw = _PAGE_HEADER.pack(pgid, flags, count, overflow) + body
    return raw + bytes((overflow + 1) * page_size - len(raw))


def _check_key(key, what: str = "key") -> None:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes, not {type(key).__name__}")
    if len(key) == 0:
        raise ValueError(f"{what} is empty (bbolt keys are non-empty)")
    if len(key) > MAX_KEY_SIZE:
        raise ValueError(f"{what} is {len(key)} bytes, over bbolt's {MAX_KEY_SIZE}")


def _node_body(flags_keys_values: list, leaf: bool) -> bytes:
    """Elements then their key (and value) bytes, with each element's pos relative to itself."""
    n = len(flags_keys_values)
    heads = []
    data = []
    offset = n * ELEMENT_SIZE  # where the first key starts, counted from the first element
    for i, (flags, key, value) in enumerate(flags_keys_values):
        pos = offset - i * ELEMENT_SIZE
        if leaf:
            heads.append(_LEAF_ELEMENT.pack(flags, pos, len(key), len(value)))
            data.append(key)
            data.append(value)
            offset += len(key) + len(value)
        else:  # branch: value is the child pgid
            heads.append(_BRANCH_ELEMENT.pack(pos, len(key), value))
            data.append(key)
            offset += len(key)
    return b"".join(heads) + b"".join(data)


class _PageWriter:
    """Hands out pgids in file order and writes each page as soon as it is complete."""

    def __init__(self, f: BinaryIO, page_size: int):
        self.f = f
        self.page_size = page_size
        self.start = f.tell()
        self.next_pgid = FIRST_DATA_PGID

    def _emit(self, flags: int, elements: list, size: int) -> int:
        pgid = self.next_pgid
        overflow = (size + self.page_size - 1) // self.page_size - 1
        body = _node_body(elements, leaf=flags == LEAF_PAGE)
        self.f.write(_page(pgid, flags, len(elements), body, self.page_size, overflow))
        self.next_pgid += overflow + 1
        return pgid

    def write_bucket(self, items: Items) -> bytes:
        """Write one bucket's pages (unless it is inline) and return its value in the parent."""
        inline_limit = self.page_size // 4
        head: list = []
        size = HEADER_SIZE
        it = iter(items)
        prev = None
        for key, value in it:
            prev = _check_order(prev, key, value)
            head.append((0, bytes(key), bytes(value)))
            size += ELEMENT_SIZE + len(key) + len(value)
            if size > inline_limit:
                break
        else:
            # inline: the bucket header with root 0, then a leaf page with id 0 inside the value
            body = _node_body(head, leaf=True)
            return _BUCKET_HEADER.pack(0, 0) + _PAGE_HEADER.pack(0, LEAF_PAGE, len(head), 0) + body

        def rest():
            nonlocal prev
            yield from head
            for key, value in it:
                prev = _check_order(prev, key, value)
                yield 0, bytes(key), bytes(value)

        return _BUCKET_HEADER.pack(self.write_tree(rest()), 0)

    def write_tree(self, elements: Iterable[tuple[int, bytes, bytes]]) -> int:
        """Pack leaf elements (flags, key, value) into leaves, then branch levels; returns the root
        pgid. A leaf takes elements while they fit in one page; an element that alone exceeds a
        page gets a leaf of its own with overflow pages (as bbolt stores large values)."""
        level: list = []  # (first key, pgid) of each page of the level being built
        page: list = []
        size = HEADER_SIZE
        for flags, key, value in elements:
            esize = ELEMENT_SIZE + len(key) + len(value)
            if page and size + esize > self.page_size:
                level.append((page[0][1], self._emit(LEAF_PAGE, page, size)))
                page, size = [], HEADER_SIZE
            page.append((flags, key, value))
            size += esize
        if page or not level:  # an empty tree is one empty leaf, as in a fresh bbolt file
            level.append((page[0][1] if page else b"", self._emit(LEAF_PAGE, page, size)))
        while len(level) > 1:
            upper: list = []
            page, size = [], HEADER_SIZE
            for first_key, child in level:
                esize = ELEMENT_SIZE + len(first_key)
                # at least two children per branch page, so every level really narrows
                if len(page) >= 2 and size + esize > self.page_size:
                    upper.append((page[0][1], self._emit(BRANCH_PAGE, page, size)))
                    page, size = [], HEADER_SIZE
                page.append((0, first_key, child))
                size += esize
            upper.append((page[0][1], self._emit(BRANCH_PAGE, page, size)))
            level = upper
        return level[0][1]


def _check_order(prev, key, value):
    _check_key(key)
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"value must be bytes, not {type(value).__name__}")
    if len(value) > MAX_VALUE_SIZE:
        raise ValueError(f"value of {len(value)} bytes is over bbolt's {MAX_VALUE_SIZE}")
    if prev is not None and bytes(key) <= prev:
        raise ValueError(f"keys out of order or repeated: {bytes(key)!r} after {prev!r}")
    return bytes(key)


# --- reader ------------------------------------------------------------------------------------

def read_bbolt(source: str | os.PathLike | bytes | bytearray | memoryview) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """Top-level buckets of a bbolt file (or its bytes) -> their (key, value) pairs in key order.

    Raises BboltError when the file fails the checks `check_bbolt` makes. An entry that is itself a
    nested bucket is returned with its raw bucket-header value (etcd uses no nested buckets). Extra
    bytes after the last page (etcd's snapshot SHA-256 trailer) are ignored."""
    r = _Reader(_load(source))
    problems = r.check()
    if problems:
        raise BboltError("; ".join(problems[:10]))
    return r.contents


def check_bbolt(source) -> list[str]:
    """What bbolt's tx.Check would report, as messages; [] means the file is consistent: a valid
    meta, every page below the high-water mark reachable exactly once or free, pages of the right
    type and id, keys in strictly increasing order, branch keys equal to their child's first key."""
    try:
        return _Reader(_load(source)).check()
    except BboltError as exc:
        return [str(exc)]


def read_meta(source) -> dict:
    """The meta bbolt would use (the valid one with the higher txid), as a dict."""
    return dict(_Reader(_load(source)).meta)


def _load(source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    with open(source, "rb") as f:
        return f.read()


class _Reader:
    """Follows the pointers of a bbolt file from its meta page, recording what it finds."""

    def __init__(self, data: bytes):
        self.data = data
        if len(data) < 2 * 1024:
            raise BboltError(f"file of {len(data)} bytes is too small for two meta pages")
        # meta 0 starts the file and names the page size; if it is torn, find meta 1 by trying the
        # page sizes bbolt could have used
        first = self._parse_meta(0, 0)
        sizes = [first["page_size"]] if first else [1024 << i for i in range(7)]
        metas = []
        for page_size in sizes:
            metas = [m for m in (first, self._parse_meta(page_size, 1)) if m and m["page_size"] == page_size]
            if metas:
                self.page_size = page_size
                break
        if not metas:
            raise BboltError("no valid meta page (bad magic, version or checksum)")
        self.meta = max(metas, key=lambda m: m["txid"])
        self.contents: dict[bytes, list[tuple[bytes, bytes]]] = {}

    def _parse_meta(self, offset: int, pgid: int):
        if offset + HEADER_SIZE + _META.size + 8 > len(self.data):
            return None
        _pid, flags, _count, _overflow = _PAGE_HEADER.unpack_from(self.data, offset)
        fields = self.data[offset + HEADER_SIZE: offset + HEADER_SIZE + _META.size]
        magic, version, page_size, mflags, root, seq, freelist, high_water, txid = _META.unpack(fields)
        (checksum,) = _U64.unpack_from(self.data, offset + HEADER_SIZE + _META.size)
        if flags != META_PAGE or magic != MAGIC or version != VERSION or checksum != fnv1a_64(fields):
            return None
        return {"page_size": page_size, "flags": mflags, "root": root, "sequence": seq, "freelist": freelist,
                "pgid": high_water, "txid": txid, "meta_page": pgid}

    def _elements(self, base: int, flags: int, count: int, limit: int, problems: list) -> list:
        """Elements of the node whose header starts at byte `base` and whose bytes end at `limit`:
        leaf -> (flags, key, value start, value end); branch -> (0, key, child pgid)."""
        out = []
        for i in range(count):
            e = base + HEADER_SIZE + i * ELEMENT_SIZE
            if e + ELEMENT_SIZE > limit:
                problems.append(f"node at byte {base}: {count} elements do not fit")
                break
            if flags == LEAF_PAGE:
                eflags, pos, ksize, vsize = _LEAF_ELEMENT.unpack_from(self.data, e)
                k = e + pos
                if k + ksize + vsize > limit:
                    problems.append(f"node at byte {base}: element {i} runs past its page")
                    break
                out.append((eflags, self.data[k:k + ksize], k + ksize, k + ksize + vsize))
            else:
                pos, ksize, child = _BRANCH_ELEMENT.unpack_from(self.data, e)
                k = e + pos
                if k + ksize > limit:
                    problems.append(f"node at byte {base}: element {i} runs past its page")
                    break
                out.append((0, self.data[k:k + ksize], child))
        return out

    def check(self) -> list[str]:
        problems: list[str] = []
        high_water = self.meta["pgid"]
        if high_water * self.page_size > len(self.data):
            return [f"high-water mark {high_water} is past the end of the file"]
        reachable: set[int] = {0, 1}
        freed: set[int] = set()
        fl = self.meta["freelist"]
        if fl != NO_FREELIST:
            if fl >= high_water:
                return [f"freelist page {fl} is out of bounds: {high_water}"]
            pid, flags, count, overflow = _PAGE_HEADER.unpack_from(self.data, fl * self.page_size)
            if flags != FREELIST_PAGE or pid != fl:
                problems.append(f"page {fl}: not a freelist page")
            else:
                base = fl * self.page_size + HEADER_SIZE
                first = 0
                if count == 0xFFFF:  # the real count is the first id slot
                    count, first = _U64.unpack_from(self.data, base)[0], 1
                for j in range(first, first + count):
                    pg = _U64.unpack_from(self.data, base + 8 * j)[0]
                    if pg in freed:
                        problems.append(f"page {pg}: already freed")
                    freed.add(pg)
                reachable.update(range(fl, fl + overflow + 1))
        self._walk_bucket(b"", self.meta["root"], None, 0, reachable, problems, high_water)
        for pg in range(high_water):
            # with no freelist on disk bbolt rebuilds it from exactly the unreachable pages
            if pg not in reachable and pg not in freed and fl != NO_FREELIST:
                problems.append(f"page {pg}: unreachable unfreed")
        return problems

    def _walk_bucket(self, name, root, inline_span, depth, reachable, problems, high_water) -> None:
        items: list = []
        if root == 0:
            if inline_span is None or inline_span[0] + HEADER_SIZE > inline_span[1]:
                problems.append(f"bucket {name!r}: root 0 and no inline page")
                return
            base, limit = inline_span
            _pid, flags, count, _ov = _PAGE_HEADER.unpack_from(self.data, base)
            if flags != LEAF_PAGE:
                problems.append(f"bucket {name!r}: inline page is not a leaf ({flags:#x})")
                return
            items = self._elements(base, flags, count, limit, problems)
        else:
            self._walk_page(root, None, items, reachable, problems, high_water)
        for i in range(1, len(items)):
            if items[i][1] <= items[i - 1][1]:
                problems.append(f"bucket {name!r}: key {items[i][1]!r} out of order after {items[i - 1][1]!r}")
                break
        for eflags, key, vstart, vend in items:
            if eflags & BUCKET_LEAF_FLAG:
                if vend - vstart < _BUCKET_HEADER.size:
                    problems.append(f"bucket {key!r}: header of {vend - vstart} bytes")
                    continue
                sub_root, _seq = _BUCKET_HEADER.unpack_from(self.data, vstart)
                span = (vstart + _BUCKET_HEADER.size, vend) if sub_root == 0 else None
                self._walk_bucket(key, sub_root, span, depth + 1, reachable, problems, high_water)
        if depth == 1:  # a top-level bucket: what read_bbolt returns
            self.contents[bytes(name)] = [(bytes(k), self.data[s:e]) for _f, k, s, e in items]

    def _walk_page(self, pgid, branch_key, items, reachable, problems, high_water) -> None:
        if pgid < FIRST_DATA_PGID - 1 or pgid >= high_water:
            problems.append(f"page {pgid}: out of bounds: {high_water}")
            return
        pid, flags, count, overflow = _PAGE_HEADER.unpack_from(self.data, pgid * self.page_size)
        if pid != pgid:
            problems.append(f"page {pgid}: its header says page {pid}")
        for pg in range(pgid, pgid + overflow + 1):
            if pg in reachable:
                problems.append(f"page {pg}: multiple references")
            reachable.add(pg)
        if pgid + overflow >= high_water:
            problems.append(f"page {pgid}: {overflow} overflow pages run past the high-water mark")
            return
        if flags not in (BRANCH_PAGE, LEAF_PAGE):
            problems.append(f"page {pgid}: invalid type: {flags:#x}")
            return
        base = pgid * self.page_size
        elements = self._elements(base, flags, count, base + (overflow + 1) * self.page_size, problems)
        if branch_key is not None and elements and bytes(elements[0][1]) != branch_key:
            problems.append(f"page {pgid}: first key {bytes(elements[0][1])!r} is not its branch key {branch_key!r}")
        if flags == LEAF_PAGE:
            items.extend(elements)
            return
        if not elements:
            problems.append(f"page {pgid}: empty branch page")
        for _f, key, child in elements:
            self._walk_page(child, bytes(key), items, reachable, problems, high_water)
