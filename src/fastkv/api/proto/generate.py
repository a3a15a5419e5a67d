"""Regenerate fastkv's etcd API stubs (src/fastkv/api/etcdpb/) from the .proto files next to this.

    python src/fastkv/api/proto/generate.py

Uses grpcio-tools (the `test` extra). The generated modules are committed, so users never need
protoc. protoc emits imports relative to its include root (`from mvccpb import kv_pb2`), which only
work with that root on sys.path; we rewrite them to absolute package imports
(`from fastkv.api.etcdpb.mvccpb import kv_pb2`) so the stubs import as part of fastkv.

Whenever this runs with a newer grpcio-tools, the generated code demands at least the matching
protobuf/grpcio runtime: update the pins in pyproject.toml to the versions printed at the end.
"""
from __future__ import annotations

import pathlib
import re
import shutil
import sys

PROTO_ROOT = pathlib.Path(__file__).resolve().parent
OUT_ROOT = PROTO_ROOT.parent / "etcdpb"
PACKAGES = ("mvccpb", "authpb", "leasepb", "etcdserverpb")
TARGET_PACKAGE = "fastkv.api.etcdpb"
_IMPORT = re.compile(rf"^(from|import) ({'|'.join(PACKAGES)})(\b)", re.M)


def generate() -> list[pathlib.Path]:
    from grpc_tools import protoc
    import grpc_tools

    if OUT_ROOT.exists():
        shutil.rmtree(OUT_ROOT)
    OUT_ROOT.mkdir(parents=True)
    protos = [str(p.relative_to(PROTO_ROOT)) for pkg in PACKAGES for p in sorted((PROTO_ROOT / pkg).glob("*.proto"))]
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={OUT_ROOT}",
        f"--pyi_out={OUT_ROOT}",
        f"--grpc_python_out={OUT_ROOT}",
        *protos,
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc}): {' '.join(args)}")

    written = []
    (OUT_ROOT / "__init__.py").write_text(
        '"""Generated etcd v3 API stubs (regenerate with fastkv/api/proto/generate.py; do not edit).\n\n'
        "Use: `from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc, kv_pb2, auth_pb2, lease_pb2`.\n"
        '"""\n'
        "from fastkv.api.etcdpb.authpb import auth_pb2\n"
        "from fastkv.api.etcdpb.leasepb import lease_pb2\n"
        "from fastkv.api.etcdpb.mvccpb import kv_pb2\n"
        "from fastkv.api.etcdpb.etcdserverpb import rpc_pb2, rpc_pb2_grpc\n\n"
        '__all__ = ["auth_pb2", "kv_pb2", "lease_pb2", "rpc_pb2", "rpc_pb2_grpc"]\n'
    )
    for pkg in PACKAGES:
        (OUT_ROOT / pkg / "__init__.py").write_text("")
    for path in sorted(OUT_ROOT.rglob("*.py*")):
        if path.name == "__init__.py":
            continue
        text = path.read_text()
        fixed = _IMPORT.sub(lambda m: f"{m.group(1)} {TARGET_PACKAGE}.{m.group(2)}{m.group(3)}", text)
        path.write_text(fixed)
        written.append(path)
    return written


def main() -> int:
    written = generate()
    for path in written:
        print(path.relative_to(PROTO_ROOT.parents[3]))
    rpc = (OUT_ROOT / "etcdserverpb" / "rpc_pb2.py").read_text()
    grpc_stub = (OUT_ROOT / "etcdserverpb" / "rpc_pb2_grpc.py").read_text()
    pb = re.search(r"Protobuf Python Version: (\S+)", rpc)
    gr = re.search(r"GRPC_GENERATED_VERSION = '([^']+)'", grpc_stub)
    print(f"the stubs need protobuf >= {pb and pb.group(1)} (same major) and grpcio >= "
          f"{gr and gr.group(1)}: keep pyproject.toml's pins in line", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
