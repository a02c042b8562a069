"""Region silo: identity of the database.

Revision ID: r0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "region_silo_info",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("region_name", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_region_silo_info_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_region_silo_info")),
    )


def downgrade() -> None:
    op.drop_table("region_silo_info")
