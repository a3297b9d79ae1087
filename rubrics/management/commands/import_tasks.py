from pathlib import Path

from django.core.management.base import CommandError

from rubrics import audit
from rubrics.models import Project
from rubrics.task_import import tasks_import_file


class Command(audit.Command):
    help = (
        "Import tasks from JSONL or Parquet (external_id, title, messages, context, tags, "
        "reference). All or nothing; identical tasks already stored are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--project", required=True, help="the project's slug")

    def handle(self, *args, **options):
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"--project: no project with slug '{options['project']}'")
        with path.open("rb") as upload:
            result = tasks_import_file(
                project=project, upload=upload, filename=path.name, user=None
            )
        if not result.ok:
            for error in result.errors:
                self.stderr.write(f"{path.name}: {error}")
            raise CommandError(f"{result.error_count} error(s); nothing was imported")
        self.stdout.write(
            f"Imported {result.created:,} tasks from {path.name} "
            f"({result.already_present:,} already present)."
        )
