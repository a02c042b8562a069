"""The region's record of imports: a resumed import runs with the batching it began with, unless the
operator chose another batch size, which is refused with what differs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from region.db.ledger import SqlImportLedger
from region.db.models import RegionBase, RegionImport
from region.importer.errors import OptionsMismatch
from region.importer.options import BATCH_CHARS, DEFAULT_BATCH_SIZE, ImportOptions, differences
from shared.db.engine import make_engine
from shared.relocation.spec import ImportScope


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'region.db'}")
    RegionBase.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def ledger(sessions: sessionmaker[Session]) -> SqlImportLedger:
    return SqlImportLedger(sessions)


def options(import_id: str, **changes: object) -> ImportOptions:
    return ImportOptions(scope=ImportScope.ORGANIZATIONS, import_id=import_id, **changes)  # type: ignore[arg-type]


def test_a_new_import_records_its_batching_and_a_resumed_one_keeps_it(ledger: SqlImportLedger) -> None:
    import_id = str(uuid.uuid4())
    resumed, first = ledger.begin(options(import_id, batch_size=7, batch_size_chosen=True), "digest")
    assert not resumed and (first.batch_size, first.batch_chars) == (7, BATCH_CHARS)
    resumed, again = ledger.begin(options(import_id), "digest")  # no --batch-size this time
    assert resumed and (again.batch_size, again.batch_chars) == (7, BATCH_CHARS)
    with pytest.raises(OptionsMismatch, match=r"\(batch_size 7 then, 9 now\)"):
        ledger.begin(options(import_id, batch_size=9, batch_size_chosen=True), "digest")


def test_an_import_begun_before_the_bound_on_a_batch_s_text_resumes_without_it(
    ledger: SqlImportLedger, sessions: sessionmaker[Session]
) -> None:
    import_id = str(uuid.uuid4())
    old = options(import_id, batch_size=1000, batch_chars=None)
    assert "batch_chars" not in json.loads(old.fingerprint())  # as fingerprints were before the bound
    with sessions.begin() as session:  # an import recorded by an older version
        session.add(
            RegionImport(
                import_id=import_id,
                scope=old.scope.value,
                options=old.fingerprint(),
                source_digest="digest",
                status="failed",
            )
        )
    resumed, taken = ledger.begin(options(import_id), "digest")
    assert resumed and (taken.batch_size, taken.batch_chars) == (1000, None)
    assert DEFAULT_BATCH_SIZE != 1000  # so the default really was replaced
    chosen = options(import_id, batch_size=1000, batch_size_chosen=True)
    assert ledger.begin(chosen, "digest")[1].batch_chars is None
    with pytest.raises(OptionsMismatch, match=r"\(batch_size 1000 then, 2000 now\)"):
        ledger.begin(options(import_id, batch_size=2000, batch_size_chosen=True), "digest")
    with pytest.raises(OptionsMismatch, match=r"\(merge_users false then, true now\)"):
        ledger.begin(options(import_id, merge_users=True), "digest")


def test_what_differs_names_options_a_fingerprint_does_not_hold() -> None:
    assert differences('{"a": 1}', '{"a": 1, "row_by_row": true}') == "row_by_row not set then, true now"
    assert differences("not json", '{"a": 1}') == "not json"
