"""Statistics and rendering for load-generator results: percentiles, histogram, text, PNG.

Latencies are kept as exact samples (seconds) and sorted once; percentiles use the nearest-rank
definition so that p100 is the max and p0 the min, with no interpolation inventing values that
were never observed.
"""
from __future__ import annotations

import math

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))


def percentile(sorted_samples, pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 when empty)."""
    n = len(sorted_samples)
    if n == 0:
        return 0.0
    rank = max(1, math.ceil(pct / 100.0 * n))
    return sorted_samples[min(rank, n) - 1]


def latency_summary(sorted_s) -> dict:
    """Figures in milliseconds from ascending latencies in seconds."""
    n = len(sorted_s)
    out = {"min_ms": 1e3 * sorted_s[0] if n else 0.0, "max_ms": 1e3 * sorted_s[-1] if n else 0.0,
           "mean_ms": 1e3 * sum(sorted_s) / n if n else 0.0}
    for name, pct in PERCENTILES:
        out[f"{name}_ms"] = 1e3 * percentile(sorted_s, pct)
    return out


def histogram(sorted_s, buckets: int = 12) -> list[list[float]]:
    """Log-spaced buckets [lo_ms, hi_ms, count] from min to max; every sample lands in one bucket."""
    n = len(sorted_s)
    if n == 0:
        return []
    lo, hi = max(sorted_s[0], 1e-6), max(sorted_s[-1], 1e-6)
    if hi <= lo * 1.0001:
        return [[1e3 * sorted_s[0], 1e3 * sorted_s[-1], n]]
    ratio = (hi / lo) ** (1.0 / buckets)
    edges = [lo * ratio ** i for i in range(buckets)] + [hi]
    counts = [0] * buckets
    # samples are sorted: walk edges and samples together instead of bisecting per sample.
    b = 0
    for s in sorted_s:
        while b < buckets - 1 and s >= edges[b + 1]:
            b += 1
        counts[b] += 1
    return [[1e3 * edges[i], 1e3 * edges[i + 1], counts[i]] for i in range(buckets)]


def ascii_histogram(hist, width: int = 40) -> list[str]:
    if not hist:
        return ["  (no samples)"]
    top = max(c for _, _, c in hist) or 1
    total = sum(c for _, _, c in hist)
    lines = []
    for lo, hi, c in hist:
        bar = "#" * (round(width * c / top) if c else 0)
        if c and not bar:
            bar = "."
        lines.append(f"  {lo:9.3f} - {hi:9.3f} ms | {bar:<{width}} {c} ({100.0 * c / total:.1f}%)")
    return lines


def _fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def _generator_label(r: dict) -> str:
    return "Go clientv3" if r.get("generator") == "go" else "Python grpcio"


def render_text(r: dict) -> list[str]:
    """Human-readable report of one run (the lines printed before the optional JSON line)."""
    if r["workload"] == "watch":
        prm = r["params"]
        what = f"{r['requests']:,} events expected, {prm['watchers']} watchers on {prm['streams']} streams"
        mode = f"{prm['puts']} puts at {prm['put_rate']:g}/s"
    else:
        what = f"{r['requests']:,} requests, {r['clients']} clients"
        mode = f"open loop at {r['rate']:,.0f} req/s" if r.get("rate") else "closed loop"
    lines = [
        f"{r['workload']}: {what} over {r['procs']} {_generator_label(r)} process(es) x {r['conns']} conn(s), {mode} "
        f"-> {', '.join(r['endpoints'])}",
        f"  throughput   {_fmt_int(r['rps'])} {r.get('unit', 'req')}/s   (elapsed {r['elapsed_s']:.2f} s, "
        f"ok {r['ok']:,}, errors {r['errors_total']:,})",
        "  latency      min {min_ms:.3f}  p50 {p50_ms:.3f}  p90 {p90_ms:.3f}  p99 {p99_ms:.3f}  "
        "p99.9 {p999_ms:.3f}  max {max_ms:.3f}  mean {mean_ms:.3f}  (ms)".format(**r),
    ]
    if r.get("latency_note"):
        lines.append(f"  ({r['latency_note']})")
    lines.append("  histogram:")
    lines.extend(ascii_histogram(r["histogram"]))
    if r["errors"]:
        lines.append("  errors by code:")
        for code, count in sorted(r["errors"].items(), key=lambda kv: -kv[1]):
            sample = r.get("error_samples", {}).get(code, "")
            lines.append(f"    {code:<22} {count:>8,}  {sample}")
    else:
        lines.append("  errors: none")
    lines.append(
        f"  generator CPU {r['client_cpu_s']:.2f} s = {r['client_cpu_cores']:.2f} of {r['cpus']} cores "
        f"({r['client_cpu_us_per_req']:.0f} us/request; alone on all cores it could drive "
        f"~{_fmt_int(r['generator_ceiling_rps'])} req/s)")
    if r.get("server_cpu_cores") is not None:
        per_op = r.get("server_cpu_us_per_op")
        lines.append(f"  server CPU    {r['server_cpu_s']:.2f} s = {r['server_cpu_cores']:.2f} cores"
                     + (f" ({per_op:.0f} us/op)" if per_op is not None else ""))
    if "loadavg_1m_before" in r:
        lines.append(f"  machine load (1-min average) {r['loadavg_1m_before']:.2f} before, "
                     f"{r['loadavg_1m_after']:.2f} after the run, on {r['cpus']} CPUs")
    if r["client_cpu_cores"] >= 0.9 * r["cpus"] / (2 if r.get("server_local", True) else 1):
        lines.append("  note: the generator used about its share of this machine's CPUs; on a box this "
                     "small client and server compete for cores, so read rps as a joint figure")
    return lines


def plot(r: dict, path: str) -> None:
    """Latency histogram (log x) and throughput over time, side by side, into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    hist = r.get("histogram_fine") or r["histogram"]
    if hist:
        los = [h[0] for h in hist]
        widths = [h[1] - h[0] for h in hist]
        ax1.bar(los, [h[2] for h in hist], width=widths, align="edge", edgecolor="black")
        ax1.set_xscale("log")
        from matplotlib.ticker import FuncFormatter, NullFormatter

        ax1.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax1.xaxis.set_minor_formatter(NullFormatter())
        for name in ("p50", "p99"):
            v = r[f"{name}_ms"]
            ax1.axvline(v, color="red" if name == "p99" else "green", linestyle="--", label=f"{name} {v:.2f} ms")
        ax1.legend()
    ax1.set_xlabel("latency (ms, log scale)")
    ax1.set_ylabel("requests")
    ax1.set_title(f"{r['workload']} latency")
    tl = r["timeline"]
    xs = [tl["interval_s"] * (i + 0.5) for i in range(len(tl["rps"]))]
    ax2.plot(xs, tl["rps"], drawstyle="steps-mid")
    ax2.axhline(r["rps"], color="gray", linestyle=":", label=f"mean {r['rps']:,.0f}/s")
    ax2.set_xlabel("time since start (s)")
    ax2.set_ylabel(f"{r.get('unit', 'req')}/s")
    ax2.set_ylim(bottom=0)
    ax2.set_title("throughput over time")
    ax2.legend()
    fig.suptitle(f"{r['workload']} against {', '.join(r['endpoints'])}: {r['clients']} clients, "
                 f"{r['requests']:,} requests")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
