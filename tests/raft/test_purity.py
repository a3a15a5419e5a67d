"""The raft core is a pure state machine: no I/O, clock, threads or global randomness."""
from __future__ import annotations

import ast
import pathlib

import fastkv.raft

FORBIDDEN = {"asyncio", "socket", "os", "time", "threading", "subprocess", "selectors", "uvloop"}
RAFT_DIR = pathlib.Path(fastkv.raft.__file__).parent


def test_no_io_clock_threads_or_global_random():
    files = sorted(RAFT_DIR.glob("*.py"))
    assert len(files) >= 6
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                names = []
            bad = FORBIDDEN.intersection(names)
            assert not bad, f"{path.name}:{node.lineno} imports {bad}"
            # Only random.Random (a seeded generator) may be touched, never the module's functions.
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random":
                assert node.attr == "Random", f"{path.name}:{node.lineno} uses random.{node.attr}"
