"""Round trip on SQLite and PostgreSQL: every one of Sentry's export fixtures, imported into fresh silos
(global scope: a full restore, nothing sanitized), exported again, compares equal to the original; and
one fixture through the organizations scope, where the comparison is told what that scope resets.

One import per fixture and backend, each into its own pair of silos on fresh databases, so no fixture
sees another's data (the next pair starts while a test runs: ``tests/exporting.SiloSupply``).
Two fixtures go through the real commands (``siloport export`` and ``siloport compare`` as
subprocesses); the others call the export engine and the comparison in this process, which is what the
commands run, without their start-up time.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.relocation.spec import ImportScope
from tests.conftest import BACKENDS, PostgresServer
from tests.exporting import SiloSupply, compare_files, export_in_process, run_compare, run_export
from tests.importing import FIXTURES, run_import

pytestmark = pytest.mark.e2e
#: invalid-user.json is refused by the import (Sentry refuses it too).
NAMES = sorted(p.name for p in FIXTURES.glob("*.json") if p.name != "invalid-user.json")
THROUGH_CLI = frozenset({"fresh-install.json", "duplicate-username-and-organization-slug.json"})
DUPLICATES = "duplicate-username-and-organization-slug.json"


@pytest.fixture(scope="module", params=BACKENDS)
def supply(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiloSupply]:
    """Fresh silos for each test, on fresh databases of the backend."""
    root = tmp_path_factory.mktemp(f"round-trip-{request.param}")
    labels = itertools.count()

    def sqlite_database(label: str) -> str:
        return f"sqlite:///{root}/{label}-{next(labels)}.sqlite3"

    databases = sqlite_database
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        databases = server.create_database
    supply = SiloSupply(databases, root)
    yield supply
    supply.close()


@pytest.mark.parametrize("name", NAMES)
def test_an_imported_fixture_exports_equal_to_itself(supply: SiloSupply, name: str, tmp_path: Path) -> None:
    source = FIXTURES / name
    import_findings, exported = tmp_path / "import-findings.json", tmp_path / "exported.json"
    with supply.take() as fresh:
        silos, region_db = fresh.silos, fresh.region_db
        imported = run_import(
            silos, region_db, "global", source, "--findings-file", str(import_findings), cwd=tmp_path
        )
        assert imported.returncode == 0, imported.stdout + imported.stderr
        if name in THROUGH_CLI:
            result = run_export(silos, region_db, "global", exported, cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            assert f"to {exported}" in result.stderr
        else:
            export_in_process(silos, region_db, exported)
    if name in THROUGH_CLI:
        differences = tmp_path / "differences.json"
        compared = run_compare(
            source,
            exported,
            "--import-findings",
            str(import_findings),
            "--findings-file",
            str(differences),
            cwd=tmp_path,
        )
        assert compared.returncode == 0, compared.stdout + compared.stderr
        assert "equal:" in compared.stdout
        assert json.loads(differences.read_text()) == []
    else:
        comparison = compare_files(source, exported, import_findings)
        assert comparison.equal, [str(d) for d in comparison.differences]
    if name == DUPLICATES:
        # Without the import's findings the renamed duplicates are differences.
        unexplained = compare_files(source, exported)
        assert {(d.model, d.field) for d in unexplained.differences} == {
            ("sentry.user", "username"),
            ("sentry.organization", "slug"),
        }


def test_an_organizations_scope_round_trip_is_equal_but_for_what_the_scope_resets(
    supply: SiloSupply, tmp_path: Path
) -> None:
    source = FIXTURES / "fresh-install.json"
    import_findings, exported = tmp_path / "import-findings.json", tmp_path / "exported.json"
    with supply.take() as fresh:
        imported = run_import(
            fresh.silos,
            fresh.region_db,
            "organizations",
            source,
            "--findings-file",
            str(import_findings),
            cwd=tmp_path,
        )
        assert imported.returncode == 0, imported.stdout + imported.stderr
        export_in_process(fresh.silos, fresh.region_db, exported, ImportScope.ORGANIZATIONS)
    comparison = compare_files(source, exported, import_findings, ImportScope.ORGANIZATIONS)
    assert comparison.equal, [str(d) for d in comparison.differences]
    # Options, relays, roles, authenticators and applications are outside the scope: the import's
    # findings say it skipped them.
    assert comparison.models["sentry.option"].explained == 4
    assert comparison.models["sentry.authenticator"].explained == 2
    reset = compare_files(source, exported, import_findings)
    reset_fields = {d.field for d in reset.differences}
    assert reset_fields >= {"password", "is_unclaimed", "is_superuser", "date_hash_added"}
