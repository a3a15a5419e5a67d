"""Build script: compiles every Cython module found in src/fastkv/_native/.

Adding a hot path means adding `src/fastkv/_native/<name>.pyx` (plus its .pxd/.pyi and a pure-Python
twin `<name>_py.py`); nothing here needs editing. Per-module compiler flags belong in the .pyx
header as `# distutils: extra_compile_args = ...` so that rooms never collide in this file.
"""
import glob
import os

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError as exc:  # pragma: no cover - build requirement declared in pyproject.toml
    raise SystemExit("fastkv needs Cython to build: pip install cython") from exc

HERE = os.path.dirname(os.path.abspath(__file__))
NATIVE = os.path.join("src", "fastkv", "_native")


def native_extensions():
    exts = []
    for pyx in sorted(glob.glob(os.path.join(HERE, NATIVE, "*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        exts.append(
            Extension(
                f"fastkv._native.{name}",
                [os.path.relpath(pyx, HERE)],
                extra_compile_args=["-O3"],
            )
        )
    return exts


setup(
    ext_modules=cythonize(
        native_extensions(),
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
    ),
)
