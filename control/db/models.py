"""Tables of the control silo, on their own ``DeclarativeBase`` so no region table can reach them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, MetaData, String, func
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


#: The imported models this silo owns, built from the model registry.
RELOCATION_TABLES = relocation_tables(ControlBase.metadata, Silo.CONTROL)
#: One row per written batch of a control model.
IMPORT_CHUNKS = import_chunk_table(ControlBase.metadata, "control_import_chunk")
#: Messages from control to the regions, written in the transaction of the change they describe.
CONTROL_OUTBOX = outbox_table(ControlBase.metadata, "control_outbox")
