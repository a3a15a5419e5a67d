"""`fastkv bench wal`: WAL append throughput with fsynced batches, recovery/decode rate, CRC-32C
bytes/s, the Cython codec and raft log storage against their pure-Python twins.

Every figure comes with a reference measured in the same run:
  append   vs raw os.write + fdatasync of the same bytes in the same batches (the disk's ceiling);
  decode   vs the twin decoder (on a slice of the log);
  crc      vs the table fallback of the same module and zlib.crc32 (a C CRC-32 we do not own);
  codec    vs the twin encoder;
  raftlog  vs the twin MemoryStorage.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import zlib

from fastkv.bench._common import Progress, add_json_flag, emit, machine_info

WHATS = ("append", "decode", "crc", "codec", "raftlog")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "wal",
        help="WAL append/decode throughput, CRC-32C bytes/s, codec and raft log vs their twins",
        description="Append N entries of B bytes to a fresh WAL in fsynced batches of K (one write and one "
        "fdatasync per batch) in a temporary directory, then measure recovery/decode, CRC-32C and the "
        "Cython codec/raft log against their pure-Python twins. Each figure is reported with a reference "
        "measured in the same run and the ratio. With --json the last stdout line is one JSON object with "
        '"entries_per_s", "mb_per_s", "fsyncs" (append) and one section per measurement.',
    )
    p.add_argument("--entries", type=int, default=1_000_000, help="entries to append (default 1,000,000)")
    p.add_argument("--entry-size", type=int, default=100, help="bytes of data per entry (default 100)")
    p.add_argument("--batch", type=int, default=1000, help="entries per save(), i.e. per fdatasync (default 1000)")
    p.add_argument("--what", default="all",
                   help=f"comma-separated subset of {','.join(WHATS)} (default all)")
    p.add_argument("--dir", default=None, help="parent directory for the temporary WAL (default: system temp dir)")
    p.add_argument("--segment-size", type=int, default=64 * 1024 * 1024, help="WAL segment size in bytes")
    add_json_flag(p)
    p.set_defaults(func=run)


def _entries(pb, n: int, size: int, start: int = 1) -> list:
    payloads = [os.urandom(size) for _ in range(min(n, 1024))] or [b""]
    return [pb.Entry(1, start + i, 0, payloads[i % len(payloads)]) for i in range(n)]


def _rate(n: float, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def _best_of(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_append(args, pb, ents) -> dict:
    """WAL.save() of fsynced batches, interleaved batch by batch with the reference (raw pwrite +
    fdatasync of the same number of bytes into another preallocated file on the same disk), so
    the disk's moods hit both sides alike. Throughput is entries over the time spent in save()."""
    from fastkv._native import load
    from fastkv.wal import WAL

    codec = load("walcodec")
    parent = tempfile.mkdtemp(prefix="fastkv-bench-wal-", dir=args.dir)
    fd = -1
    try:
        fsyncs: list[float] = []
        cuts: list[float] = []
        wal = WAL.create(os.path.join(parent, "wal"), b"bench", segment_size=args.segment_size,
                         on_fsync=fsyncs.append, on_cut=cuts.append)
        k = args.batch
        batches = [ents[i : i + k] for i in range(0, len(ents), k)]
        hard_states = [pb.HardState(1, 1, b[-1].index) for b in batches]
        batch_bytes = [len(codec.encode_batch(hard_states[0], b, 0)[0]) for b in batches]
        fd = os.open(os.path.join(parent, "raw"), os.O_RDWR | os.O_CREAT, 0o644)
        os.posix_fallocate(fd, 0, args.segment_size)
        os.fsync(fd)
        blob = os.urandom(max(batch_bytes))
        raw_off = 0
        wal_time = raw_time = 0.0
        progress = Progress("append", len(batches))
        for b, batch in enumerate(batches):
            t0 = time.perf_counter()
            wal.save(hard_states[b], batch)
            t1 = time.perf_counter()
            if raw_off + batch_bytes[b] > args.segment_size:
                raw_off = 0  # reuse the preallocated reference file rather than growing it
            os.pwrite(fd, memoryview(blob)[: batch_bytes[b]], raw_off)
            os.fdatasync(fd)
            t2 = time.perf_counter()
            raw_off += batch_bytes[b]
            wal_time += t1 - t0
            raw_time += t2 - t1
            progress.update(b + 1)
        progress.close()
        wal.close()
        fs = sorted(fsyncs)
        total_bytes = sum(batch_bytes)
        return {
            "entries": len(ents),
            "entry_size": args.entry_size,
            "batch": k,
            "seconds": wal_time,
            "entries_per_s": _rate(len(ents), wal_time),
            "mb_per_s": _rate(total_bytes / 1e6, wal_time),
            "fsyncs": len(fsyncs),
            "fsync_p50_ms": 1e3 * fs[len(fs) // 2] if fs else None,
            "fsync_p99_ms": 1e3 * fs[min(len(fs) - 1, int(len(fs) * 0.99))] if fs else None,
            "fsync_share_of_save": sum(fsyncs) / wal_time if wal_time else None,
            # what the WAL costs besides the disk flush: encode, pwrite into the page cache, cuts
            "entries_per_s_excluding_fsync": _rate(len(ents), wal_time - sum(fsyncs)),
            "segment_cuts": len(cuts),
            "cut_max_ms": 1e3 * max(cuts) if cuts else None,
            "raw_write_fdatasync_entries_per_s": _rate(len(ents), raw_time),
            "ratio_vs_raw_write_fdatasync": raw_time / wal_time if wal_time else None,
        }
    finally:
        if fd >= 0:
            os.close(fd)
        shutil.rmtree(parent, ignore_errors=True)


def bench_decode(args, pb, ents) -> dict:
    from fastkv._native import load
    from fastkv.wal import WAL

    native, twin = load("walcodec", pure=False), load("walcodec", pure=True)
    buf, _ = native.encode_batch(None, ents, 0)
    n = len(ents)
    t_native = _best_of(lambda: native.decode_records(buf, 0, 0, pb.Entry))
    sub = ents[: max(1, min(n, 20_000))]
    sbuf, _ = native.encode_batch(None, sub, 0)
    t_twin = _best_of(lambda: twin.decode_records(sbuf, 0, 0, pb.Entry), repeat=1)
    # the whole recovery path: WAL.open() + read_all() of a log of these entries
    parent = tempfile.mkdtemp(prefix="fastkv-bench-wal-", dir=args.dir)
    try:
        d = os.path.join(parent, "wal")
        with WAL.create(d, b"bench", segment_size=args.segment_size) as w:
            k = args.batch
            for i in range(0, n, k):
                w.save(None, ents[i : i + k])
        t0 = time.perf_counter()
        with WAL.open(d, segment_size=args.segment_size) as w:
            got = w.read_all()[2]
        t_open = time.perf_counter() - t0
        assert len(got) == n
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    native_rate = _rate(n, t_native)
    twin_rate = _rate(len(sub), t_twin)
    return {
        "entries_per_s": native_rate,
        "twin_entries_per_s": twin_rate,
        "ratio_vs_twin": native_rate / twin_rate,
        "recovery_entries_per_s": _rate(n, t_open),
    }


def bench_crc(args) -> dict:
    from fastkv._native import load

    native, twin = load("crc32c", pure=False), load("crc32c", pure=True)
    data = os.urandom(64 << 20)
    t_hw = _best_of(lambda: native.crc32c(data))
    t_sw = _best_of(lambda: native.crc32c_software(data))
    t_zlib = _best_of(lambda: zlib.crc32(data))
    small = data[: 256 << 10]
    t_twin = _best_of(lambda: twin.crc32c(small), repeat=1)
    gbs = len(data) / t_hw / 1e9
    return {
        "hardware": native.has_hardware(),
        "bytes_per_s": len(data) / t_hw,
        "gb_per_s": gbs,
        "table_gb_per_s": len(data) / t_sw / 1e9,
        "zlib_crc32_gb_per_s": len(data) / t_zlib / 1e9,
        "twin_mb_per_s": len(small) / t_twin / 1e6,
        "ratio_vs_table": t_sw / t_hw,
        "ratio_vs_zlib_crc32": t_zlib / t_hw,
        "ratio_vs_twin": (len(data) / t_hw) / (len(small) / t_twin),
    }


def bench_codec(args, pb, ents) -> dict:
    from fastkv._native import load

    native, twin = load("walcodec", pure=False), load("walcodec", pure=True)
    k = args.batch
    batches = [ents[i : i + k] for i in range(0, len(ents), k)]
    hs = pb.HardState(1, 1, 1)

    def run_native():
        crc = 0
        for b in batches:
            _, crc = native.encode_batch(hs, b, crc)

    sub = batches[: max(1, 20_000 // max(k, 1))]

    def run_twin():
        crc = 0
        for b in sub:
            _, crc = twin.encode_batch(hs, b, crc)

    t_native = _best_of(run_native)
    t_twin = _best_of(run_twin, repeat=1)
    native_rate = _rate(len(ents), t_native)
    twin_rate = _rate(sum(len(b) for b in sub), t_twin)
    return {"encode_entries_per_s": native_rate, "twin_encode_entries_per_s": twin_rate,
            "ratio_vs_twin": native_rate / twin_rate}


def bench_raftlog(args, pb, ents) -> dict:
    from fastkv._native import load

    out = {}
    n = min(len(ents), 200_000)
    k = max(1, args.batch)
    batches = [ents[i : i + k] for i in range(0, n, k)]
    for side, pure in (("native", False), ("twin", True)):
        mod = load("raftlog", pure=pure)

        def appends():
            s = mod.MemoryStorage()
            for b in batches:
                s.append(b)
            return s

        t_append = _best_of(appends)
        s = appends()
        term = s.term
        t_term = _best_of(lambda: [term(i) for i in range(1, n + 1)])
        entries = s.entries
        t_ents = _best_of(lambda: [entries(i, i + 64, 64 * 1024) for i in range(1, n - 64, 64)])
        out[side] = {
            "append_entries_per_s": _rate(n, t_append),
            "term_per_s": _rate(n, t_term),
            "entries_calls_per_s": _rate(len(range(1, n - 64, 64)), t_ents),
        }
    out["ratio_vs_twin"] = {key: out["native"][key] / out["twin"][key] for key in out["native"]}
    return out


def run(args) -> int:
    from fastkv._native import load

    pb = load("raftpb")
    wanted = WHATS if args.what == "all" else tuple(w.strip() for w in args.what.split(","))
    unknown = [w for w in wanted if w not in WHATS]
    if unknown:
        print(f"unknown --what {unknown}; choose from {', '.join(WHATS)}")
        return 2
    ents = _entries(pb, args.entries, args.entry_size)
    result: dict = {"machine": machine_info(), "raftpb": pb.__name__}
    if "append" in wanted:
        r = bench_append(args, pb, ents)
        result["append"] = r
        result.update(entries_per_s=r["entries_per_s"], mb_per_s=r["mb_per_s"], fsyncs=r["fsyncs"])
        print(f"append : {r['entries_per_s']:>12,.0f} entries/s  {r['mb_per_s']:8.1f} MB/s  "
              f"{r['fsyncs']} fsyncs (p50 {r['fsync_p50_ms']:.3f} ms, p99 {r['fsync_p99_ms']:.3f} ms, "
              f"{100 * r['fsync_share_of_save']:.0f}% of save time), {r['segment_cuts']} cuts; "
              f"without the fdatasync time {r['entries_per_s_excluding_fsync']:,.0f} entries/s")
        print(f"         reference, raw pwrite+fdatasync of the same bytes interleaved batch by batch: "
              f"{r['raw_write_fdatasync_entries_per_s']:,.0f} entries/s -> WAL at "
              f"{r['ratio_vs_raw_write_fdatasync']:.2f}x of it")
    if "decode" in wanted:
        r = bench_decode(args, pb, ents)
        result["decode"] = r
        print(f"decode : {r['entries_per_s']:>12,.0f} entries/s (to Entry objects); twin "
              f"{r['twin_entries_per_s']:,.0f} -> {r['ratio_vs_twin']:.0f}x; WAL.open+read_all "
              f"{r['recovery_entries_per_s']:,.0f} entries/s")
    if "crc" in wanted:
        r = bench_crc(args)
        result["crc32c"] = r
        print(f"crc32c : {r['gb_per_s']:8.2f} GB/s (hardware={r['hardware']}); table fallback "
              f"{r['table_gb_per_s']:.2f} GB/s ({r['ratio_vs_table']:.1f}x), zlib.crc32 "
              f"{r['zlib_crc32_gb_per_s']:.2f} GB/s ({r['ratio_vs_zlib_crc32']:.1f}x), twin "
              f"{r['twin_mb_per_s']:.1f} MB/s")
    if "codec" in wanted:
        r = bench_codec(args, pb, ents)
        result["codec"] = r
        print(f"codec  : encode {r['encode_entries_per_s']:>12,.0f} entries/s; twin "
              f"{r['twin_encode_entries_per_s']:,.0f} -> {r['ratio_vs_twin']:.0f}x")
    if "raftlog" in wanted:
        r = bench_raftlog(args, pb, ents)
        result["raftlog"] = r
        ratios = ", ".join(f"{k} {v:.1f}x" for k, v in r["ratio_vs_twin"].items())
        print(f"raftlog: native append {r['native']['append_entries_per_s']:,.0f} entries/s; vs twin: {ratios}")
    emit(result, args.json)
    return 0
