"""Regenerate the checked-in Python code of the wire contract.

Run from anywhere: ``python proto/generate.py`` writes ``shared/rpc/v1/`` in the repository;
``--out DIR`` writes the same tree under DIR instead (the freshness test uses this).

The tool versions are pinned: generated code must never be newer than the protobuf runtime
that ``pyproject.toml`` admits, and the same inputs must always give the same bytes.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import sys
from pathlib import Path

PINNED = {"grpcio-tools": "1.85.1", "mypy-protobuf": "5.1.0"}
PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent
PACKAGE = Path("shared", "rpc", "v1")
INIT_TEXT = '"""Generated wire contract, version 1. Do not edit: run proto/generate.py."""\n'


def check_versions() -> None:
    wrong = []
    for dist, wanted in PINNED.items():
        try:
            have = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            have = "not installed"
        if have != wanted:
            wrong.append(f"{dist} {have} (need {wanted})")
    if wrong:
        sys.exit(
            "proto/generate.py: wrong tool versions: "
            + ", ".join(wrong)
            + ". Install the test extras: pip install -e '.[test]'"
        )


def _plugin(name: str) -> str:
    """Path of a mypy-protobuf plugin installed beside this interpreter (no PATH needed)."""
    found = shutil.which(f"protoc-gen-{name}", path=str(Path(sys.executable).parent))
    if found is None:
        sys.exit(f"protoc-gen-{name} not found beside {sys.executable}: install mypy-protobuf")
    return found


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc  # noqa: PLC0415 - only the generator needs grpcio-tools

    protos = sorted((PROTO_ROOT / PACKAGE).glob("*.proto"))
    target = out / PACKAGE
    target.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *(f"--plugin=protoc-gen-{name}={_plugin(name)}" for name in ("mypy", "mypy_grpc")),
        *(str(p) for p in protos),
    ]
    code = protoc.main(args)
    if code != 0:
        sys.exit(f"protoc failed with exit code {code}")
    (target / "__init__.py").write_text(INIT_TEXT)
    return sorted(p for p in target.iterdir() if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO_ROOT, help="root of the output tree")
    options = parser.parse_args()
    check_versions()
    for path in generate(options.out.resolve()):
        print(path)


if __name__ == "__main__":
    main()
