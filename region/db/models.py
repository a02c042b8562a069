"""Tables of the region silo, on their own ``DeclarativeBase`` so no control table can reach them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.engine import NAMING_CONVENTION
from shared.db.outbox import outbox_table
from shared.db.relocation_tables import import_chunk_table, relocation_tables
from shared.relocation.spec import Silo


class RegionBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RegionSiloInfo(RegionBase):
    """One row: which region this database belongs to, so a region never opens another's database."""

    __tablename__ = "region_silo_info"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    region_name: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RegionImport(RegionBase):
    """One import into this region: its options (a resumed run must use the same), progress and summary."""

    __tablename__ = "region_import"

    import_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    #: JSON of the options that decide what is written (scope, flags, filters, batch size).
    options: Mapped[str] = mapped_column(Text)
    #: SHA-256 of the export as read by the first run.
    source_digest: Mapped[str] = mapped_column(String(64))
    #: running, finished or failed.
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: JSON summary of the last finished run (per model counts, organization slugs).
    summary: Mapped[str | None] = mapped_column(Text)


class OrganizationSlugReservationReplica(RegionBase):
    """This region's copy of control's slug reservations for its organizations (informational)."""

    __tablename__ = "organization_slug_reservation_replica"
    __table_args__ = (UniqueConstraint("organization_id", "reservation_type", name="one_per_type"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    reservation_id: Mapped[int] = mapped_column(BigInteger(), unique=True)
    slug: Mapped[str] = mapped_column(String(50), unique=True)
    organization_id: Mapped[int] = mapped_column(BigInteger())
    region_name: Mapped[str] = mapped_column(String(48))
    reservation_type: Mapped[int] = mapped_column(Integer())


class ImportedOrganizationSlug(RegionBase):
    """The final slug control gave each organization of an import."""

    __tablename__ = "region_import_slug"

    import_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization_id: Mapped[int] = mapped_column(BigInteger(), primary_key=True)
    slug: Mapped[str] = mapped_column(String(50))


#: The imported models this silo owns, built from the model registry.
RELOCATION_TABLES = relocation_tables(RegionBase.metadata, Silo.REGION)
#: One row per written batch of a region model.
IMPORT_CHUNKS = import_chunk_table(RegionBase.metadata, "region_import_chunk")
#: Messages from this region to control, written in the transaction of the change they describe.
REGION_OUTBOX = outbox_table(RegionBase.metadata, "region_outbox")
