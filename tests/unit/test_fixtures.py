"""The copies of Sentry's fixtures in tests/ are the files in ../shared, unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.importing import FIXTURES

SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "sentry"


def test_fixture_copies_are_unchanged() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not beside this checkout")
    shared = {p.name: p.read_bytes() for p in SHARED.glob("*.json")}
    copies = {p.name: p.read_bytes() for p in FIXTURES.glob("*.json")}
    assert copies == shared
