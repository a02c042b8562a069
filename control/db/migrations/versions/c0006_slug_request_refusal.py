"""slug request refusal: the answer of a swap is recorded with the swap

Revision ID: c0006
Revises: c0005
Create Date: 2026-11-25 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0006"
down_revision = "c0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organization_slug_request") as batch:
        batch.add_column(sa.Column("refusal", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organization_slug_request") as batch:
        batch.drop_column("refusal")
