"""Build script: compiles every Cython module found in src/fastkv/_native/.

Adding a hot path means adding `src/fastkv/_native/<name>.pyx` (plus its .pxd/.pyi and a pure-Python
twin `<name>_py.py`); nothing here needs editing. Per-module compiler flags belong in the .pyx
header as `# distutils: extra_compile_args = ...` so that rooms never collide in this file. A module
that needs a system library's header says so in its header as
`# fastkv: needs-header <path> from <Debian package>`; the build stops with what to install if the
header is missing.
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


def _include_dirs():
    dirs = [d for d in os.environ.get("CPATH", "").split(os.pathsep) + os.environ.get("C_INCLUDE_PATH", "").split(
        os.pathsep) if d]
    return dirs + ["/usr/local/include", "/usr/include"]


def check_headers(pyx_files):
    """Stop with what to install when a module's `# fastkv: needs-header` is not on this machine."""
    missing = []
    for pyx in pyx_files:
        with open(pyx, encoding="utf-8") as f:
            for line in f:
                if not line.startswith("#"):
                    break
                if line.startswith("# fastkv: needs-header "):
                    header, _, package = line[len("# fastkv: needs-header "):].strip().partition(" from ")
                    if not any(os.path.exists(os.path.join(d, header)) for d in _include_dirs()):
                        missing.append((os.path.basename(pyx), header, package))
    if missing:
        lines = [f"  {mod} needs <{header}> (Debian/Ubuntu package {pkg})" for mod, header, pkg in missing]
        pkgs = " ".join(sorted({pkg for _m, _h, pkg in missing}))
        raise SystemExit("fastkv cannot be built: C headers are missing:\n" + "\n".join(lines) +
                         f"\nInstall them with: apt-get install -y {pkgs}   (then build again)")


def native_extensions():
    exts = []
    pyx_files = sorted(glob.glob(os.path.join(HERE, NATIVE, "*.pyx")))
    check_headers(pyx_files)
    for pyx in pyx_files:
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
