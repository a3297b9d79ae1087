"""Published and retired versions are immutable in the database itself, not only in forms.

Triggers refuse any INSERT, UPDATE or DELETE of a criterion or group whose version is not a
draft (or in review), and any change to a frozen version other than published -> retired.
A deliberate purge (deleting a whole project) sets `assay.allow_purge` to 'on' for its
transaction; nothing else may.
"""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION assay_refuse_frozen_child() RETURNS trigger AS $$
DECLARE
    vid bigint;
    st text;
BEGIN
    IF coalesce(current_setting('assay.allow_purge', true), '') = 'on' THEN
        RETURN coalesce(NEW, OLD);
    END IF;
    IF TG_OP = 'INSERT' THEN vid := NEW.version_id; ELSE vid := OLD.version_id; END IF;
    SELECT status INTO st FROM rubrics_rubricversion WHERE id = vid;
    IF st IS NOT NULL AND st NOT IN ('draft', 'in_review') THEN
        RAISE EXCEPTION 'rubric version % is %: its % rows are immutable', vid, st, TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.version_id <> OLD.version_id THEN
        SELECT status INTO st FROM rubrics_rubricversion WHERE id = NEW.version_id;
        IF st IS NOT NULL AND st NOT IN ('draft', 'in_review') THEN
            RAISE EXCEPTION 'rubric version % is %: its % rows are immutable',
                NEW.version_id, st, TG_TABLE_NAME
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    RETURN coalesce(NEW, OLD);
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION assay_refuse_frozen_version() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('assay.allow_purge', true), '') = 'on' THEN
        RETURN coalesce(NEW, OLD);
    END IF;
    IF OLD.status IN ('published', 'retired') THEN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'rubric version % is %: it cannot be deleted', OLD.id, OLD.status
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF NEW.content_hash IS DISTINCT FROM OLD.content_hash
           OR NEW.number IS DISTINCT FROM OLD.number
           OR NEW.rubric_id IS DISTINCT FROM OLD.rubric_id
           OR NEW.published_at IS DISTINCT FROM OLD.published_at
           OR NEW.published_by_id IS DISTINCT FROM OLD.published_by_id
           OR NEW.revision IS DISTINCT FROM OLD.revision
           OR NOT (NEW.status = OLD.status OR (OLD.status = 'published' AND NEW.status = 'retired'))
        THEN
            RAISE EXCEPTION 'rubric version % is %: its content is immutable', OLD.id, OLD.status
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    RETURN coalesce(NEW, OLD);
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER criterion_frozen BEFORE INSERT OR UPDATE OR DELETE ON rubrics_criterion
    FOR EACH ROW EXECUTE FUNCTION assay_refuse_frozen_child();
CREATE TRIGGER criteriongroup_frozen BEFORE INSERT OR UPDATE OR DELETE ON rubrics_criteriongroup
    FOR EACH ROW EXECUTE FUNCTION assay_refuse_frozen_child();
CREATE TRIGGER rubricversion_frozen BEFORE UPDATE OR DELETE ON rubrics_rubricversion
    FOR EACH ROW EXECUTE FUNCTION assay_refuse_frozen_version();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS criterion_frozen ON rubrics_criterion;
DROP TRIGGER IF EXISTS criteriongroup_frozen ON rubrics_criteriongroup;
DROP TRIGGER IF EXISTS rubricversion_frozen ON rubrics_rubricversion;
DROP FUNCTION IF EXISTS assay_refuse_frozen_child();
DROP FUNCTION IF EXISTS assay_refuse_frozen_version();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # A plain cursor with no parameters: the function bodies contain '%' placeholders.
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("rubrics", "0002_criterion_kinds_groups_review")]

    operations = [migrations.RunPython(forward, backward)]
