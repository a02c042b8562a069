"""Tables of the control silo, on their own ``DeclarativeBase`` so no region table can reach them."""

from __future__ import annotations

import uuid
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


class ControlBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ControlSiloInfo(ControlBase):
    """One row: the identity of this installation's control silo."""

    __tablename__ = "control_silo_info"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    installation_id: Mapped[str] = mapped_column(String(36), default=lambda: str(uuid.uuid4()))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OrganizationSlugReservation(ControlBase):
    """A globally unique organization slug held for an organization in a region."""

    __tablename__ = "organization_slug_reservation"
    # Organization ids are unique within a region; control keys organizations by (region, id).
    __table_args__ = (
        UniqueConstraint("region_name", "organization_id", "reservation_type", name="one_per_type"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    slug: Mapped[str] = mapped_column(String(50), unique=True)
    organization_id: Mapped[int] = mapped_column(BigInteger())
    region_name: Mapped[str] = mapped_column(String(48))
    user_id: Mapped[int | None] = mapped_column(BigInteger())
    #: ReservationType: 0 PRIMARY, 1 VANITY_ALIAS, 2 TEMPORARY_RENAME_ALIAS.
    reservation_type: Mapped[int] = mapped_column(Integer())
    #: The import that holds a temporary alias (only for TEMPORARY_RENAME_ALIAS).
    import_id: Mapped[str | None] = mapped_column(String(36))
    date_added: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OrganizationMapping(ControlBase):
    """Where an organization lives and what it is called, as control knows it."""

    __tablename__ = "organization_mapping"
    __table_args__ = (UniqueConstraint("region_name", "organization_id", name="one_per_organization"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    organization_id: Mapped[int] = mapped_column(BigInteger())
    slug: Mapped[str] = mapped_column(String(50), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    region_name: Mapped[str] = mapped_column(String(48))
    status: Mapped[int] = mapped_column(Integer())
    date_updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OrganizationMemberMapping(ControlBase):
    """Who belongs to which organization, as control knows it (from the regions' outboxes)."""

    __tablename__ = "organization_member_mapping"
    __table_args__ = (UniqueConstraint("region_name", "organizationmember_id", name="one_per_member"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    region_name: Mapped[str] = mapped_column(String(48))
    organization_id: Mapped[int] = mapped_column(BigInteger(), index=True)
    organizationmember_id: Mapped[int] = mapped_column(BigInteger())
    user_id: Mapped[int | None] = mapped_column(BigInteger())
    email: Mapped[str | None] = mapped_column(String(75))
    role: Mapped[str] = mapped_column(String(32))
    invite_status: Mapped[int] = mapped_column(Integer())


class OrganizationMemberTeamReplica(ControlBase):
    """Control's copy of a region's team memberships (from the regions' outboxes)."""

    __tablename__ = "organization_member_team_replica"
    __table_args__ = (
        UniqueConstraint("region_name", "organizationmemberteam_id", name="one_per_membership"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    region_name: Mapped[str] = mapped_column(String(48))
    organization_id: Mapped[int] = mapped_column(BigInteger(), index=True)
    organizationmemberteam_id: Mapped[int] = mapped_column(BigInteger())
    organizationmember_id: Mapped[int] = mapped_column(BigInteger())
    team_id: Mapped[int] = mapped_column(BigInteger())
    is_active: Mapped[bool] = mapped_column()


class SlugRequest(ControlBase):
    """The answer to one import's slug request for one organization, so a retry gets the same answer."""

    __tablename__ = "organization_slug_request"

    import_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    region_name: Mapped[str] = mapped_column(String(48), primary_key=True)
    organization_id: Mapped[int] = mapped_column(BigInteger(), primary_key=True)
    wanted: Mapped[str] = mapped_column(String(50))
    final: Mapped[str] = mapped_column(String(50))
    #: Why the region could not take ``final`` (the answer is then ALREADY_EXISTS; a new call retries).
    refusal: Mapped[str | None] = mapped_column(Text(), nullable=True)


#: The imported models this silo owns, built from the model registry.
RELOCATION_TABLES = relocation_tables(ControlBase.metadata, Silo.CONTROL)
#: One row per written batch of a control model.
IMPORT_CHUNKS = import_chunk_table(ControlBase.metadata, "control_import_chunk")
#: Messages from control to the regions, written in the transaction of the change they describe.
CONTROL_OUTBOX = outbox_table(ControlBase.metadata, "control_outbox")
