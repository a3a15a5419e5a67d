"""`fastkv bench index-memory`: memory of the revision index per key and per extra version.

Each measurement runs in a fresh child process (`python -m fastkv.bench.index_memory --child ...`)
so that allocator state left by earlier work cannot bleed into the figures. The child builds the
index in two phases and reads its own memory after each:

  phase 1: N distinct keys, one put each           -> bytes per key
  phase 2: V-1 more puts on every key              -> bytes per extra version

Method (stated in the output):
- compiled index: glibc mallinfo2() "uordblks + hblkhd" (bytes in use in malloc'd chunks, including
  malloc's own per-chunk overhead, plus mmap'd large blocks such as the hash table). This counts the
  C allocations the index makes and nothing else the interpreter might page in.
- pure-Python twin: tracemalloc's traced total (every Python object it holds).
- both: resident set size (psutil) growth, as a coarse cross-check that includes page granularity.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys

from fastkv.bench._common import Progress, add_json_flag, emit, machine_info

# etcd's documented figures (not measured here): ~120 bytes per key plus the key, ~30 per version
ETCD_DOC_BYTES_PER_KEY_BEYOND_KEY = 120
ETCD_DOC_BYTES_PER_EXTRA_VERSION = 30
_STRIDE = 2654435761  # a prime: i * _STRIDE mod n visits every key once, in scrambled order


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")
    ]


def _malloc_in_use() -> int:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def _keys(n: int, size: int, order: str):
    """n distinct keys of exactly `size` bytes (ASCII digits padded with 'k'), in the given order."""
    width = len(str(n - 1)) if n > 1 else 1
    if size < width:
        raise SystemExit(f"--key-size {size} is too small for {n} distinct decimal keys (need {width})")
    pad = b"k" * (size - width)
    for i in range(n):
        j = i if order == "sorted" or n < 2 else (i * _STRIDE) % n
        yield pad + b"%0*d" % (width, j)


def _child(args) -> dict:
    import gc
    import tracemalloc

    import psutil

    from fastkv._native import is_compiled, load

    mod = load("revindex", pure=(args.impl == "twin"))
    if args.impl == "native" and not is_compiled(mod):
        raise SystemExit("the compiled revindex is not built (python setup.py build_ext --inplace)")
    proc = psutil.Process()
    if args.impl == "twin":
        tracemalloc.start()
        measure = lambda: tracemalloc.get_traced_memory()[0]  # noqa: E731
        method = "tracemalloc traced bytes"
    else:
        measure = _malloc_in_use
        method = "glibc mallinfo2 uordblks+hblkhd"
    n, versions = args.keys, args.versions
    total = n * versions
    progress = Progress(f"index-memory {args.impl} building", total)
    gc.collect()
    idx = mod.TreeIndex()
    rss0, mem0 = proc.memory_info().rss, measure()
    rev, sub = args.start_revision, args.sub
    for key in _keys(n, args.key_size, args.order):
        idx.put(key, rev, sub)
        rev += 1
        if rev & 0xFFFF == 0:
            progress.update(rev)
    gc.collect()
    rss1, mem1 = proc.memory_info().rss, measure()
    for _ in range(versions - 1):
        for key in _keys(n, args.key_size, args.order):
            idx.put(key, rev, sub)
            rev += 1
            if rev & 0xFFFF == 0:
                progress.update(rev)
    gc.collect()
    rss2, mem2 = proc.memory_info().rss, measure()
    progress.close()
    assert len(idx) == n
    extra = n * (versions - 1)
    per_key = (mem1 - mem0) / n
    return {
        "impl": args.impl,
        "method": method,
        "keys": n,
        "versions": versions,
        "key_size": args.key_size,
        "order": args.order,
        "start_revision": args.start_revision,
        "sub": args.sub,
        "bytes_per_key": per_key,
        "bytes_per_key_beyond_key": per_key - args.key_size,
        "bytes_per_extra_version": (mem2 - mem1) / extra if extra else None,
        "rss_bytes_per_key": (rss1 - rss0) / n,
        "rss_bytes_per_extra_version": (rss2 - rss1) / extra if extra else None,
    }


def _measure(args, impl: str) -> dict:
    """One measurement in a fresh child process."""
    import fastkv

    cmd = [sys.executable, "-m", "fastkv.bench.index_memory", "--child", "--impl", impl,
           "--keys", str(args.keys), "--versions", str(args.versions),
           "--key-size", str(args.key_size), "--order", args.order,
           "--start-revision", str(args.start_revision), "--sub", str(args.sub)]
    # the child imports this very fastkv tree, and inherits stderr for the progress line
    env = os.environ.copy()
    src = os.path.dirname(os.path.dirname(os.path.abspath(fastkv.__file__)))
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(args) -> int:
    if args.keys < 1 or args.versions < 1:
        raise SystemExit("--keys and --versions must be >= 1")
    res = _measure(args, args.impl)
    res["etcd_documented_bytes_per_key_beyond_key"] = ETCD_DOC_BYTES_PER_KEY_BEYOND_KEY
    res["etcd_documented_bytes_per_extra_version"] = ETCD_DOC_BYTES_PER_EXTRA_VERSION
    res["machine"] = machine_info()
    print(f"revision index memory ({res['impl']}, {res['keys']} keys of {res['key_size']} bytes, "
          f"{res['versions']} version(s) each, {res['order']} insert order, revisions from "
          f"({res['start_revision']}, {res['sub']}))")
    print(f"  method: {res['method']}, in a fresh child process; RSS growth as a cross-check")
    print(f"  per key:            {res['bytes_per_key']:8.1f} bytes "
          f"({res['bytes_per_key_beyond_key']:.1f} beyond the key bytes; "
          f"etcd documents ~{ETCD_DOC_BYTES_PER_KEY_BEYOND_KEY} + key)")
    if res["bytes_per_extra_version"] is not None:
        print(f"  per extra version:  {res['bytes_per_extra_version']:8.1f} bytes "
              f"(etcd documents ~{ETCD_DOC_BYTES_PER_EXTRA_VERSION})")
    rss_v = res["rss_bytes_per_extra_version"]
    print(f"  RSS growth:         {res['rss_bytes_per_key']:8.1f} bytes per key"
          + (f", {rss_v:.1f} per extra version" if rss_v is not None else ""))
    if args.with_twin and args.impl == "native":
        twin = _measure(args, "twin")
        res["twin"] = {k: twin[k] for k in ("method", "bytes_per_key", "bytes_per_extra_version",
                                            "rss_bytes_per_key")}
        res["ratio_twin_over_native_per_key"] = twin["bytes_per_key"] / res["bytes_per_key"]
        line = (f"  twin (same run, {twin['method']}): {twin['bytes_per_key']:.1f} bytes per key, "
                f"{res['ratio_twin_over_native_per_key']:.1f}x the compiled index")
        if res["bytes_per_extra_version"] and twin["bytes_per_extra_version"] is not None:
            res["ratio_twin_over_native_per_extra_version"] = (
                twin["bytes_per_extra_version"] / res["bytes_per_extra_version"])
            line += (f"; {twin['bytes_per_extra_version']:.1f} per extra version "
                     f"({res['ratio_twin_over_native_per_extra_version']:.1f}x)")
        print(line)
    emit(res, args.json)
    return 0


def _add_common(p) -> None:
    p.add_argument("--keys", type=int, default=1_000_000, help="distinct keys (default 1000000)")
    p.add_argument("--versions", type=int, default=1,
                   help="puts per key; >1 also measures bytes per extra version (default 1)")
    p.add_argument("--key-size", type=int, default=16, help="bytes per key (default 16)")
    p.add_argument("--impl", choices=("native", "twin"), default="native",
                   help="compiled index (default) or the pure-Python twin")
    p.add_argument("--order", choices=("random", "sorted"), default="random",
                   help="key insertion order (default: a scrambled permutation)")
    p.add_argument("--start-revision", type=int, default=1,
                   help="main revision of the first put, then +1 per put (default 1); large values "
                        "show the cost of long varints in a long-lived cluster")
    p.add_argument("--sub", type=int, default=0,
                   help="sub revision of every put (default 0; >0 as for later ops in a txn)")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "index-memory",
        help="bytes per key and per extra version of the revision index",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(p)
    p.add_argument("--with-twin", action="store_true",
                   help="also measure the pure-Python twin (another child) and report the ratio")
    add_json_flag(p)
    p.set_defaults(func=run)


def _child_main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fastkv.bench.index_memory --child")
    p.add_argument("--child", action="store_true", required=True)
    _add_common(p)
    args = p.parse_args(argv)
    if args.keys < 1 or args.versions < 1:
        raise SystemExit("--keys and --versions must be >= 1")
    print(json.dumps(_child(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
