"""A reference's attached file becomes a stored file of its project (rubrics.files.store),
as task and response files are: one concept of a file, one serving view, one place in
storage. Existing files are copied into the content-addressed store under the SHA-256 they
were recorded with (their bytes unchanged), registered as StoredFile rows, and the FileField
is dropped. A file that sniffs as a document keeps its kind; anything else (images, which
were never re-encoded, and files of kinds Assay does not read) is kind "other" and is only
ever served as a download. The old copies under references/ are left in storage (a rollback
of this migration must not lose them); delete that folder once the migration has run."""

import hashlib

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import migrations, models
from django.db.models import Q


def _kind(data: bytes) -> str:
    from rubrics.files.sniff import DOCUMENT_KINDS, FileRefused, sniff

    try:
        kind = sniff(data).kind
    except FileRefused:
        return "other"
    return kind if kind in DOCUMENT_KINDS else "other"


def store_reference_files(apps, schema_editor):
    Reference = apps.get_model("rubrics", "ReferenceDeliverable")
    StoredFile = apps.get_model("rubrics", "StoredFile")
    for reference in Reference.objects.exclude(file="").select_related("task"):
        try:
            with default_storage.open(reference.file.name, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            data = None
        if data is None:  # storage lost it: the row still names it; the view answers 404
            reference.file_kind = "other"
            reference.save(update_fields=["file_kind"])
            continue
        sha = hashlib.sha256(data).hexdigest()
        path = f"files/{sha[:2]}/{sha}"
        if not default_storage.exists(path):
            default_storage.save(path, ContentFile(data))
        kind = _kind(data)
        StoredFile.objects.get_or_create(
            project_id=reference.task.project_id,
            sha256=sha,
            defaults={"kind": kind, "size": len(data)},
        )
        reference.file_sha256 = sha
        reference.file_kind = kind
        reference.file_size = len(data)
        reference.save(update_fields=["file_sha256", "file_kind", "file_size"])


class Migration(migrations.Migration):
    dependencies = [("rubrics", "0016_stored_files")]

    operations = [
        migrations.RemoveConstraint(
            model_name="referencedeliverable", name="reference_has_body_or_file"
        ),
        migrations.RemoveConstraint(
            model_name="referencedeliverable", name="reference_file_is_described"
        ),
        migrations.AddField(
            model_name="referencedeliverable",
            name="file_kind",
            field=models.CharField(blank=True, max_length=10),
        ),
        migrations.RunPython(store_reference_files, migrations.RunPython.noop),
        migrations.RemoveField(model_name="referencedeliverable", name="file"),
        migrations.AddConstraint(
            model_name="referencedeliverable",
            constraint=models.CheckConstraint(
                condition=~Q(body="") | ~Q(file_sha256=""), name="reference_has_body_or_file"
            ),
        ),
        migrations.AddConstraint(
            model_name="referencedeliverable",
            constraint=models.CheckConstraint(
                condition=Q(file_sha256="")
                | (~Q(file_name="") & ~Q(file_kind="") & Q(file_size__isnull=False)),
                name="reference_file_is_described",
            ),
        ),
    ]
