"""candidate fidelity: the environments a scored candidate's numbers rest on

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 01:10:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("candidate", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fidelity", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
    # Before screening every scored candidate trained all of its split's environments.
    op.execute("UPDATE candidate SET fidelity = 'full' WHERE status = 'ok'")


def downgrade() -> None:
    with op.batch_alter_table("candidate", schema=None) as batch_op:
        batch_op.drop_column("fidelity")
