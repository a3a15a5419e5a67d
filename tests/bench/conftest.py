"""Run `fastkv bench ...` exactly as a user does: the real CLI in a subprocess, this tree's fastkv."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

import fastkv

SRC = str(pathlib.Path(fastkv.__file__).resolve().parents[1])


class BenchCLI:
    def __call__(self, *argv, check=True) -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONPATH=SRC)
        proc = subprocess.run([sys.executable, "-m", "fastkv.cli", "bench", *argv], capture_output=True,
                              text=True, env=env, timeout=240)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def json(self, *argv, check=True) -> dict:
        """The last stdout line of a --json run, parsed (the output contract)."""
        proc = self(*argv, "--json", check=check)
        return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def bench():
    return BenchCLI()
