"""The checked-in wire code is exactly what proto/generate.py produces from proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

from shared.rpc.v1 import control_pb2, region_pb2

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "shared" / "rpc" / "v1"


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = tmp_path / "shared" / "rpc" / "v1"
    names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    assert names == sorted(p.name for p in GENERATED.iterdir() if p.is_file() and p.suffix in (".py", ".pyi"))
    stale = [n for n in names if (fresh / n).read_bytes() != (GENERATED / n).read_bytes()]
    assert not stale, f"regenerate with `python proto/generate.py`: stale {stale}"


def test_methods_declare_their_idempotency() -> None:
    for module in (control_pb2, region_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                level = method.GetOptions().idempotency_level
                assert level != descriptor_pb2.MethodOptions.IDEMPOTENCY_UNKNOWN, method.full_name
