"""Regenerate bench/RESULTS.md (and the charts in bench/charts/, the README's headline table).

    python bench/results.py                 # every section
    python bench/results.py --only loadgen  # sections whose file name contains "loadgen"

Each benchmark contributes one section file, bench/sections/<NN>-<name>.toml (NN orders them):

    title = "Storage engine commit"
    about = "What is measured, against which reference, and why it matters."
    needs_etcd = false          # true: a fresh real etcd is started; "{etcd}" in argv is its URL
    [[run]]
    label = "commit, 1000 puts/batch"
    argv = ["commit", "--batch", "1000"]            # `fastkv bench <argv> --json`
    columns = ["rps", "ratio"]                      # keys of the JSON object to tabulate
    chart = "commit.png"                            # optional: shown under the table
    headline = true                                 # optional: also in README.md's headline table

A run with `table = true` shows the benchmark's own table instead of columns: the JSON key "table",
a list of rows whose first row is the header (for figures x servers, e.g. `bench watchers`).

"{charts}" in argv expands to bench/charts (pass it to --plot), "{etcd_pid}" to the started etcd's pid
(for --server-pid). A section whose run fails is kept,
with the error, so RESULTS.md never silently drops a benchmark. Runs of kind "compare" (argv starts
with "compare") are rendered as the side-by-side fastkv/etcd table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import tomllib

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = ROOT / "src"
CHARTS = HERE / "charts"
README_START, README_END = "<!-- bench:headline:start -->", "<!-- bench:headline:end -->"

# Pretty column names and formats for the common JSON keys; anything else is printed as is.
COLUMN_FORMAT = {
    "rps": ("ops/s", "{:,.0f}"), "p50_ms": ("p50 ms", "{:.2f}"), "p90_ms": ("p90 ms", "{:.2f}"),
    "p99_ms": ("p99 ms", "{:.2f}"), "p999_ms": ("p99.9 ms", "{:.2f}"), "max_ms": ("max ms", "{:.2f}"),
    "errors_total": ("errors", "{:,}"), "client_cpu_cores": ("generator cores", "{:.2f}"),
    "server_cpu_cores": ("server cores", "{:.2f}"), "generator_ceiling_rps": ("generator ceiling ops/s", "{:,.0f}"),
    "client_cpu_us_per_req": ("generator us/op", "{:.0f}"), "put_p99_ms": ("put p99 ms", "{:.2f}"),
    "loadavg_1m_before": ("machine load before", "{:.2f}"), "server_cpu_us_per_op": ("server us/op", "{:.0f}"),
    "aio_rps": ("aio puts/s", "{:,.0f}"), "sync_future_rps": ("sync-future puts/s", "{:,.0f}"),
    "ratio": ("future/aio", "{:.2f}"), "ratio_min": ("ratio min", "{:.2f}"), "ratio_max": ("ratio max", "{:.2f}"),
    "aio_cpu_us_per_put": ("aio us CPU/put", "{:.0f}"), "sync_future_cpu_us_per_put": ("future us CPU/put", "{:.0f}"),
    "aio_uvloop_rps": ("aio+uvloop puts/s", "{:,.0f}"), "aio_uvloop_cpu_us_per_put": ("aio+uvloop us CPU/put", "{:.0f}"),
    "uvloop_ratio": ("uvloop/aio", "{:.2f}"),
    "fastkv_rss_mib": ("fastkv RSS MiB", "{:.0f}"), "etcd_rss_mib": ("etcd RSS MiB", "{:.0f}"),
    "rss_ratio": ("fastkv/etcd", "{:.2f}"),
    # bench auth-put: auth on / auth off
    "fastkv_off_rps": ("fastkv off puts/s", "{:,.0f}"), "fastkv_on_rps": ("fastkv on puts/s", "{:,.0f}"),
    "fastkv_on_off_rps": ("fastkv on/off", "{:.2f}"), "fastkv_on_off_rps_min": ("min", "{:.2f}"),
    "fastkv_on_off_rps_max": ("max", "{:.2f}"), "fastkv_on_off_us_per_op": ("fastkv on/off us/op", "{:.2f}"),
    "etcd_off_rps": ("etcd off puts/s", "{:,.0f}"), "etcd_on_rps": ("etcd on puts/s", "{:,.0f}"),
    "etcd_on_off_rps": ("etcd on/off", "{:.2f}"), "etcd_on_off_rps_min": ("min", "{:.2f}"),
    "etcd_on_off_rps_max": ("max", "{:.2f}"), "etcd_on_off_us_per_op": ("etcd on/off us/op", "{:.2f}"),
    "off_us_per_put": ("auth off us CPU/put", "{:.2f}"), "on_us_per_put": ("auth on us CPU/put", "{:.2f}"),
    "auth_us_per_put": ("auth adds us CPU/put", "{:.2f}"),
}


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    etcd = ""
    try:
        etcd = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        etcd = "etcd not installed"
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "etcd": etcd, "commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def run_bench(argv: list[str]) -> tuple[dict | None, str]:
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "fastkv.cli", "bench", *argv, "--json"], capture_output=True,
                          text=True, env=env, timeout=1800)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return None, (proc.stderr.strip() or proc.stdout.strip() or f"exit code {proc.returncode}")
    try:
        return json.loads(lines[-1]), ""
    except json.JSONDecodeError as exc:
        return None, f"last line is not JSON ({exc})"


def fmt(key: str, value) -> str:
    if value is None:
        return "n/a"
    spec = COLUMN_FORMAT.get(key, (key, "{}"))[1]
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def render_runs(section: dict, results: list) -> list[str]:
    out = []
    plain = [(run, r, err) for run, r, err in results if run["argv"][0] != "compare" and not run.get("table")]
    for run, r, err in results:
        if not run.get("table"):
            continue
        out.append(f"**{run['label']}**")
        out.append("")
        if r is None or not r.get("table"):
            out += ["Not available in this run:", "", "```", *(err or "no table in the result").splitlines()[-8:],
                    "```"]
        else:
            header, *rows = r["table"]
            out.append("| " + " | ".join(header) + " |")
            out.append("|---|" + "---|" * (len(header) - 1))
            out += ["| " + " | ".join(row) + " |" for row in rows]
        out.append("")
    # consecutive runs with the same columns share one table
    groups: list[tuple[tuple, list]] = []
    for item in plain:
        cols = tuple(item[0].get("columns", ["rps", "p50_ms", "p99_ms"]))
        if groups and groups[-1][0] == cols:
            groups[-1][1].append(item)
        else:
            groups.append((cols, [item]))
    for cols, items in groups:
        out.append("| run | " + " | ".join(COLUMN_FORMAT.get(c, (c,))[0] for c in cols) + " |")
        out.append("|---|" + "---|" * len(cols))
        for run, r, err in items:
            cells = [fmt(c, r.get(c)) if r else "" for c in cols]
            label = run["label"] + ("" if r else f" — **failed**: {err.splitlines()[-1][:200]}")
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
    for run, r, err in results:
        if run["argv"][0] != "compare":
            continue
        out.append(f"**{run['label']}**")
        out.append("")
        if r is None:
            out.append("Not available in this run:")
            out.append("")
            out.append("```")
            out.extend(err.splitlines()[-8:])
            out.append("```")
        else:
            a, b = r["servers"]
            out.append(f"| workload | {a} ops/s | {b} ops/s | {b}/{a} (spread) | {a} p99 ms | {b} p99 ms | "
                       f"{b}/{a} (spread) | {a} server us/op | {b} server us/op | {b}/{a} (spread) |")
            out.append("|---|---|---|---|---|---|---|---|---|---|")
            for w, s in r["workloads"].items():
                cells = []
                for metric, spec in (("rps", "{:,.0f}"), ("p99_ms", "{:.2f}"), ("server_cpu_us_per_op", "{:.0f}")):
                    ratio = s.get(f"ratio_{metric}")
                    spread = (f"{ratio:.2f} ({s[f'ratio_{metric}_min']:.2f}..{s[f'ratio_{metric}_max']:.2f})"
                              if ratio is not None else "n/a")
                    cells += [spec.format(s[a][f"{metric}_median"]), spec.format(s[b][f"{metric}_median"]), spread]
                out.append(f"| {w} | " + " | ".join(cells) + " |")
        out.append("")
    out.append("Commands (each also takes `--json`):")
    out.append("")
    out.append("```bash")
    for run, _, _ in results:
        out.append("fastkv bench " + " ".join(shlex.quote(a) for a in run["shown_argv"]))
    out.append("```")
    out.append("")
    for run, r, _ in results:
        if run.get("chart") and r is not None and (CHARTS / run["chart"]).exists():
            out.append(f"![{run['label']}](charts/{run['chart']})")
            out.append("")
    return out


def load_sections(only: str | None) -> list[tuple[str, dict]]:
    """Section files in name order: <NN>-<name>.toml runs benchmarks; <NN>-<name>.md is figures that
    another command produced (its text says which, e.g. `fastkv chaos` batches), kept as written."""
    files = sorted(f for f in (HERE / "sections").iterdir() if f.suffix in (".toml", ".md"))
    return [(f.stem, tomllib.loads(f.read_text()) if f.suffix == ".toml" else {"markdown": f.read_text()})
            for f in files if not only or only in f.stem]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--only", help="run only sections whose file name contains this")
    ap.add_argument("--output", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--no-readme", action="store_true", help="do not update README.md's headline table")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(SRC))
    from fastkv.bench._servers import ETCD_CMD, Server

    CHARTS.mkdir(exist_ok=True)
    m = machine()
    doc = ["# fastkv benchmark results", "",
           f"Regenerated by `python bench/results.py` on {m['date']} at commit `{m['commit']}`. "
           "Every figure comes from the command shown under its table (sections say when they were measured); "
           "ratios are taken against a reference measured in the same run. The machine is shared and "
           "noisy: treat differences under ~15% as noise unless a spread says otherwise.", "",
           "## Machine", "",
           f"- CPU: {m['cpu']} ({m['cpus']} logical CPUs)", f"- {m['platform']}, Python {m['python']}",
           f"- reference: {m['etcd']}", ""]
    headline = []
    regenerated = []  # (title, lines) of the benchmark sections run now
    for stem, section in load_sections(args.only):
        if "markdown" in section:
            doc += [section["markdown"].strip(), ""]
            continue
        print(f"== {stem}: {section['title']}", flush=True)
        server = None
        try:
            if section.get("needs_etcd"):
                server = Server("etcd", ETCD_CMD).start()
            results = []
            for run in section.get("run", []):
                subst = {"etcd": server.endpoint if server else "", "etcd_pid": str(server.pid) if server else "",
                         "charts": str(CHARTS)}
                real = [a.format(**subst) for a in run["argv"]]
                run["shown_argv"] = [a.replace("{charts}", "bench/charts").replace("{etcd}", "http://127.0.0.1:2379")
                                     .replace("{etcd_pid}", "ETCD_PID") for a in run["argv"]]
                print("   fastkv bench " + " ".join(run["shown_argv"]), flush=True)
                r, err = run_bench(real)
                if err:
                    print(f"   -> failed: {err.splitlines()[-1] if err else ''}", flush=True)
                results.append((run, r, err))
                if run.get("headline"):
                    headline.append((run, r, err))
        finally:
            if server is not None:
                server.cleanup()
        lines = [f"## {section['title']}", "", section.get("about", "").strip(), "",
                 f"Measured {m['date']} at commit `{m['commit']}`.", ""]
        lines += render_runs(section, results)
        regenerated.append((section["title"], lines))
        doc += lines
    out = pathlib.Path(args.output)
    if args.only and out.exists():
        out.write_text(splice_sections(out.read_text(), regenerated))
        print(f"updated {len(regenerated)} section(s) of {args.output}")
    else:
        out.write_text("\n".join(doc).rstrip() + "\n")
        print(f"wrote {args.output}")
    if not args.no_readme and headline and not args.only:
        update_readme(headline, m)
    return 0


def splice_sections(text: str, sections: list) -> str:
    """Replace each `## <title>` section of an existing RESULTS.md (up to the next `## ` heading)
    with its regenerated lines; a section not found is appended. Everything else is kept."""
    for title, lines in sections:
        block = "\n".join(lines).rstrip() + "\n\n"
        head = f"## {title}\n"
        if text.startswith(head):
            start = 0
        else:
            found = text.find("\n" + head)
            if found < 0:
                text = text.rstrip() + "\n\n" + block
                continue
            start = found + 1
        nxt = text.find("\n## ", start + len(head))
        end = len(text) if nxt < 0 else nxt + 1
        text = text[:start] + block + text[end:]
    return text.rstrip() + "\n"


def update_readme(headline, m) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        print("README.md has no headline markers; not updated")
        return
    rows = ["| benchmark | fastkv | reference (same run) | ratio |", "|---|---|---|---|"]
    loads = []
    for run, r, err in headline:
        if r is None:
            reason = "fastkv serve is not available" if "not available" in err else "failed"
            rows.append(f"| {run['label']} | {reason} (see RESULTS.md) | | |")
        elif "workloads" in r:
            a, b = r["servers"]
            for w, s in r["workloads"].items():
                rows.append(f"| {w}, {run['label']} | {s[b]['rps_median']:,.0f} ops/s, p99 {s[b]['p99_ms_median']:.1f} ms | "
                            f"{a}: {s[a]['rps_median']:,.0f} ops/s, p99 {s[a]['p99_ms_median']:.1f} ms | "
                            f"x{s['ratio_rps']:.2f} ({s['ratio_rps_min']:.2f}..{s['ratio_rps_max']:.2f}) |")
        elif "headline_result" in run or "headline_result" in r:
            # a run names what to show: format strings over its JSON result (in the section file,
            # or given by the benchmark itself)
            fmt = lambda key: run.get(key, r.get(key, "")).format(**r)  # noqa: E731
            rows.append(f"| {run['label']} | {fmt('headline_result')} | {fmt('headline_reference')} | "
                        f"{fmt('headline_ratio')} |")
        else:
            loads.append(r.get("loadavg_1m_before", 0.0))
            rows.append(f"| {run['label']} | {r['rps']:,.0f} ops/s, p50 {r['p50_ms']:.2f} ms, "
                        f"p99 {r['p99_ms']:.2f} ms | | |")
    load = f", machine load ~{sum(loads) / len(loads):.1f} from other jobs" if loads else ""
    block = "\n".join([README_START, "", f"Measured {m['date']} on {m['cpus']} CPUs ({m['cpu']}{load}) against "
                       "real etcd 3.4; details, commands and charts in [bench/RESULTS.md](bench/RESULTS.md).", "",
                       *rows, "", README_END])
    start, end = text.index(README_START), text.index(README_END) + len(README_END)
    readme.write_text(text[:start] + block + text[end:])
    print("updated README.md headline table")


if __name__ == "__main__":
    sys.exit(main())
