"""Compiled hot paths and their pure-Python twins.

Every Cython module `<name>.pyx` here has a twin `<name>_py.py` with the same public API. The twin
is the correctness oracle (tests run over both) and the fallback when the extension is not built.

`load(name)` picks the implementation: the compiled one unless it is missing or the environment
sets FASTKV_PURE=1 (handy for debugging and for the twin-vs-native benchmarks).
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

_PURE = os.environ.get("FASTKV_PURE", "") not in ("", "0")


def load(name: str, *, pure: bool | None = None) -> ModuleType:
    """Return the compiled module `name`, or its pure-Python twin.

    pure=True forces the twin, pure=False demands the compiled module (ImportError if not built),
    pure=None follows FASTKV_PURE and falls back to the twin when the extension is missing.
    """
    demanded_native = pure is False
    if pure is None:
        pure = _PURE
    if pure:
        return importlib.import_module(f"fastkv._native.{name}_py")
    try:
        return importlib.import_module(f"fastkv._native.{name}")
    except ImportError:
        if demanded_native:
            raise
        return importlib.import_module(f"fastkv._native.{name}_py")


def is_compiled(module: ModuleType) -> bool:
    """True when `module` is a compiled extension rather than a pure-Python twin."""
    return not module.__name__.endswith("_py")
