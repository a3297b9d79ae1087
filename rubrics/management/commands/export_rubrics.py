"""manage.py export_rubrics --format {healthbench,paperbench,csv} --project SLUG [--rubric ID]
[--output FILE]"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from rubrics import audit, formats
from rubrics.management.commands.import_rubrics import error_text
from rubrics.models import Project


class Command(audit.Command):
    help = (
        "Export a project's rubrics as HealthBench JSONL, one PaperBench rubric tree, or a CSV "
        "sheet in the importer's columns (formula-like cells guarded)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--format", required=True, choices=[*formats.FORMATS, "csv"])
        parser.add_argument("--project", required=True, help="The project's slug.")
        parser.add_argument(
            "--rubric",
            type=int,
            help="PaperBench: which rubric (its id); HealthBench: only this task rubric.",
        )
        parser.add_argument("--output", help="Write here instead of standard output.")

    def handle(self, *args, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug '{options['project']}'.")
        rubric = None
        try:
            if options["format"] == "healthbench":
                if options["rubric"] is not None:
                    rubric = formats.task_rubric_for_export(project=project, pk=options["rubric"])
                lines = formats.export_healthbench(project=project, rubric=options["rubric"])
                text = "".join(f"{line}\n" for line in lines)
            elif options["format"] == "csv":
                text = "".join(formats.export_spreadsheet(project=project))
            else:
                rubric = formats.tree_rubric_for_export(project=project, pk=options["rubric"])
                text = json.dumps(formats.export_paperbench(rubric=rubric), indent=2) + "\n"
        except ValidationError as exc:
            raise CommandError(error_text(exc)) from None
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        formats.export_recorded(project=project, format=options["format"], rubric=rubric)
