"""The in-memory revision index (etcd's treeIndex of keyIndex). Pure-Python twin: the contract.

`revindex.pyx` must expose the same names and behaviour; tests run both and compare them.

A revision is (main, sub): main int64 > 0, sub int32 >= 0, ordered lexicographically. Each user key
maps to a list of *generations*; a generation is the life of the key from its creation (a put on a
missing or deleted key, or a restore) to its deletion (a tombstone, which is the generation's last
revision). This twin mirrors etcd's keyIndex layout on purpose, so that it stays a faithful oracle:
a closed generation is followed by an empty one, exactly like etcd's `{empty}` generation.

Compaction follows etcd v3.4 (the reference etcd on this machine, 3.4.23): a generation whose
tombstone is at or below the compaction revision is dropped whole, tombstone included, so
`compact(rev)` and `keep(rev)` return the same set. (etcd 3.6 keeps a tombstone sitting exactly at
the compaction revision; we deliberately match the 3.4 reference.)

Contract violations that etcd treats as panics (a revision not above the key's last one, restoring
over a live generation, non-positive main, negative sub) raise ValueError and leave state untouched.
"""
from __future__ import annotations

from sortedcontainers import SortedDict

__all__ = ["TreeIndex", "RevisionNotFoundError"]

_INT64_MAX = (1 << 63) - 1
_INT32_MAX = (1 << 31) - 1


class RevisionNotFoundError(KeyError):
    """etcd's ErrRevisionNotFound: the key is absent or deleted at the asked revision."""

    def __init__(self, msg: str = "mvcc: revision not found"):
        super().__init__(msg)


def _as_key(key) -> bytes:
    """bytes, or a copy of any bytes-like object (ints and str are refused with TypeError)."""
    if type(key) is bytes:
        return key
    return bytes(memoryview(key))


def _check_rev(main: int, sub: int) -> None:
    if not (0 < main <= _INT64_MAX):
        raise ValueError(f"main revision must be in 1..2**63-1, got {main}")
    if not (0 <= sub <= _INT32_MAX):
        raise ValueError(f"sub revision must be in 0..2**31-1, got {sub}")


class _Generation:
    """One life of a key. `ver` counts every revision ever appended (as etcd's generation.ver), so
    the version of revs[i] is ver - (len(revs) - 1 - i) even after compaction trimmed revs."""

    __slots__ = ("ver", "created", "revs")

    def __init__(self, ver: int = 0, created: tuple[int, int] = (0, 0), revs=None):
        self.ver = ver
        self.created = created
        self.revs: list[tuple[int, int]] = revs if revs is not None else []


class _KeyIndex:
    __slots__ = ("modified", "generations")

    def __init__(self):
        self.modified = (0, 0)
        self.generations: list[_Generation] = [_Generation()]

    def is_empty(self) -> bool:
        return len(self.generations) == 1 and not self.generations[0].revs

    def put(self, rev: tuple[int, int]) -> None:
        g = self.generations[-1]
        if not g.revs:
            g.created = rev
        g.revs.append(rev)
        g.ver += 1
        self.modified = rev

    def find_generation(self, at_rev: int) -> _Generation | None:
        """The generation alive at at_rev, or None when at_rev falls in a gap (deleted/absent)."""
        gens = self.generations
        last = len(gens) - 1
        for i in range(last, -1, -1):
            g = gens[i]
            if not g.revs:
                continue
            if i != last and g.revs[-1][0] <= at_rev:
                return None  # the key's latest generation before at_rev ended at or before at_rev
            if g.revs[0][0] <= at_rev:
                return g
        return None

    def get(self, at_rev: int):
        g = self.find_generation(at_rev)
        if g is None:
            raise RevisionNotFoundError()
        revs = g.revs
        for n in range(len(revs) - 1, -1, -1):
            if revs[n][0] <= at_rev:
                return revs[n], g.created, g.ver - (len(revs) - n - 1)
        raise RevisionNotFoundError()

    def since(self, rev: int) -> list[tuple[int, int]]:
        """Revisions with main >= rev; of several revisions sharing one main, only the last."""
        out: list[tuple[int, int]] = []
        last_main = 0
        for g in self.generations:
            for r in g.revs:
                if r[0] < rev:
                    continue
                if r[0] == last_main:
                    out[-1] = r
                    continue
                out.append(r)
                last_main = r[0]
        return out

    def _do_compact(self, at_rev: int, available: set) -> tuple[int, int]:
        gens = self.generations
        gen_idx = 0
        # first generation that still holds at_rev or was created after it; the last one otherwise
        while gen_idx < len(gens) - 1:
            if gens[gen_idx].revs[-1][0] > at_rev:
                break
            gen_idx += 1
        g = gens[gen_idx]
        rev_idx = -1
        for n in range(len(g.revs) - 1, -1, -1):
            if g.revs[n][0] <= at_rev:
                rev_idx = n
                available.add(g.revs[n])
                break
        return gen_idx, rev_idx

    def compact(self, at_rev: int, available: set) -> None:
        gen_idx, rev_idx = self._do_compact(at_rev, available)
        g = self.generations[gen_idx]
        if g.revs:
            if rev_idx != -1:
                del g.revs[:rev_idx]
            # a closed generation reduced to its tombstone is dropped (etcd v3.4 rule)
            if len(g.revs) == 1 and gen_idx != len(self.generations) - 1:
                available.discard(g.revs[0])
                gen_idx += 1
        del self.generations[:gen_idx]

    def keep(self, at_rev: int, available: set) -> None:
        if self.is_empty():
            return
        gen_idx, rev_idx = self._do_compact(at_rev, available)
        g = self.generations[gen_idx]
        if g.revs and rev_idx == len(g.revs) - 1 and gen_idx != len(self.generations) - 1:
            available.discard(g.revs[rev_idx])


class TreeIndex:
    """key (bytes) -> revision history, ordered by key. Not thread-safe: callers serialize."""

    def __init__(self) -> None:
        self._tree: SortedDict = SortedDict()

    def __len__(self) -> int:
        return len(self._tree)

    # -- writes ---------------------------------------------------------------------------------

    def put(self, key: bytes, main: int, sub: int) -> None:
        _check_rev(main, sub)
        key = _as_key(key)
        ki = self._tree.get(key)
        if ki is None:
            ki = _KeyIndex()
            ki.put((main, sub))
            self._tree[key] = ki
            return
        if (main, sub) <= ki.modified:
            raise ValueError(f"put with revision {(main, sub)} not above {ki.modified} for {key!r}")
        ki.put((main, sub))

    def put_versioned(self, key: bytes, main: int, sub: int) -> tuple[int, int]:
        """put(), returning (created_main, version) of the key after it (one call for the MVCC write
        path, no exception for a new key)."""
        try:
            _mod, created, ver = self.get(key, main)
            out = (created[0], ver + 1)
        except RevisionNotFoundError:
            out = (main, 1)
        self.put(key, main, sub)
        return out

    def tombstone(self, key: bytes, main: int, sub: int) -> None:
        _check_rev(main, sub)
        ki = self._tree.get(_as_key(key))
        if ki is None or not ki.generations[-1].revs:
            raise RevisionNotFoundError()
        if (main, sub) <= ki.modified:
            raise ValueError(f"tombstone with revision {(main, sub)} not above {ki.modified} for {key!r}")
        ki.put((main, sub))
        ki.generations.append(_Generation())

    def restore(self, key: bytes, created_main: int, main: int, sub: int, version: int) -> None:
        _check_rev(main, sub)
        if not (0 < created_main <= main):
            raise ValueError(f"created_main must be in 1..main, got {created_main} (main {main})")
        if not (1 <= version <= _INT64_MAX):
            raise ValueError(f"version must be >= 1, got {version}")
        key = _as_key(key)
        ki = self._tree.get(key)
        if ki is None:
            ki = _KeyIndex()
            self._tree[key] = ki
        else:
            if ki.generations[-1].revs:
                raise ValueError(f"restore over a live generation of {key!r}")
            if (main, sub) <= ki.modified:
                raise ValueError(f"restore with revision {(main, sub)} not above {ki.modified} for {key!r}")
        g = ki.generations[-1]
        g.created = (created_main, 0)
        g.ver = version
        g.revs.append((main, sub))
        ki.modified = (main, sub)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, key: bytes, at_rev: int):
        ki = self._tree.get(_as_key(key))
        if ki is None:
            raise RevisionNotFoundError()
        return ki.get(at_rev)

    def _visit(self, key: bytes, end: bytes):
        """Key indexes in [key, end); end == b'' means no upper bound."""
        tree = self._tree
        if end and key >= end:
            return
        keys = tree.irange(key, end if end else None, inclusive=(True, False))
        for k in keys:
            yield k, tree[k]

    def revisions(self, key: bytes, end: bytes | None, at_rev: int, limit: int = 0):
        key = _as_key(key)
        if end is None:
            try:
                rev = self.get(key, at_rev)[0]
            except RevisionNotFoundError:
                return [], 0
            return [rev], 1
        revs: list[tuple[int, int]] = []
        total = 0
        for _, ki in self._visit(key, _as_key(end)):
            try:
                rev = ki.get(at_rev)[0]
            except RevisionNotFoundError:
                continue
            if limit <= 0 or len(revs) < limit:
                revs.append(rev)
            total += 1
        return revs, total

    def count_revisions(self, key: bytes, end: bytes | None, at_rev: int) -> int:
        return self.revisions(key, end, at_rev, 1)[1]

    def range(self, key: bytes, end: bytes | None, at_rev: int):
        key = _as_key(key)
        if end is None:
            try:
                rev = self.get(key, at_rev)[0]
            except RevisionNotFoundError:
                return [], []
            return [key], [rev]
        keys: list[bytes] = []
        revs: list[tuple[int, int]] = []
        for k, ki in self._visit(key, _as_key(end)):
            try:
                rev = ki.get(at_rev)[0]
            except RevisionNotFoundError:
                continue
            keys.append(k)
            revs.append(rev)
        return keys, revs

    def range_since(self, key: bytes, end: bytes | None, rev: int):
        key = _as_key(key)
        if end is None:
            ki = self._tree.get(key)
            return ki.since(rev) if ki is not None else []
        out: list[tuple[int, int]] = []
        for _, ki in self._visit(key, _as_key(end)):
            out.extend(ki.since(rev))
        out.sort()
        return out

    # -- compaction -----------------------------------------------------------------------------

    def compact(self, rev: int) -> set:
        available: set = set()
        emptied = []
        for k, ki in self._tree.items():
            ki.compact(rev, available)
            if ki.is_empty():
                emptied.append(k)
        for k in emptied:
            del self._tree[k]
        return available

    def keep(self, rev: int) -> set:
        available: set = set()
        for ki in self._tree.values():
            ki.keep(rev, available)
        return available

    # -- introspection (tests, debugging) --------------------------------------------------------

    def dump(self) -> list:
        """Every key with its non-empty generations as (created, version_of_first_rev, revs, closed),
        in key order. The same shape from both implementations, for differential tests."""
        out = []
        for k, ki in self._tree.items():
            gens = []
            last = len(ki.generations) - 1
            for i, g in enumerate(ki.generations):
                if not g.revs:
                    continue
                gens.append((g.created, g.ver - len(g.revs) + 1, list(g.revs), i != last))
            out.append((k, gens))
        return out
