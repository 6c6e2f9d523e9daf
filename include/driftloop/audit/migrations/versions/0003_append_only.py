"""``audit_ledger`` is append-only in the database itself: triggers refuse UPDATE and DELETE
(PostgreSQL: also TRUNCATE), whatever the role. Only the owner of the table can drop them,
and the application role is not the owner (:func:`driftloop.audit.schema.grant_app_role`);
anyone who can is still caught by the row MACs and the anchors.

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION driftloop_audit_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_ledger is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute("DROP TRIGGER IF EXISTS audit_ledger_append_only ON audit_ledger")
        op.execute(
            "CREATE TRIGGER audit_ledger_append_only BEFORE UPDATE OR DELETE ON audit_ledger "
            "FOR EACH ROW EXECUTE FUNCTION driftloop_audit_ledger_append_only()"
        )
        op.execute("DROP TRIGGER IF EXISTS audit_ledger_no_truncate ON audit_ledger")
        op.execute(
            "CREATE TRIGGER audit_ledger_no_truncate BEFORE TRUNCATE ON audit_ledger "
            "FOR EACH STATEMENT EXECUTE FUNCTION driftloop_audit_ledger_append_only()"
        )
        op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON audit_ledger FROM PUBLIC")
    elif dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER IF NOT EXISTS audit_ledger_no_{action.lower()} "
                f"BEFORE {action} ON audit_ledger BEGIN "
                f"SELECT RAISE(ABORT, 'audit_ledger is append-only: {action} refused'); END"
            )
    else:
        raise NotImplementedError(
            f"no append-only trigger for the {dialect} dialect: use PostgreSQL or SQLite"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_ledger_no_truncate ON audit_ledger")
        op.execute("DROP TRIGGER IF EXISTS audit_ledger_append_only ON audit_ledger")
        op.execute("DROP FUNCTION IF EXISTS driftloop_audit_ledger_append_only()")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_ledger_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_ledger_no_delete")
