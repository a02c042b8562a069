"""The import's rules, end to end: repeated imports, merging, config overwrites, filters, scope
sanitization, and specific errors on bad input that leave both databases as they were."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from control.db.models import IMPORT_CHUNKS as CONTROL_CHUNKS
from region.db.models import IMPORT_CHUNKS as REGION_CHUNKS
from region.importer.options import BATCH_CHARS, DEFAULT_BATCH_SIZE
from shared.db.engine import make_engine
from shared.rpc.server import MAX_MESSAGE_BYTES
from tests.conftest import DatabaseFactory
from tests.exports import generate, write_export
from tests.helpers import Silos, running_silos
from tests.importing import FIXTURES, TABLES, Imported, import_id_of, load, run_import

pytestmark = pytest.mark.e2e


@dataclass
class Env:
    silos: Silos
    control_db: str
    region_db: str
    workdir: Path

    def run(
        self, scope: str, source: Path | str, *extra: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_import(self.silos, self.region_db, scope, source, *extra, cwd=self.workdir, stdin=stdin)

    def ok(self, scope: str, source: Path | str, *extra: str) -> Imported:
        result = self.run(scope, source, *extra)
        assert result.returncode == 0, result.stdout + result.stderr
        return Imported.read(self.control_db, self.region_db, import_id_of(result))

    def counts(self) -> dict[str, int]:
        state = Imported.read(self.control_db, self.region_db, "none")
        try:
            return {model: state.count(model) for model in TABLES}
        finally:
            state.close()

    def chunk_count(self) -> int:
        total = 0
        for url, chunks in ((self.control_db, CONTROL_CHUNKS), (self.region_db, REGION_CHUNKS)):
            engine = make_engine(url)
            with engine.connect() as connection:
                total += len(connection.execute(select(chunks.c.id)).all())
            engine.dispose()
        return total


@pytest.fixture
def env(make_database: DatabaseFactory, tmp_path: Path) -> Iterator[Env]:
    control_db, region_db = make_database("control"), make_database("region")
    with running_silos(control_db, region_db, tmp_path) as silos:
        yield Env(silos, control_db, region_db, tmp_path)


def test_second_import_renames_users_unless_merged(env: Env) -> None:
    source = FIXTURES / "fresh-install.json"
    first = env.ok("users", source)
    second = env.ok("users", source)
    originals = {first.entries["sentry.user"][pk][2] for pk in (1, 2)}
    assert originals == {"admin@example.com", "member@example.com"}
    for pk in (1, 2):
        new_pk, kind, name = second.entries["sentry.user"][pk]
        first_name = first.entries["sentry.user"][pk][2]
        assert kind == "inserted" and name not in originals and name is not None and first_name is not None
        assert name.startswith(first_name + "-")
        assert new_pk != first.entries["sentry.user"][pk][0]
    assert env.counts()["sentry.user"] == 4
    merged = env.ok("users", source, "--merge-users")
    for pk in (1, 2):
        assert merged.entries["sentry.user"][pk][:2] == (first.entries["sentry.user"][pk][0], "existing")
    assert "sentry.useremail" not in merged.entries  # the existing users keep their own emails
    assert env.counts()["sentry.user"] == 4
    for state in (first, second, merged):
        state.close()


def test_overwrite_configs_keeps_or_takes_the_new_value(env: Env) -> None:
    first = env.ok("config", FIXTURES / "single-option.json")
    option_pk = first.entries["sentry.option"][1][0]
    changed = load(FIXTURES / "single-option.json")
    changed[0]["fields"]["value"] = "99.0.0"
    source = write_export(env.workdir / "changed-option.json", changed)
    kept = env.ok("config", source)
    assert kept.entries["sentry.option"][1][:2] == (option_pk, "existing")
    assert kept.row("sentry.option", option_pk)["value"] == json.dumps("23.6.1")
    taken = env.ok("config", source, "--overwrite-configs")
    assert taken.entries["sentry.option"][1][:2] == (option_pk, "overwrite")
    assert taken.row("sentry.option", option_pk)["value"] == json.dumps("99.0.0")
    assert env.counts()["sentry.option"] == 1
    for state in (first, kept, taken):
        state.close()


def test_username_filter_keeps_exactly_those_users(env: Env) -> None:
    source = write_export(env.workdir / "gen.json", generate(orgs=3, members=2))
    state = env.ok("users", source, "--filter-usernames", "gen-user2@example.com,gen-user5@example.com")
    assert sorted(state.entries["sentry.user"]) == [2, 5]
    assert sorted(state.entries["sentry.email"]) == [2, 5]
    assert sorted(state.entries["sentry.useremail"]) == [2, 5]
    assert sorted(state.entries["sentry.useroption"]) == [2, 5]
    counts = env.counts()
    assert counts["sentry.user"] == counts["sentry.email"] == counts["sentry.useremail"] == 2
    assert counts["sentry.organization"] == 0
    state.close()


def test_org_filter_keeps_the_organization_its_members_and_what_hangs_off_it(env: Env) -> None:
    source = write_export(env.workdir / "gen.json", generate(orgs=3, members=2, teams=2, projects=2))
    findings = env.workdir / "findings.json"
    state = env.ok(
        "organizations", source, "--filter-org-slugs", "gen-org-2", "--findings-file", str(findings)
    )
    assert list(state.entries["sentry.organization"]) == [2]
    assert sorted(state.entries["sentry.user"]) == [3, 4]  # the members of gen-org-2
    assert sorted(state.entries["sentry.email"]) == [3, 4]
    assert sorted(state.entries["sentry.organizationmember"]) == [3, 4]
    assert sorted(state.entries["sentry.team"]) == [3, 4]
    assert sorted(state.entries["sentry.project"]) == [3, 4]
    assert sorted(state.entries["sentry.projectkey"]) == [3, 4]
    assert sorted(state.entries["sentry.organizationmemberteam"]) == [3, 4]
    assert list(state.entries["sentry.orgauthtoken"]) == [2]
    counts = env.counts()
    assert counts["sentry.organization"] == 1 and counts["sentry.user"] == 2 and counts["sentry.team"] == 2
    kinds = [f["kind"] for f in json.loads(findings.read_text())]
    assert kinds.count("filtered_out") == 2 + 4 + 4  # 2 orgs, 4 users, 4 emails
    assert kinds.count("dropped_orphan") > 0  # the other organizations' members, teams, projects ...
    token = state.row("sentry.orgauthtoken", state.entries["sentry.orgauthtoken"][2][0])
    assert token["organization_id"] == state.entries["sentry.organization"][2][0]
    state.close()


@pytest.mark.parametrize(
    ("scope", "privileged", "authenticators", "permissions", "roles", "ips", "claimed"),
    [
        ("users", False, 0, 0, 0, 0, False),
        ("organizations", False, 0, 0, 0, 0, False),
        ("config", True, 0, 1, 1, 0, False),
        ("global", True, 1, 1, 1, 1, True),
    ],
)
def test_scope_sanitization(
    env: Env,
    scope: str,
    privileged: bool,
    authenticators: int,
    permissions: int,
    roles: int,
    ips: int,
    claimed: bool,
) -> None:
    state = env.ok(scope, FIXTURES / "user-with-maximum-privileges.json")
    user = state.row("sentry.user", state.entries["sentry.user"][1][0])
    assert (user["is_staff"], user["is_superuser"]) == (privileged, privileged)
    assert user["is_unclaimed"] is not claimed
    assert user["password"].startswith("pbkdf2_sha256$") is claimed
    email = state.row("sentry.useremail", state.entries["sentry.useremail"][1][0])
    assert email["is_verified"] is claimed
    counts = env.counts()
    assert counts["sentry.authenticator"] == authenticators
    assert counts["sentry.userpermission"] == permissions
    assert counts["sentry.userrole"] == counts["sentry.userroleuser"] == roles
    assert counts["sentry.userip"] == ips
    assert counts["sentry.useroption"] == 1
    state.close()


BAD_INPUTS = {
    "malformed JSON": (
        '[\n{"model": "sentry.option", "pk": 1, "fields": {"key": "a", "value": 1}},\n'
        '{"model": "sentry.option", "pk": 2, "fields": {"key": "b",, "value": 2}}\n]',
        ":3:59 (record 1): malformed JSON: Expecting property name",
    ),
    "not a list": ('{"model": "sentry.option"}', ":1:1: an export is a JSON list"),
    "unknown field": (
        '[{"model": "sentry.organization", "pk": 1, "fields": {"name": "A", "slug": "a", "colour": "red"}}]',
        ":1:2 (record 0): sentry.organization pk 1: unknown field(s) 'colour'",
    ),
    "bad value": (
        '[{"model": "sentry.option", "pk": 1, "fields": {"key": "a", "value": 1}},\n'
        '{"model": "sentry.user", "pk": 1, "fields": {"username": "a", "password": "x", '
        '"is_staff": "yes"}}]',
        ":2:1 (record 1): sentry.user pk 1: field 'is_staff': expected true or false, got \"yes\"",
    ),
    "out of order": (
        '[{"model": "sentry.organization", "pk": 1, "fields": {"name": "A", "slug": "a"}},\n'
        '{"model": "sentry.team", "pk": 1, "fields": {"organization": 1, "slug": "t", "name": "T"}},\n'
        '{"model": "sentry.organization", "pk": 2, "fields": {"name": "B", "slug": "b"}}]',
        ":3:1 (record 2): sentry.organization pk 2: out of dependency order: sentry.team "
        "(first at line 2) refers to sentry.organization",
    ),
    "duplicate pk": (
        '[{"model": "sentry.option", "pk": 1, "fields": {"key": "a", "value": 1}},\n'
        '{"model": "sentry.option", "pk": 1, "fields": {"key": "b", "value": 2}}]',
        ":2:1 (record 1): sentry.option pk 1: this pk appears twice for the model",
    ),
    "truncated": (
        '[{"model": "sentry.option", "pk": 1, "fields": {"key": "a", "value": 1}}',
        ":1:73: the file ends inside the list",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_a_specific_error_and_writes_nothing(env: Env, case: str) -> None:
    text, message = BAD_INPUTS[case]
    path = env.workdir / "bad.json"
    path.write_text(text)
    before = env.counts()
    findings = env.workdir / "findings.json"
    result = env.run("global", path, "--findings-file", str(findings))
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.startswith(f"siloport: error: {path}:"), result.stderr
    assert message in result.stderr, result.stderr
    assert env.counts() == before
    assert env.chunk_count() == 0
    assert [f["kind"] for f in json.loads(findings.read_text())] == ["error"]


def test_stdin_unknown_models_and_strict(env: Env) -> None:
    records = [
        *load(FIXTURES / "single-option.json"),
        {"model": "sentry.widget", "pk": 1, "fields": {"colour": "red"}},
    ]
    data = json.dumps(records)
    result = env.run("config", "-", "--findings-file", str(env.workdir / "f.json"), stdin=data)
    assert result.returncode == 0, result.stderr
    findings = json.loads((env.workdir / "f.json").read_text())
    assert {
        "kind": "skipped_model",
        "model": "sentry.widget",
        "ordinal": 0,
        "old_pk": None,
        "new_pk": None,
        "reason": "siloport does not know this model",
    } in findings
    strict = env.run("config", "-", "--strict", stdin=data)
    assert strict.returncode == 3
    stderr = strict.stderr
    assert "siloport: error: <stdin>:1:" in stderr
    assert "sentry.widget pk 1: siloport does not know this model (--strict)" in stderr


def test_unresolved_references_become_null_or_dropped_and_strict_refuses(env: Env) -> None:
    findings = env.workdir / "f.json"
    state = env.ok("organizations", FIXTURES / "org-and-project.json", "--findings-file", str(findings))
    kinds = {(f["kind"], f["model"]) for f in json.loads(findings.read_text())}
    assert ("nulled_reference", "sentry.team") in kinds  # actor
    assert ("nulled_reference", "sentry.organizationmember") in kinds  # inviter_id
    member = state.row("sentry.organizationmember", state.entries["sentry.organizationmember"][3][0])
    assert member["inviter_id"] is None and member["email"] == "pending@example.com"
    strict = env.run("organizations", FIXTURES / "org-and-project.json", "--strict")
    assert strict.returncode == 3
    assert (
        "org-and-project.json:15:1 (record 1): sentry.organizationmember pk 3: inviter_id refers to "
        "sentry.user pk 1, which the export does not hold (--strict)" in strict.stderr
    )
    assert "ordinal" not in strict.stdout  # refused in the check pass: nothing was written
    assert env.counts()["sentry.organizationmember"] == 1
    state.close()


def test_resuming_with_other_options_is_refused(env: Env) -> None:
    result = env.run("config", FIXTURES / "single-option.json")
    import_id = import_id_of(result)
    again = env.run(
        "config", FIXTURES / "single-option.json", "--import-uuid", import_id, "--overwrite-configs"
    )
    assert again.returncode == 2
    assert (
        f"import {import_id} was started with other options (overwrite_configs false then, true now)"
        in again.stderr
    )
    other_size = env.run(
        "config", FIXTURES / "single-option.json", "--import-uuid", import_id, "--batch-size", "7"
    )
    assert other_size.returncode == 2
    assert f"(batch_size {DEFAULT_BATCH_SIZE} then, 7 now)" in other_size.stderr


def test_strict_with_a_filter_imports_what_the_filter_keeps(env: Env) -> None:
    source = write_export(env.workdir / "gen.json", generate(orgs=2, members=2))
    state = env.ok("users", source, "--filter-usernames", "gen-user2@example.com", "--strict")
    assert sorted(state.entries["sentry.user"]) == [2]
    assert sorted(state.entries["sentry.useremail"]) == [2]
    state.close()


def test_a_batch_of_large_records_ends_before_it_outgrows_a_message(env: Env) -> None:
    """24 user options of 3 MiB would be one message of 72 MiB at the default batch size, over gRPC's
    limit of 64 MiB (MAX_MESSAGE_BYTES): a batch ends before the record that would take its text past
    BATCH_CHARS (8 MiB), two options a batch here."""
    assert MAX_MESSAGE_BYTES < 24 * (3 << 20) and BATCH_CHARS == 8 << 20 and DEFAULT_BATCH_SIZE >= 24
    large = "x" * (3 << 20)
    records = [
        {**record, "fields": {**record["fields"], "value": large}}
        if record["model"] == "sentry.useroption"
        else record
        for record in generate(orgs=1, members=24)
    ]
    state = env.ok("users", write_export(env.workdir / "large-options.json", records))
    assert len(state.entries["sentry.useroption"]) == 24
    with state.control.connect() as connection:
        batches = connection.execute(
            select(CONTROL_CHUNKS.c.first_ordinal, CONTROL_CHUNKS.c.last_ordinal)
            .where(CONTROL_CHUNKS.c.model == "sentry.useroption")
            .order_by(CONTROL_CHUNKS.c.first_ordinal)
        ).all()
        values = connection.execute(select(TABLES["sentry.useroption"].c.value)).scalars().all()
    assert [tuple(b) for b in batches] == [(first, first + 1) for first in range(1, 25, 2)]
    assert {len(value) for value in values} == {len(large) + 2}  # stored as JSON text: quoted
    state.close()
