"""The region database's migrations and identity check."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from region.db.models import RegionBase, RegionSiloInfo
from shared.db.migrate import MigrationSet
from shared.errors import SchemaMismatch

MIGRATIONS = MigrationSet(
    script_location=Path(__file__).resolve().parent / "migrations",
    version_table="alembic_version_region",
    head_revision="r0004",
    metadata=RegionBase.metadata,
    foreign_markers=("alembic_version_control",),
)


def claim_database(engine: Engine, region_name: str) -> None:
    """Record which region owns this database on first start; refuse another region's database."""
    with Session(engine) as session, session.begin():
        info = session.scalar(select(RegionSiloInfo))
        if info is None:
            session.add(RegionSiloInfo(id=1, region_name=region_name))
        elif info.region_name != region_name:
            raise SchemaMismatch(f"this database belongs to region {info.region_name!r}, not {region_name!r}")
