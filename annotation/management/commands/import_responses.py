import contextlib
import sys
from pathlib import Path

from django.core.management.base import CommandError

from annotation import services
from annotation.importers import detect
from rubrics import audit
from rubrics.models import Project


class Command(audit.Command):
    help = (
        "Import model outputs: response rows as JSONL or Parquet (task_id, model, response or "
        "messages and final_state, sample_index, metadata, external_id), inspect-ai eval logs "
        "(.eval, .json) or OpenTelemetry GenAI spans (JSON). The format is found from the file "
        "unless --format names it. The images and files rows name by path come from a bundle: "
        "FILE itself (a .zip or .tar holding responses.jsonl and the files) or --bundle. All or "
        "nothing; rows already imported are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--project", required=True, help="the project's slug")
        parser.add_argument("--format", choices=detect.FORMATS, default=None)
        parser.add_argument(
            "--bundle",
            default=None,
            help="a .zip, .tar or .tar.gz of the files the rows name by relative path",
        )

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

        bundle_path = Path(options["bundle"]) if options["bundle"] else None
        if bundle_path is not None and not bundle_path.is_file():
            raise CommandError(f"--bundle: {bundle_path}: no such file")
        with contextlib.ExitStack() as stack:
            upload = stack.enter_context(path.open("rb"))
            bundle = stack.enter_context(bundle_path.open("rb")) if bundle_path else None
            result = services.responses_import_file(
                project=project,
                upload=upload,
                filename=path.name,
                format=options["format"],
                progress=progress,
                bundle=bundle,
                bundle_name=bundle_path.name if bundle_path else "",
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
