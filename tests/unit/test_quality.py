"""ruff and mypy are clean, and the silos never import each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff", "ruff-format", "mypy"],
)
def test_tool_is_clean(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def imported_packages(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("region", "control"),
        ("control", "region"),
        ("shared", "region"),
        ("shared", "control"),
        # The import engine and the relocation logic are orchestration over ports: no database, no RPC.
        ("region/importer", "sqlalchemy"),
        ("region/importer", "grpc"),
        ("region/exporter", "sqlalchemy"),
        ("region/exporter", "grpc"),
        ("shared/relocation", "sqlalchemy"),
        ("shared/relocation", "grpc"),
    ],
)
def test_silo_boundaries(package: str, forbidden: str) -> None:
    assert forbidden not in imported_packages(package), f"{package} imports {forbidden}"
