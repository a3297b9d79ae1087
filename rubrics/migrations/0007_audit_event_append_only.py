"""The audit log is append-only in the database itself, not only in the admin and the code.

PostgreSQL: a row trigger refuses UPDATE and DELETE of an audit event, and a statement
trigger refuses TRUNCATE (also when it arrives by TRUNCATE ... CASCADE from another table).
The one UPDATE allowed is the one Django's SET_NULL issues when a user or a project is
deleted: the actor's or project's foreign key becoming NULL, every other column unchanged
(their username and slug are copied on the row, so the record keeps them).

TRUNCATE is allowed only where the database sets `assay.allow_audit_truncate` to 'on'
(`ALTER DATABASE ... SET`): the disposable test and benchmark databases, which empty every
table between tests. A production database never sets it. These triggers guard against the
application and its operators' mistakes; a database superuser can still drop them.

SQLite (the embedded default): BEFORE UPDATE and DELETE triggers do the same (SQLite has no
TRUNCATE). Django rebuilds an SQLite table to alter it, which drops its triggers: a later
migration that alters this table must create them again.
"""

from django.db import migrations

POSTGRES_FORWARD = r"""
CREATE OR REPLACE FUNCTION assay_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF coalesce(current_setting('assay.allow_audit_truncate', true), '') = 'on' THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'the audit log is append-only: TRUNCATE of % is refused', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'UPDATE'
       AND (NEW.actor_id IS NULL OR NEW.actor_id = OLD.actor_id)
       AND (NEW.project_id IS NULL OR NEW.project_id = OLD.project_id)
       AND to_jsonb(NEW) - 'actor_id' - 'project_id' = to_jsonb(OLD) - 'actor_id' - 'project_id'
    THEN
        RETURN NEW;  -- a deleted user or project: its foreign key becomes NULL, nothing else
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: % of event % is refused', TG_OP, OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER auditevent_append_only BEFORE UPDATE OR DELETE ON rubrics_auditevent
    FOR EACH ROW EXECUTE FUNCTION assay_audit_append_only();
CREATE TRIGGER auditevent_no_truncate BEFORE TRUNCATE ON rubrics_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION assay_audit_append_only();
"""

POSTGRES_BACKWARD = """
DROP TRIGGER IF EXISTS auditevent_append_only ON rubrics_auditevent;
DROP TRIGGER IF EXISTS auditevent_no_truncate ON rubrics_auditevent;
DROP FUNCTION IF EXISTS assay_audit_append_only();
"""

# Every column but the two foreign keys must stay as it is.
_UNCHANGED = " AND ".join(
    f"NEW.{c} IS OLD.{c}"
    for c in (
        "id",
        "at",
        "actor_username",
        "project_slug",
        "action",
        "target_type",
        "target_id",
        "target_label",
        "details",
        "source",
        "ip_address",
    )
)
SQLITE_FORWARD = [
    f"""
CREATE TRIGGER auditevent_no_update BEFORE UPDATE ON rubrics_auditevent
WHEN NOT ({_UNCHANGED}
    AND (NEW.actor_id IS NULL OR NEW.actor_id IS OLD.actor_id)
    AND (NEW.project_id IS NULL OR NEW.project_id IS OLD.project_id))
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE is refused');
END
""",
    """
CREATE TRIGGER auditevent_no_delete BEFORE DELETE ON rubrics_auditevent
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: DELETE is refused');
END
""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS auditevent_no_update",
    "DROP TRIGGER IF EXISTS auditevent_no_delete",
]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    with schema_editor.connection.cursor() as cursor:
        if vendor == "postgresql":
            # A plain cursor with no parameters: the function body contains '%' placeholders.
            cursor.execute(POSTGRES_FORWARD)
        elif vendor == "sqlite":
            for statement in SQLITE_FORWARD:
                cursor.execute(statement)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    with schema_editor.connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(POSTGRES_BACKWARD)
        elif vendor == "sqlite":
            for statement in SQLITE_BACKWARD:
                cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("rubrics", "0006_auditevent")]

    operations = [migrations.RunPython(forward, backward)]
