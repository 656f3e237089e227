"""awards without foreign keys (bulk clearing writes)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 17:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_FKS = (
    ("fk_awards_bid_seq_bids", "bids", ["bid_seq"], ["seq"]),
    ("fk_awards_party_id_parties", "parties", ["party_id"], ["id"]),
    ("fk_awards_session_id_market_sessions", "market_sessions", ["session_id"], ["id"]),
)


def upgrade() -> None:
    with op.batch_alter_table("awards", schema=None) as batch_op:
        for name, *_ in _FKS:
            batch_op.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("awards", schema=None) as batch_op:
        for name, table, local, remote in _FKS:
            batch_op.create_foreign_key(name, table, local, remote)
