"""Options of the raft tests.

  --seeds N   (or FASTKV_RAFT_SEEDS=N)  simulator seeds per fault profile (CI default: 100)
  --seed S    (or FASTKV_RAFT_SEED=S)   rerun exactly one seed in every profile (replay a failure)
  --regen     (or FASTKV_RAFT_REGEN=1)  rewrite tests/raft/testdata/*.txt expected outputs

The options exist when pytest is pointed at tests/raft (pytest only reads option hooks from
conftest files it loads at startup); the environment variables work from anywhere.
"""
from __future__ import annotations

import os

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("raft", "raft simulator and scenario tests")
    group.addoption("--seeds", type=int, default=None, help="simulator seeds per fault profile")
    group.addoption("--seed", type=int, default=None, help="rerun only this simulator seed")
    group.addoption("--regen", action="store_true", default=False,
                    help="rewrite the expected outputs of the raft scenario files")


def _opt(config, name):
    try:
        return config.getoption(name)
    except ValueError:
        return None


def _seeds(config):
    """The seeds to run: one replayed seed, or range(N)."""
    one = _opt(config, "--seed")
    if one is None and os.environ.get("FASTKV_RAFT_SEED"):
        one = int(os.environ["FASTKV_RAFT_SEED"])
    if one is not None:
        return [one]
    n = _opt(config, "--seeds") or int(os.environ.get("FASTKV_RAFT_SEEDS", "100"))
    return list(range(n))


SEED_CHUNK = 100  # seeds per test item, so that thousands of seeds never hit the per-test timeout


def pytest_generate_tests(metafunc):
    if "sim_seeds" in metafunc.fixturenames:
        seeds = _seeds(metafunc.config)
        chunks = [seeds[k:k + SEED_CHUNK] for k in range(0, len(seeds), SEED_CHUNK)]
        metafunc.parametrize("sim_seeds", chunks, ids=[f"seeds{c[0]}-{c[-1]}" for c in chunks])


@pytest.fixture(scope="session")
def regen(pytestconfig):
    return bool(_opt(pytestconfig, "--regen")) or os.environ.get("FASTKV_RAFT_REGEN", "") not in ("", "0")
