"""Fixtures shared by the native front end's tests."""
from __future__ import annotations

import pytest

from tests.conftest import start_fastkv, stop_process


@pytest.fixture
def native(tmp_path):
    """A fresh `fastkv serve` on the native front end (named explicitly: some runs make grpcio the
    default); yields its client endpoint."""
    proc, endpoint = start_fastkv(tmp_path / "data", "--client-frontend", "native")
    try:
        yield endpoint
    finally:
        stop_process(proc)
