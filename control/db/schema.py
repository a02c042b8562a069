"""The control database's migrations and identity."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from control.db.models import ControlBase, ControlSiloInfo
from shared.db.migrate import MigrationSet

MIGRATIONS = MigrationSet(
    script_location=Path(__file__).resolve().parent / "migrations",
    version_table="alembic_version_control",
    head_revision="c0006",
    metadata=ControlBase.metadata,
    foreign_markers=("alembic_version_region",),
)


def claim_database(engine: Engine) -> None:
    """Give the installation its id on first start."""
    with Session(engine) as session, session.begin():
        info = session.scalar(select(ControlSiloInfo))
        if info is None:
            session.add(ControlSiloInfo(id=1))
