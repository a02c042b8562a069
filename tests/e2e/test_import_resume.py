"""An import killed at any point and run again with the same import id ends in exactly the state of one
clean run; a row the database refuses stops the import with the finished batches resumable."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from control.db.models import IMPORT_CHUNKS as CONTROL_CHUNKS
from region.db.models import IMPORT_CHUNKS as REGION_CHUNKS
from shared.db.engine import make_engine
from shared.relocation.registry import REGISTRY
from shared.relocation.spec import Silo
from tests.conftest import DatabaseFactory, PostgresServer
from tests.exports import generate, write_export
from tests.helpers import SECRET, Silos, running_silos
from tests.importing import SILOPORT, TABLES, Imported, run_import

pytestmark = pytest.mark.e2e
#: Values made fresh on every write (random passwords and hashes): compared by presence only.
VOLATILE = {"password", "last_password_change", "validation_hash", "date_hash_added"}


def chunks_written(control_db: str, region_db: str) -> int:
    total = 0
    for url, table in ((control_db, CONTROL_CHUNKS), (region_db, REGION_CHUNKS)):
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                total += connection.execute(select(func.count()).select_from(table)).scalar_one()
        finally:
            engine.dispose()
    return total


def canonical(state: Imported) -> dict[str, set[tuple[Any, ...]]]:
    """Every imported row with its ids replaced by the export's pks (ids may differ between runs:
    sequences do not roll back), volatile values replaced by whether they are set."""
    inverse = {
        model: {new: old for old, (new, _kind, _value) in entries.items()}
        for model, entries in state.entries.items()
    }
    result: dict[str, set[tuple[Any, ...]]] = {}
    for model, table in TABLES.items():
        spec = REGISTRY[model]
        engine = state.control if spec.silo is Silo.CONTROL else state.region
        with engine.connect() as connection:
            rows = connection.execute(select(table)).mappings().all()
        fk_targets = {fk.column: fk.target for fk in spec.foreign_keys}
        canon = set()
        for row in rows:
            items = []
            for key, raw in sorted(row.items()):
                column = str(key)
                value: Any = raw
                if column == "id":
                    value = inverse.get(model, {}).get(raw, ("unmapped", raw))
                elif column in fk_targets and raw is not None:
                    value = inverse.get(fk_targets[column], {}).get(raw, ("unmapped", raw))
                elif column in VOLATILE:
                    value = raw is not None
                items.append((column, value))
            canon.add(tuple(items))
        assert len(canon) == len(rows), f"duplicate rows in {model}"
        result[model] = canon
    return result


def start_import(
    silos: Silos, region_db: str, source: Path, import_id: str, workdir: Path
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SILOPORT_")}
    env.update(SILOPORT_RPC_SECRETS=SECRET, SILOPORT_DATA_DIR=str(workdir / ".siloport"))
    return subprocess.Popen(
        [
            SILOPORT,
            "import",
            "organizations",
            str(source),
            "--no-prompt",
            "--silent",
            "--import-uuid",
            import_id,
            "--batch-size",
            "20",
            "--control-address",
            silos.control.address,
            "--name",
            silos.region_name,
            "--db",
            region_db,
        ],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_at_many_points_then_resume_equals_a_clean_run(
    make_database: DatabaseFactory, tmp_path: Path
) -> None:
    source = write_export(tmp_path / "big.json", generate(orgs=30, members=8, teams=3, projects=3))
    import_id = str(uuid.uuid4())

    control_db, region_db = make_database("control_killed"), make_database("region_killed")
    kill_points = (3, 15, 40, 70, 100, 130)
    kills_mid_import = 0
    with running_silos(control_db, region_db, tmp_path / "killed") as silos:
        for point in kill_points:
            process = start_import(silos, region_db, source, import_id, tmp_path)
            while process.poll() is None and chunks_written(control_db, region_db) < point:
                time.sleep(0.02)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills_mid_import += 1
            process.communicate(timeout=60)
        # Without --batch-size: the resumed import takes the batches of 20 it began with (the same
        # batch records as the clean run's below prove it).
        final = run_import(
            silos, region_db, "organizations", source, "--import-uuid", import_id, cwd=tmp_path
        )
        assert final.returncode == 0, final.stderr
        assert "batches replayed from an earlier run" in final.stdout
    assert kills_mid_import >= 4, "the import finished before the kill points; make the export larger"

    clean_control, clean_region = make_database("control_clean"), make_database("region_clean")
    with running_silos(clean_control, clean_region, tmp_path / "clean") as silos:
        clean = run_import(
            silos,
            clean_region,
            "organizations",
            source,
            "--import-uuid",
            import_id,
            "--batch-size",
            "20",
            cwd=tmp_path,
        )
        assert clean.returncode == 0, clean.stderr

    killed_state = Imported.read(control_db, region_db, import_id)
    clean_state = Imported.read(clean_control, clean_region, import_id)
    try:
        assert chunks_written(control_db, region_db) == chunks_written(clean_control, clean_region)
        killed, expected = canonical(killed_state), canonical(clean_state)
        assert {m: len(rows) for m, rows in killed.items()} == {m: len(rows) for m, rows in expected.items()}
        assert killed == expected
        assert len(expected["sentry.organizationmember"]) == 240
        assert len(expected["sentry.orgauthtoken"]) == 30
    finally:
        killed_state.close()
        clean_state.close()


def test_a_refused_row_names_itself_and_a_fixed_rerun_resumes(
    make_database: DatabaseFactory, tmp_path: Path, backend: str
) -> None:
    records = list(generate(orgs=4, members=1, teams=1, projects=1))
    bad = next(r for r in records if r["model"] == "sentry.organization" and r["pk"] == 3)
    # PostgreSQL refuses NUL in text; SQLite takes it, so there an over-long value (caught before the
    # database) plays the part.
    bad["fields"]["name"] = "Org\u0000three" if backend == "postgresql" else "x" * 65
    source = write_export(tmp_path / "bad.json", records)
    control_db, region_db = make_database("control"), make_database("region")
    import_id = str(uuid.uuid4())
    with running_silos(control_db, region_db, tmp_path) as silos:
        failed = run_import(
            silos,
            region_db,
            "organizations",
            source,
            "--import-uuid",
            import_id,
            "--batch-size",
            "1",
            cwd=tmp_path,
        )
        if backend == "postgresql":
            assert failed.returncode == 4, failed.stderr
            assert "sentry.organization #3 (pk 3): the database refused it" in failed.stderr
            assert f"--import-uuid {import_id}" in failed.stderr
            state = Imported.read(control_db, region_db, import_id)
            # Region batches go two at a time on PostgreSQL: the one sent after the refused one may be
            # written too (the fixed rerun replays it below and writes it no second time).
            assert sorted(state.entries["sentry.organization"]) in ([1, 2], [1, 2, 4])
            state.close()
        else:
            assert failed.returncode == 3, failed.stderr
            assert "sentry.organization pk 3: field 'name': longer than 64 characters" in failed.stderr
        bad["fields"]["name"] = "Org three"
        write_export(source, records)
        args = ("--import-uuid", import_id, "--batch-size", "1")
        changed = run_import(silos, region_db, "organizations", source, *args, cwd=tmp_path)
        if backend == "postgresql":  # batches were written from the old file: a changed file needs consent
            assert changed.returncode == 2, changed.stderr
            assert "the export differs from the one import" in changed.stderr
            assert "--accept-changed-source" in changed.stderr
        else:  # the first run stopped at the check: nothing was recorded, so this is a first run
            assert changed.returncode == 0, changed.stderr
        fixed = run_import(
            silos, region_db, "organizations", source, *args, "--accept-changed-source", cwd=tmp_path
        )
        assert fixed.returncode == 0, fixed.stderr
        state = Imported.read(control_db, region_db, import_id)
        assert sorted(state.entries["sentry.organization"]) == [1, 2, 3, 4]
        assert state.count("sentry.organization") == 4
        assert state.count("sentry.user") == 4
        state.close()


@pytest.mark.postgresql
def test_a_refused_control_row_with_the_next_batch_in_flight_resumes_to_one_clean_state(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Control batches of one model are sent two at a time: when one is refused, the one sent after it
    may be written already; the fixed rerun replays it and writes nothing twice."""
    records = list(generate(orgs=6, members=1, teams=1, projects=1))
    bad = next(r for r in records if r["model"] == "sentry.user" and r["pk"] == 3)
    bad["fields"]["name"] = "User\u0000three"  # PostgreSQL refuses NUL in text
    source = write_export(tmp_path / "bad.json", records)
    control_db, region_db = postgres.create_database("control"), postgres.create_database("region")
    import_id = str(uuid.uuid4())
    args = ("--import-uuid", import_id, "--batch-size", "1")
    with running_silos(control_db, region_db, tmp_path) as silos:
        failed = run_import(silos, region_db, "organizations", source, *args, cwd=tmp_path)
        assert failed.returncode == 4, failed.stderr
        assert "sentry.user #3 (pk 3): the database refused it" in failed.stderr
        assert "stays written and recorded (a rerun replays it)" in failed.stderr
        state = Imported.read(control_db, region_db, import_id)
        written = set(state.entries["sentry.user"])
        state.close()
        assert {1, 2} <= written <= {1, 2, 4}, written
        bad["fields"]["name"] = "User three"
        write_export(source, records)
        fixed = run_import(
            silos, region_db, "organizations", source, *args, "--accept-changed-source", cwd=tmp_path
        )
        assert fixed.returncode == 0, fixed.stderr
        state = Imported.read(control_db, region_db, import_id)
        assert sorted(state.entries["sentry.user"]) == [1, 2, 3, 4, 5, 6]
        assert state.count("sentry.user") == 6
        assert state.count("sentry.organizationmember") == 6
        state.close()


def test_a_rerun_whose_export_lost_a_record_of_a_written_batch_is_refused(
    make_database: DatabaseFactory, tmp_path: Path
) -> None:
    """Replaying a batch that now holds other instances would map the wrong ones: refused, named."""
    records = list(generate(orgs=3, members=1, teams=1, projects=1))
    source = write_export(tmp_path / "export.json", records)
    control_db, region_db = make_database("control"), make_database("region")
    import_id = str(uuid.uuid4())
    args = ("--import-uuid", import_id, "--batch-size", "2")
    with running_silos(control_db, region_db, tmp_path) as silos:
        first = run_import(silos, region_db, "organizations", source, *args, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        write_export(source, [r for r in records if not (r["model"] == "sentry.user" and r["pk"] == 2)])
        again = run_import(
            silos, region_db, "organizations", source, *args, "--accept-changed-source", cwd=tmp_path
        )
        assert again.returncode == 2, again.stderr
        assert "the batch of sentry.user from #1 was written by an earlier run" in again.stderr
        assert "were added or removed since" in again.stderr
        state = Imported.read(control_db, region_db, import_id)
        assert state.count("sentry.user") == 3  # nothing written twice
        state.close()
