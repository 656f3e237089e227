"""awards keyed by bid only: no foreign keys, no session/party copies (bulk clearing writes)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 17:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("awards", schema=None) as batch_op:
        batch_op.drop_constraint("fk_awards_bid_seq_bids", type_="foreignkey")
        batch_op.drop_constraint("fk_awards_party_id_parties", type_="foreignkey")
        batch_op.drop_constraint("fk_awards_session_id_market_sessions", type_="foreignkey")
        batch_op.drop_index("ix_awards_party_id")
        batch_op.drop_index("ix_awards_session_id")
        batch_op.drop_column("party_id")
        batch_op.drop_column("session_id")


def downgrade() -> None:
    with op.batch_alter_table("awards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_id", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("party_id", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE awards SET session_id = (SELECT session_id FROM bids WHERE seq = bid_seq), "
        "party_id = (SELECT party_id FROM bids WHERE seq = bid_seq)"
    )
    with op.batch_alter_table("awards", schema=None) as batch_op:
        batch_op.alter_column("session_id", nullable=False)
        batch_op.alter_column("party_id", nullable=False)
        batch_op.create_index("ix_awards_session_id", ["session_id"], unique=False)
        batch_op.create_index("ix_awards_party_id", ["party_id"], unique=False)
        batch_op.create_foreign_key("fk_awards_bid_seq_bids", "bids", ["bid_seq"], ["seq"])
        batch_op.create_foreign_key("fk_awards_party_id_parties", "parties", ["party_id"], ["id"])
        batch_op.create_foreign_key(
            "fk_awards_session_id_market_sessions", "market_sessions", ["session_id"], ["id"]
        )
