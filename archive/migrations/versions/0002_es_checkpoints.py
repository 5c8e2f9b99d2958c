"""es checkpoints

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 08:34:45.187330
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "es_checkpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("mean", sa.LargeBinary(), nullable=False),
        sa.Column("best_fitness", sa.Float(), nullable=True),
        sa.Column("mean_fitness", sa.Float(), nullable=True),
        sa.Column("std_fitness", sa.Float(), nullable=True),
        sa.Column("member_fitness", sa.JSON(), nullable=False),
        sa.Column("per_env", sa.JSON(), nullable=False),
        sa.Column("sigma", sa.Float(), nullable=True),
        sa.Column("env_steps", sa.BigInteger(), nullable=False),
        sa.Column("training_runs", sa.Integer(), nullable=False),
        sa.Column("wall_seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "campaign_id", "generation", name="uq_es_checkpoint_campaign_generation"
        ),
    )
    with op.batch_alter_table("es_checkpoint", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_es_checkpoint_campaign_id"), ["campaign_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("es_checkpoint", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_es_checkpoint_campaign_id"))

    op.drop_table("es_checkpoint")
