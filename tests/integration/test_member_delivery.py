"""An import batch's members reach a real control silo through messages that list them, in calls of at
most ``PER_CALL``: control's copies equal the region's rows."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from control.db.models import OrganizationMemberMapping
from region import organizations
from region.db.models import IMPORT_CHUNKS, RELOCATION_TABLES
from region.organizations import OrganizationService, organization_shard, produce_outbox
from shared.db.engine import make_engine
from shared.db.relocation_writer import BatchWriter
from shared.relocation.batch import Batch, BatchOptions, Row
from shared.relocation.spec import ImportScope
from tests.conftest import DatabaseFactory
from tests.exports import generate
from tests.helpers import region_beside, start_control


def rows_of(model: str, records: list[dict[str, Any]], **replace: Any) -> tuple[Row, ...]:
    chosen = [r for r in records if r["model"] == model]
    return tuple(Row(i + 1, r["pk"], {**r["fields"], **replace}) for i, r in enumerate(chosen))


def test_listed_members_reach_control_in_several_calls(
    make_database: DatabaseFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(organizations, "PER_CALL", 3)  # 7 members of one organization: 3 calls
    control_db, region_db = make_database("control"), make_database("region")
    control = start_control(control_db, tmp_path)
    region, client = region_beside(control, region_db)
    try:
        control.wait_healthy()
        service = OrganizationService(region, client, region_name="eu")
        writer = BatchWriter(
            region,
            RELOCATION_TABLES,
            IMPORT_CHUNKS,
            after_insert=produce_outbox,
            unit_of_work=service.unit_of_work,
        )
        records = list(generate(orgs=1, members=7, teams=1, projects=1))
        options = BatchOptions(import_id=str(uuid.uuid4()), scope=ImportScope.ORGANIZATIONS)
        (organization,) = writer.write(
            Batch("sentry.organization", 1, rows_of("sentry.organization", records), options)
        ).entries
        members = rows_of(
            "sentry.organizationmember", records, organization=organization.new_pk, inviter_id=None
        )
        written = writer.write(Batch("sentry.organizationmember", 1, members, options)).entries
        assert len(written) == 7
        service.drain([organization_shard(organization.new_pk)])  # whatever the commit left
        mapped = make_engine(control_db)
        with mapped.connect() as connection:
            copies = {
                (r.organizationmember_id, r.organization_id, r.user_id, r.role)
                for r in connection.execute(select(OrganizationMemberMapping.__table__))
            }
        mapped.dispose()
        m = RELOCATION_TABLES["sentry.organizationmember"].c
        with region.connect() as connection:
            rows = {
                (r.id, r.organization_id, r.user_id, r.role)
                for r in connection.execute(select(m.id, m.organization_id, m.user_id, m.role))
            }
        assert copies == rows and len(rows) == 7
        assert control.stop() == 0
        served = (tmp_path / "control.log").read_text()
        assert '"UpsertOrganizationMemberMappings":3' in served
    finally:
        client.close()
        control.stop()
        region.dispose()
