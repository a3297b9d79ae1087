import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from grading.datasets import formats
from grading.models import GradingRun
from rubrics import audit
from rubrics.models import Project

PROJECT_FORMATS = formats.PROJECT_EXPORTS
RUN_FORMATS = {"preference-pairs": formats.preference_pairs}


class Command(BaseCommand):
    help = (
        "Stream a project's verdicts (JSONL or Parquet) or a run's preference pairs to a file, "
        "with constant memory. The file appears whole or not at all; its SHA-256 is printed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="the project's slug")
        parser.add_argument(
            "--format", choices=sorted({*PROJECT_FORMATS, *RUN_FORMATS}), default="verdicts-jsonl"
        )
        parser.add_argument("--run", type=int, help="the run, for preference-pairs")
        parser.add_argument("--min-margin", type=float, default=0.1)
        parser.add_argument("--output", required=True, help="file to write ('-': stdout)")
        parser.add_argument(
            "--grader-model", default="o4-mini", help="openai-rft: the score_model grader's model"
        )

    def handle(self, *args, **options):
        with audit.origin("command"):
            self.export(options)

    def export(self, options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"--project: no project with slug '{options['project']}'")
        fmt, output = options["format"], options["output"]
        if fmt in RUN_FORMATS:
            run = (
                GradingRun.objects.select_related("suite_version__suite")
                .filter(project=project, pk=options["run"] or 0)
                .first()
            )
            if run is None:
                raise CommandError(f"--run: {fmt} needs a run of project '{project.slug}'")

            def write(out, progress=None):
                return RUN_FORMATS[fmt](
                    out, run=run, min_margin=options["min_margin"], progress=progress
                )
        else:

            def write(out, progress=None):
                return PROJECT_FORMATS[fmt](out, project=project, progress=progress)

        def progress(count: int) -> None:
            sys.stderr.write(f"\r  {count:,} written ")

        if output == "-":
            count, digest = write(sys.stdout.buffer)
        else:
            path = Path(output)
            partial = path.with_name(path.name + ".partial")
            with partial.open("wb") as out:
                count, digest = write(out, progress)
            partial.replace(path)  # a reader never sees half a file
            sys.stderr.write("\n")
            if fmt == "openai-rft":
                grader_path = path.with_name(path.stem + ".grader.json")
                grader = formats.rft_grader(model=options["grader_model"])
                grader_path.write_text(json.dumps(grader, indent=2) + "\n")
                self.stderr.write(f"Grader configuration: {grader_path}")
        formats.export_recorded(
            project=project,
            format=fmt,
            rows=count,
            sha256=digest,
            destination="stdout" if output == "-" else str(Path(output).resolve()),
            run_id=options["run"] if fmt in RUN_FORMATS else None,
        )
        self.stderr.write(f"Wrote {count:,} ({fmt}), sha256 {digest}")
