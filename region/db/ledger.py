"""The region's record of imports (implements ``region.importer.ports.Ledger``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from region.db.models import RegionImport
from region.importer.errors import OptionsMismatch, SourceChanged
from region.importer.options import ImportOptions, differences


class SqlImportLedger:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def begin(self, options: ImportOptions, digest: str) -> tuple[bool, ImportOptions]:
        with self._sessions.begin() as session:
            record = session.get(RegionImport, options.import_id)
            if record is None:
                session.add(
                    RegionImport(
                        import_id=options.import_id,
                        scope=options.scope.value,
                        options=options.fingerprint(),
                        source_digest=digest,
                        status="running",
                    )
                )
                return False, options
            options = options.resuming(record.options)
            fingerprint = options.fingerprint()
            if record.options != fingerprint:
                changed = differences(record.options, fingerprint)
                raise OptionsMismatch(
                    f"import {options.import_id} was started with other options ({changed}); "
                    "a resumed import must use the same scope, flags, filters and batch size"
                )
            if record.source_digest != digest:
                if not options.accept_changed_source:
                    raise SourceChanged(
                        f"the export differs from the one import {options.import_id} started with; batches "
                        "already written came from the old file. Start a new import, or, if only records "
                        "not yet written were corrected, resume with --accept-changed-source"
                    )
                record.source_digest = digest
            record.status = "running"
            return True, options

    def finish(self, import_id: str, summary: Mapping[str, object]) -> None:
        with self._sessions.begin() as session:
            record = session.get_one(RegionImport, import_id)
            record.status = "finished"
            record.finished_at = datetime.now(UTC)
            record.summary = json.dumps(summary, sort_keys=True)

    def fail(self, import_id: str) -> None:
        with self._sessions.begin() as session:
            record = session.get(RegionImport, import_id)
            if record is not None:
                record.status = "failed"
