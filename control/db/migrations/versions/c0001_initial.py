"""Control silo: identity of the installation.

Revision ID: c0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "control_silo_info",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("installation_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_control_silo_info_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_control_silo_info")),
    )


def downgrade() -> None:
    op.drop_table("control_silo_info")
