"""Tables of the region silo, on their own ``DeclarativeBase`` so no control table can reach them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, MetaData, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.engine import NAMING_CONVENTION


class RegionBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RegionSiloInfo(RegionBase):
    """One row: which region this database belongs to, so a region never opens another's database."""

    __tablename__ = "region_silo_info"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    region_name: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
