"""``siloport export`` against real silos on SQLite and PostgreSQL: scopes and filters, paging, standard
output, encrypted archives, control's ExportModel call, and failures that leave nothing behind."""

from __future__ import annotations

import json
import re
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from region.db.schema import MIGRATIONS
from shared.db.engine import make_engine
from shared.launcher import free_port
from shared.relocation.archive import PrivateKeyDecryptor, plain_export
from shared.rpc.errors import RemoteInvalidArgument
from shared.rpc.v1 import export_pb2
from tests.conftest import PostgresServer
from tests.exporting import compare_files, records, run_compare, run_export
from tests.exports import generate, write_export
from tests.helpers import Silos, running_silos
from tests.importing import run_import

pytestmark = pytest.mark.e2e
BACKENDS = ("sqlite", "postgresql")


@dataclass
class Stack:
    silos: Silos
    region_db: str
    workdir: Path
    source: Path
    import_findings: Path


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Both silos holding one import (global scope) of 3 organizations with 3 members each."""
    workdir = tmp_path_factory.mktemp(f"export-{request.param}")
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        control_db, region_db = server.create_database("control"), server.create_database("region")
    else:
        control_db, region_db = f"sqlite:///{workdir}/control.sqlite3", f"sqlite:///{workdir}/region.sqlite3"
    source = write_export(workdir / "source.json", generate(orgs=3, members=3))
    findings = workdir / "import-findings.json"
    with running_silos(control_db, region_db, workdir) as silos:
        result = run_import(silos, region_db, "global", source, "--findings-file", str(findings), cwd=workdir)
        assert result.returncode == 0, result.stdout + result.stderr
        yield Stack(silos, region_db, workdir, source, findings)


def by_model(path: Path) -> dict[str, list[dict[str, object]]]:
    found: dict[str, list[dict[str, object]]] = {}
    for record in records(path):
        found.setdefault(str(record["model"]), []).append(record)
    return found


def field_values(path: Path, model: str, name: str) -> list[object]:
    return [r["fields"][name] for r in by_model(path).get(model, [])]  # type: ignore[index]


def test_a_global_export_equals_the_import_paged_or_to_standard_output(stack: Stack, tmp_path: Path) -> None:
    dest = tmp_path / "global.json"
    result = run_export(stack.silos, stack.region_db, "global", dest, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^  sentry\.organization +3$", result.stderr, re.MULTILINE), result.stderr
    assert result.stderr.endswith(f"exported 93 instances of 14 models (global scope) to {dest}\n")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    comparison = compare_files(stack.source, dest, stack.import_findings)
    assert comparison.equal, [str(d) for d in comparison.differences]
    paged = run_export(
        stack.silos, stack.region_db, "global", "-", "--page-size", "2", "--silent", cwd=tmp_path
    )
    assert paged.returncode == 0, paged.stderr
    assert paged.stdout == dest.read_text()
    assert paged.stderr == ""


def test_an_organization_filter_exports_those_organizations_and_their_users(
    stack: Stack, tmp_path: Path
) -> None:
    dest = tmp_path / "org.json"
    result = run_export(
        stack.silos, stack.region_db, "organizations", dest, "--filter-org-slugs", "gen-org-2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert field_values(dest, "sentry.organization", "slug") == ["gen-org-2"]
    assert field_values(dest, "sentry.user", "username") == [f"gen-user{u}@example.com" for u in (4, 5, 6)]
    assert field_values(dest, "sentry.email", "email") == [f"gen-user{u}@example.com" for u in (4, 5, 6)]
    found = by_model(dest)
    counts = {model: len(instances) for model, instances in found.items()}
    assert counts == {
        "sentry.organization": 1,
        "sentry.organizationoption": 1,
        "sentry.project": 2,
        "sentry.projectkey": 2,
        "sentry.projectoption": 2,
        "sentry.team": 2,
        "sentry.user": 3,
        "sentry.useroption": 3,
        "sentry.email": 3,
        "sentry.organizationmember": 3,
        "sentry.organizationmemberteam": 3,
        "sentry.orgauthtoken": 1,
        "sentry.projectteam": 2,
        "sentry.useremail": 3,
    }
    organization = found["sentry.organization"][0]["pk"]
    assert {m["fields"]["organization"] for m in found["sentry.organizationmember"]} == {organization}  # type: ignore[index]


def test_a_username_filter_exports_that_user(stack: Stack, tmp_path: Path) -> None:
    dest = tmp_path / "user.json"
    name = "gen-user8@example.com"
    result = run_export(stack.silos, stack.region_db, "users", dest, "--filter-usernames", name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = by_model(dest)
    assert sorted(found) == ["sentry.email", "sentry.user", "sentry.useremail", "sentry.useroption"]
    assert field_values(dest, "sentry.user", "username") == [name]
    assert field_values(dest, "sentry.useremail", "email") == [name]


def test_the_config_scope_exports_the_privileged_users(stack: Stack, tmp_path: Path) -> None:
    dest = tmp_path / "config.json"
    result = run_export(stack.silos, stack.region_db, "config", dest, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert field_values(dest, "sentry.user", "username") == ["gen-user7@example.com"]  # the staff member
    assert "sentry.organization" not in by_model(dest)


def test_an_encrypted_export_decrypts_to_the_plain_export(stack: Stack, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = tmp_path / "private.pem", tmp_path / "public.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    plain, encrypted = tmp_path / "plain.json", tmp_path / "export.tar"
    assert run_export(stack.silos, stack.region_db, "global", plain, "--silent", cwd=tmp_path).returncode == 0
    result = run_export(
        stack.silos, stack.region_db, "global", encrypted, "--encrypt-with", str(public), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert f"encrypted for {public}" in result.stderr
    with tarfile.open(encrypted) as archive:
        assert archive.getnames() == ["export.json", "data.key", "key.pub"]
    decrypted = plain_export(encrypted, PrivateKeyDecryptor(private), tmp_path)
    assert decrypted.read_text() == plain.read_text()
    compared = run_compare(stack.source, encrypted, "--decrypt-with", str(private), cwd=tmp_path)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "equal: 93 and 93 instances" in compared.stdout


def test_control_refuses_to_export_what_it_does_not_hold(stack: Stack) -> None:
    client = stack.silos.control_client()
    try:
        page = client.call(
            "ExportModel",
            export_pb2.ExportModelRequest(model="sentry.user", limit=2),
            export_pb2.ExportModelResponse,
        )
        assert len(page.instances) == 2 and not page.done
        assert json.loads(page.instances[0].fields_json)["username"] == "gen-user1@example.com"
        for request, reason, message in (
            (
                export_pb2.ExportModelRequest(model="sentry.project"),
                "not_exportable",
                "control silo does not",
            ),
            (
                export_pb2.ExportModelRequest(model="sentry.nope"),
                "not_exportable",
                "does not know this model",
            ),
            (
                export_pb2.ExportModelRequest(
                    model="sentry.user", filters=[export_pb2.ExportFilter(field="nope", str_values=["x"])]
                ),
                "bad_filter",
                "no field 'nope'",
            ),
        ):
            with pytest.raises(RemoteInvalidArgument) as refused:
                client.call("ExportModel", request, export_pb2.ExportModelResponse)
            assert refused.value.reason == reason
            assert message in refused.value.message
    finally:
        client.close()


def test_the_embedded_default_exports_without_a_control_address(tmp_path: Path) -> None:
    dest = tmp_path / "out.json"
    result = run_export(None, None, "global", dest, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(dest.read_text()) == []


def test_a_failed_export_leaves_no_destination(tmp_path: Path) -> None:
    """Control unreachable (a migrated region database), then a region database that is not migrated."""
    region_db = f"sqlite:///{tmp_path}/region.sqlite3"
    engine = make_engine(region_db)
    MIGRATIONS.upgrade(engine, "head")
    engine.dispose()
    kept, dest = tmp_path / "kept.json", tmp_path / "out.json"
    kept.write_text("an earlier export")
    dead = ("--control-address", f"127.0.0.1:{free_port()}")
    result = run_export(None, region_db, "global", kept, *dead, cwd=tmp_path)
    assert result.returncode == 5, result.stderr
    assert (
        "control did not answer while exporting sentry.controloption from the first instance" in result.stderr
    )
    assert kept.read_text() == "an earlier export"
    result = run_export(None, f"sqlite:///{tmp_path}/empty.sqlite3", "global", dest, *dead, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.sqlite3", "kept.json", "region.sqlite3"]
