"""Regenerate the committed gRPC/protobuf code from protos/ (`make protos`).

    protos/agpis/v1/agpis.proto  ->  agpis/v1/agpis_pb2.py, agpis_pb2.pyi, agpis_pb2_grpc.py

tests/service/test_protos.py regenerates into a temporary directory and fails when the result
differs from what is committed, so the proto and the code cannot drift apart.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ["agpis/v1/agpis.proto"]


def generate(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{ROOT / 'protos'}", f"-I{include}", f"--python_out={out_dir}",
            f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}", *PROTOS]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    stems = [p[: -len(".proto")] for p in PROTOS]
    return [out_dir / f"{stem}{suffix}" for stem in stems for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")]


if __name__ == "__main__":
    for path in generate(ROOT):
        print(path.relative_to(ROOT))
    sys.exit(0)
