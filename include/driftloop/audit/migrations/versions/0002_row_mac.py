"""``audit_ledger.row_mac``: HMAC-SHA256 of the row hash under a key the database never sees
(NULL on rows written before: the unkeyed legacy rows ``verify`` reports).

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("audit_ledger")}
    if "row_mac" not in columns:
        op.add_column("audit_ledger", sa.Column("row_mac", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_ledger", "row_mac")
