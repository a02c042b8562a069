"""Every export in Sentry's fixtures (and one from the benchmark's generator) imports in every scope,
on SQLite and PostgreSQL (with control writing in its own process, and in two write workers), and the
rows in each silo equal the file field by field (after remapping and the scope's sanitization)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.generate import generate, write_export
from shared.launcher import free_port
from shared.relocation.registry import REGISTRY
from shared.relocation.spec import ImportScope, Kind, ModelSpec
from shared.relocation.values import dump_value, parse_datetime
from tests.conftest import PostgresServer
from tests.helpers import Silos, running_silos
from tests.importing import FIXTURES, Imported, import_id_of, load, run_import

pytestmark = pytest.mark.e2e
#: Besides Sentry's fixtures: a small export from the benchmark's generator, so the benchmark measures an
#: import that is correct field by field.
GENERATED = "generated-by-bench.json"
NAMES = [*sorted(p.name for p in FIXTURES.glob("*.json")), GENERATED]
STACKS = [
    (backend, scope) for backend in ("sqlite", "postgresql", "postgresql-workers") for scope in ImportScope
]
DROPS = {"dropped_orphan", "dropped_merged", "filtered_out"}


class Stack:
    def __init__(
        self, silos: Silos, control_db: str, region_db: str, scope: ImportScope, workdir: Path
    ) -> None:
        self.silos, self.control_db, self.region_db, self.scope, self.workdir = (
            silos,
            control_db,
            region_db,
            scope,
            workdir,
        )


@pytest.fixture(scope="module", params=STACKS, ids=[f"{b}-{s.value}" for b, s in STACKS])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    backend, scope = request.param
    workdir = tmp_path_factory.mktemp(f"{backend}-{scope.value}")
    if backend.startswith("postgresql"):
        server: PostgresServer = request.getfixturevalue("postgres")
        control_db, region_db = server.create_database("control"), server.create_database("region")
    else:
        control_db, region_db = f"sqlite:///{workdir}/control.sqlite3", f"sqlite:///{workdir}/region.sqlite3"
    workers = ["--write-workers", "2"] if backend == "postgresql-workers" else []
    with running_silos(control_db, region_db, workdir, control_extra=workers) as silos:
        if workers:
            assert "2 write worker(s) ready" in (workdir / "control.log").read_text()
        yield Stack(silos, control_db, region_db, scope, workdir)
    assert free_port()  # the silos released their ports


def expected_plain(spec: ModelSpec, record: dict[str, Any], name: str) -> object:
    field = next(f for f in spec.fields if f.name == name)
    return record["fields"].get(name, field.default)


def check_instance(state: Imported, scope: ImportScope, record: dict[str, Any], started: datetime) -> None:
    model, pk = record["model"].lower(), record["pk"]
    spec = REGISTRY[model]
    new_pk, kind, unique_value = state.entries[model][pk]
    row = state.row(model, new_pk)
    if kind != "inserted":
        return  # an existing row was used; it keeps its own values
    sanitized: set[str] = set()
    if model == "sentry.user":
        if not scope.keeps_privileges:
            assert (row["is_staff"], row["is_superuser"], row["is_managed"]) == (False, False, False)
            sanitized |= {"is_staff", "is_superuser", "is_managed"}
        if not scope.keeps_credentials:
            assert row["is_unclaimed"] is True and row["password"].startswith("!")
            assert row["is_password_expired"] is False
            assert (
                parse_datetime(
                    str(dump_value(_field(spec, "last_password_change"), row["last_password_change"]))
                )
                >= started
            )
            sanitized |= {"is_unclaimed", "password", "is_password_expired", "last_password_change"}
        assert row["username"] == unique_value
        sanitized.add("username")
    if model == "sentry.useremail" and not scope.keeps_credentials:
        assert row["is_verified"] is False
        assert row["validation_hash"] != record["fields"]["validation_hash"]
        sanitized |= {"is_verified", "validation_hash", "date_hash_added"}
    if model == "sentry.organization":
        assert row["slug"] == unique_value and unique_value is not None
        assert unique_value.startswith(record["fields"]["slug"][:20])
        sanitized.add("slug")
    for field in spec.fields:
        if field.name in sanitized:
            continue
        expected = expected_plain(spec, record, field.name)
        actual = dump_value(field, row[field.column])
        if field.kind is Kind.DATETIME and expected is not None:
            assert actual is not None and parse_datetime(str(actual)) == parse_datetime(str(expected)), (
                field.name
            )
        else:
            assert actual == expected, f"{model} pk {pk} field {field.name}: {actual!r} != {expected!r}"
    for fk in spec.foreign_keys:
        old = record["fields"].get(fk.name)
        actual = row[fk.column]
        if old is not None and old in state.entries.get(fk.target, {}):
            assert actual == state.entries[fk.target][old][0], f"{model} pk {pk} {fk.name}"
        else:
            assert actual is None, f"{model} pk {pk} {fk.name} should be null"


def _field(spec: ModelSpec, name: str) -> Any:
    return next(f for f in spec.fields if f.name == name)


@pytest.mark.parametrize("name", NAMES)
def test_fixture_imports_field_by_field(stack: Stack, name: str) -> None:
    path = (
        write_export(stack.workdir / name, generate(orgs=3, members=4, teams=2, projects=2, prefix="bench"))
        if name == GENERATED
        else FIXTURES / name
    )
    findings_path = stack.workdir / f"{name}.findings.json"
    started = datetime.now(UTC) - timedelta(seconds=1)
    result = run_import(
        stack.silos,
        stack.region_db,
        stack.scope.value,
        path,
        "--findings-file",
        str(findings_path),
        cwd=stack.workdir,
    )
    findings = json.loads(findings_path.read_text())
    if name == "invalid-user.json":
        # Sentry refuses this file too: an unknown field and no username. Nothing may be written.
        assert result.returncode == 3, result.stderr
        assert (
            "invalid-user.json:2:3 (record 0): sentry.user pk 1: unknown field(s) 'doesnotexist'"
            in result.stderr
        )
        state = Imported.read(stack.control_db, stack.region_db, import_id_of(result))
        assert state.entries == {}
        assert [f["kind"] for f in findings] == ["error"]
        state.close()
        return
    assert result.returncode == 0, result.stdout + result.stderr
    state = Imported.read(stack.control_db, stack.region_db, import_id_of(result))
    dropped = {(f["model"], f["old_pk"]) for f in findings if f["kind"] in DROPS}
    skipped_models = {f["model"] for f in findings if f["kind"] == "skipped_model"}
    try:
        for record in load(path):
            model = record["model"].lower()
            spec = REGISTRY.get(model)
            if spec is None or spec.scope not in stack.scope.admits:
                assert model not in state.entries
                assert model in skipped_models
                continue
            if (model, record["pk"]) in dropped:
                assert record["pk"] not in state.entries.get(model, {})
                continue
            check_instance(state, stack.scope, record, started)
    finally:
        state.close()
