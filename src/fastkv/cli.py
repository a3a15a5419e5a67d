"""The `fastkv` command line: `fastkv serve`, `fastkv bench <workload>`, ...

Subcommands of `fastkv bench` are discovered, not listed: every module in fastkv.bench that defines
`add_parser(subparsers)` registers itself (and sets `func` on its parser). That keeps each
benchmark in its own file and lets rooms add benchmarks without touching this one.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from fastkv import __version__


def _add_bench(sub, workloads: bool = True) -> None:
    """`fastkv bench`; its workload modules are imported only when `workloads` (the command line
    asks for bench, or for help), so other commands do not pay for importing them."""
    import fastkv.bench as bench_pkg

    p = sub.add_parser(
        "bench",
        help="run throughput/latency benchmarks (engine and servers)",
        description="Benchmarks. Each prints human-readable figures; with --json the last line is "
        "one JSON object for scripts. Ratios are taken against a reference measured in the same run.",
    )
    bsub = p.add_subparsers(dest="bench_cmd", metavar="WORKLOAD")
    bsub.required = True
    if not workloads:
        return
    for mod in sorted(pkgutil.iter_modules(bench_pkg.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"fastkv.bench.{mod.name}")
        register = getattr(module, "add_parser", None)
        if register is not None:
            register(bsub)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; `command` (the first word given) lets a run of another command skip
    importing the benchmarks (a member starts ~0.15 s sooner)."""
    parser = argparse.ArgumentParser(
        prog="fastkv",
        description="fastkv: an etcd-compatible, Raft-replicated, multi-version key-value store. "
        "Run `fastkv <command> --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"fastkv {__version__}")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True
    _add_bench(sub, workloads=command is None or command == "bench" or command.startswith("-"))
    try:
        from fastkv.server import cli as server_cli  # present once `fastkv serve` lands
    except ImportError:
        server_cli = None
    if server_cli is not None:
        server_cli.add_parser(sub)
    from fastkv.chaos import cli as chaos_cli

    chaos_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    rc = args.func(args)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
