"""Encrypted archives end to end, on both databases: a key pair from ``siloport keys generate``, an
archive made by an independent implementation of Sentry's format, imported with ``--decrypt-with`` into
exactly the rows a plain import of the same export makes; a wrong key or a tampered archive is a
specific error (exit 3) that writes nothing."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from control.db.models import IMPORT_CHUNKS as CONTROL_CHUNKS
from region.db.models import IMPORT_CHUNKS as REGION_CHUNKS
from shared.db.engine import make_engine
from tests import sentry_archive
from tests.conftest import DatabaseFactory
from tests.e2e.test_import_resume import canonical
from tests.helpers import running_silos
from tests.importing import FIXTURES, SILOPORT, TABLES, Imported, run_import

pytestmark = pytest.mark.e2e
FIXTURE = FIXTURES / "fresh-install.json"  # every silo, users with 2FA, options, an organization


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """A key pair made by the command an operator runs (default size: 4096 bits)."""
    directory = tmp_path_factory.mktemp("keys")
    private, public = directory / "private.pem", directory / "public.pem"
    result = subprocess.run(
        [SILOPORT, "keys", "generate", "--private", str(private), "--public", str(public)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert private.stat().st_mode & 0o777 == 0o600
    return KeyPair(private, public)


def rows_written(control_db: str, region_db: str) -> int:
    """Every relocated row and every batch record in both databases."""
    total = 0
    for url, chunks in ((control_db, CONTROL_CHUNKS), (region_db, REGION_CHUNKS)):
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                total += connection.execute(select(func.count()).select_from(chunks)).scalar_one()
                for table in TABLES.values():
                    if table.name in engine.dialect.get_table_names(connection):
                        total += connection.execute(select(func.count()).select_from(table)).scalar_one()
        finally:
            engine.dispose()
    return total


def test_an_encrypted_archive_imports_like_the_plain_export_and_a_bad_one_writes_nothing(
    keys: KeyPair, make_database: DatabaseFactory, tmp_path: Path
) -> None:
    public_pem = keys.public.read_bytes()
    archive = sentry_archive.encrypt_file(FIXTURE, public_pem, tmp_path / "export.tar")
    wrong = tmp_path / "wrong.pem"
    wrong.write_bytes(sentry_archive.private_pem(sentry_archive.new_private_key()))
    members = dict(sentry_archive.archive_members(FIXTURE.read_bytes(), public_pem))
    token = bytearray(members["export.json"])
    token[len(token) // 2] = ord("A") if token[len(token) // 2] != ord("A") else ord("B")
    members["export.json"] = bytes(token)
    tampered = tmp_path / "tampered.tar"
    tampered.write_bytes(sentry_archive.tar_of(members.items()))
    import_id = str(uuid.uuid4())

    control_db, region_db = make_database("control_archive"), make_database("region_archive")
    with running_silos(control_db, region_db, tmp_path / "archive") as silos:
        for source, key, message in (
            (archive, wrong, f"{archive}: this archive was encrypted for another key"),
            (
                tampered,
                keys.private,
                f"{tampered}: the data key does not decrypt the payload (the archive is damaged or was "
                "tampered with)",
            ),
        ):
            refused = run_import(silos, region_db, "global", source, "--decrypt-with", str(key), cwd=tmp_path)
            assert refused.returncode == 3, refused.stdout + refused.stderr
            assert refused.stderr.startswith(f"siloport: error: {message}"), refused.stderr
            assert rows_written(control_db, region_db) == 0
        imported = run_import(
            silos,
            region_db,
            "global",
            archive,
            "--decrypt-with",
            str(keys.private),
            "--import-uuid",
            import_id,
            cwd=tmp_path,
        )
        assert imported.returncode == 0, imported.stdout + imported.stderr

    plain_control, plain_region = make_database("control_plain"), make_database("region_plain")
    with running_silos(plain_control, plain_region, tmp_path / "plain") as silos:
        plain = run_import(silos, plain_region, "global", FIXTURE, "--import-uuid", import_id, cwd=tmp_path)
        assert plain.returncode == 0, plain.stdout + plain.stderr

    from_archive = Imported.read(control_db, region_db, import_id)
    from_plain = Imported.read(plain_control, plain_region, import_id)
    try:
        assert from_archive.entries == from_plain.entries
        expected = canonical(from_plain)
        assert sum(len(rows) for rows in expected.values()) >= 25
        assert canonical(from_archive) == expected
    finally:
        from_archive.close()
        from_plain.close()
