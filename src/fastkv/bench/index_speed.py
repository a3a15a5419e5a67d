"""`fastkv bench index-speed`: the compiled revision index against its pure-Python twin.

Both implementations run the same workloads in the same process, interleaved (native, twin,
native, twin, ...). Each figure is the CPU time of the running thread (time.thread_time, so time
spent descheduled by other load on a shared machine does not count), best of --repeat runs. The
result is a ratio per workload: twin time / native time.

Workloads on N keys like "/registry/pods/00012345" inserted in scrambled order, one revision each:
  put_new        N puts of new keys into an empty index
  put_update     one more put on every key (keys already present)
  get            get(key, latest) on every key
  get_old        get(key, first revision) on every key after two updates (walks the history)
  revisions      revisions() over consecutive 100-key windows covering all keys
  range          range() over all keys at the latest revision (keys + revisions)
  count          count_revisions() over all keys
  range_since    range_since() over all keys from the last update's first revision
  compact        compact() at the latest revision of two (drops the older version of every key)
"""
from __future__ import annotations

import argparse
import math
import time

from fastkv.bench._common import Progress, add_json_flag, emit, machine_info

_STRIDE = 2654435761

WORKLOADS = ("put_new", "put_update", "get", "get_old", "revisions", "range", "count",
             "range_since", "compact")


def make_keys(n: int) -> list[bytes]:
    return [b"/registry/pods/%08d" % ((i * _STRIDE) % n) for i in range(n)]


class Workloads:
    """Builds the state each workload needs (untimed) and times only the operation itself."""

    def __init__(self, mod, keys: list[bytes]):
        self.mod = mod
        self.keys = keys
        self.sorted_keys = sorted(keys)
        self.n = len(keys)

    def _built(self, versions: int):
        idx = self.mod.TreeIndex()
        rev = 1
        for _ in range(versions):
            for k in self.keys:
                idx.put(k, rev, 0)
                rev += 1
        return idx, rev - 1

    def prepare(self, name: str):
        """Build the state workload `name` needs (untimed); return the zero-argument operation."""
        keys, n = self.keys, self.n
        if name == "put_new":
            idx = self.mod.TreeIndex()
            put = idx.put

            def op():
                for i, k in enumerate(keys):
                    put(k, i + 1, 0)
            return op
        if name == "put_update":
            idx, rev = self._built(1)
            put = idx.put

            def op():
                for i, k in enumerate(keys):
                    put(k, rev + 1 + i, 0)
            return op
        if name in ("get", "get_old"):
            idx, rev = self._built(1 if name == "get" else 3)
            get = idx.get
            at = rev if name == "get" else n

            def op():
                for k in keys:
                    get(k, at)
            return op
        if name == "revisions":
            idx, rev = self._built(1)
            sk = self.sorted_keys
            bounds = [(sk[i], sk[i + 100] if i + 100 < n else b"") for i in range(0, n, 100)]
            revisions = idx.revisions

            def op():
                for lo, hi in bounds:
                    revisions(lo, hi, rev)
            return op
        if name in ("range", "count"):
            idx, rev = self._built(1)
            fn = idx.range if name == "range" else idx.count_revisions
            return lambda: fn(b"/registry/pods/", b"/registry/pods0", rev)
        if name == "range_since":
            idx, rev = self._built(2)
            return lambda: idx.range_since(b"/registry/pods/", b"/registry/pods0", n + 1)
        if name == "compact":
            idx, rev = self._built(2)
            return lambda: idx.compact(rev)
        raise ValueError(f"unknown workload {name!r}")

    def time(self, name: str) -> float:
        """CPU seconds of one run of workload `name` (state built beforehand, untimed)."""
        op = self.prepare(name)
        t = time.thread_time()
        op()
        return time.thread_time() - t


def compare(n: int, repeat: int, workloads=WORKLOADS, progress: Progress | None = None) -> dict:
    """Best-of-`repeat` seconds per workload for both implementations, and twin/native ratios."""
    from fastkv._native import load

    native = load("revindex", pure=False)
    twin = load("revindex", pure=True)
    keys = make_keys(n)
    impls = {"native": Workloads(native, keys), "twin": Workloads(twin, keys)}
    best = {impl: {w: math.inf for w in workloads} for impl in impls}
    done = 0
    for _ in range(repeat):
        for w in workloads:
            for impl, wl in impls.items():
                best[impl][w] = min(best[impl][w], wl.time(w))
                done += 1
                if progress:
                    progress.update(done)
    ratios = {w: best["twin"][w] / best["native"][w] for w in workloads}
    return {
        "keys": n,
        "repeat": repeat,
        "native_ns_per_key": {w: best["native"][w] / n * 1e9 for w in workloads},
        "twin_ns_per_key": {w: best["twin"][w] / n * 1e9 for w in workloads},
        "ratio_twin_over_native": ratios,
        "geomean_ratio": math.exp(sum(math.log(r) for r in ratios.values()) / len(ratios)),
    }


def run(args) -> int:
    workloads = args.workload or list(WORKLOADS)
    progress = Progress("index-speed", args.repeat * len(workloads) * 2)
    res = compare(args.keys, args.repeat, workloads, progress)
    progress.close()
    res["machine"] = machine_info()
    print(f"revision index: compiled vs pure-Python twin, {args.keys} keys, best of {args.repeat} "
          f"(interleaved, same process, thread CPU time)")
    print(f"  {'workload':<12} {'native ns/key':>14} {'twin ns/key':>12} {'twin/native':>12}")
    for w in workloads:
        print(f"  {w:<12} {res['native_ns_per_key'][w]:>14.1f} {res['twin_ns_per_key'][w]:>12.1f} "
              f"{res['ratio_twin_over_native'][w]:>11.1f}x")
    print(f"  geometric mean ratio: {res['geomean_ratio']:.1f}x")
    emit(res, args.json)
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "index-speed",
        help="compiled revision index vs its pure-Python twin (ratios per workload)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--keys", type=int, default=100_000, help="keys per workload (default 100000)")
    p.add_argument("--repeat", type=int, default=5, help="runs per workload; best is kept (default 5)")
    p.add_argument("--workload", action="append", choices=WORKLOADS,
                   help="run only this workload (repeatable; default: all)")
    add_json_flag(p)
    p.set_defaults(func=run)
