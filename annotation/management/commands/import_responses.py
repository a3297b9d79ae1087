import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation import services
from annotation.importers import detect
from rubrics.models import Project


class Command(BaseCommand):
    help = (
        "Import model outputs: response rows as JSONL or Parquet (task_id, model, response or "
        "messages and final_state, sample_index, metadata, external_id), inspect-ai eval logs "
        "(.eval, .json) or OpenTelemetry GenAI spans (JSON). The format is found from the file "
        "unless --format names it. All or nothing; rows already imported are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--project", required=True, help="the project's slug")
        parser.add_argument("--format", choices=detect.FORMATS, default=None)

    def handle(self, *args, **options):
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"--project: no project with slug '{options['project']}'")

        def progress(rows: int, seconds: float) -> None:
            sys.stderr.write(f"\r  {rows:,} rows staged, {rows / max(seconds, 1e-9):,.0f}/s ")
            sys.stderr.flush()

        with path.open("rb") as upload:
            result = services.responses_import_file(
                project=project,
                upload=upload,
                filename=path.name,
                format=options["format"],
                progress=progress,
            )
        sys.stderr.write("\n")
        if not result.ok:
            for error in result.errors:
                self.stderr.write(f"{path.name}: {error}")
            more = result.error_count - len(result.errors)
            raise CommandError(
                f"{result.error_count} error(s){f' ({more} not shown)' if more > 0 else ''}; "
                "nothing was imported"
            )
        self.stdout.write(
            f"Imported {result.created:,} responses from {path.name}"
            f" ({result.already_present:,} already present)."
        )
