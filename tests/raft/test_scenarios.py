"""Recorded scenarios, one per behaviour of the Raft paper (see scenario.py for the format).

Rewrite the recorded outputs with `pytest tests/raft/test_scenarios.py --regen` (or
FASTKV_RAFT_REGEN=1) and review the diff.
"""
from __future__ import annotations

import difflib
import pathlib

import pytest

from .scenario import render, run_file

TESTDATA = pathlib.Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


def test_there_are_scenarios():
    assert len(FILES) >= 8


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path, regen):
    text = path.read_text()
    actual, tail, mismatches = run_file(text)
    if regen:
        path.write_text(render(actual, tail))
        return
    if mismatches:
        cmd, expected, got = mismatches[0]
        diff = "\n".join(difflib.unified_diff(expected.splitlines(), got.splitlines(),
                                              "recorded", "actual", lineterm=""))
        pytest.fail(f"{path.name}: {len(mismatches)} command(s) differ; first: {cmd!r}\n{diff}\n"
                    f"(rerun with --regen to re-record, then review the diff)")
