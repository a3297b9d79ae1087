import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from grading import exports
from rubrics.models import Project

FORMATS = {"verdicts-jsonl": exports.verdicts_jsonl}


class Command(BaseCommand):
    help = "Stream a project's data out of PostgreSQL with constant memory."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="the project's slug")
        parser.add_argument("--format", choices=sorted(FORMATS), default="verdicts-jsonl")
        parser.add_argument("--output", required=True, help="file to write ('-': stdout)")

    def handle(self, *args, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"--project: no project with slug '{options['project']}'")
        output = options["output"]

        def progress(written: int) -> None:
            if output != "-":
                sys.stderr.write(f"\r  {written / 1e6:,.1f} MB written ")

        if output == "-":
            size, digest = FORMATS[options["format"]](sys.stdout.buffer, project=project)
        else:
            path = Path(output)
            partial = path.with_name(path.name + ".partial")
            with partial.open("wb") as out:
                size, digest = FORMATS[options["format"]](out, project=project, progress=progress)
            partial.replace(path)  # a reader never sees half a file
            sys.stderr.write("\n")
        self.stderr.write(f"Wrote {size:,} bytes, sha256 {digest}")
