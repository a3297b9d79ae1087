"""manage.py import_rubrics --format {healthbench,paperbench,csv,xlsx} FILE --project SLUG
[--publish --suite NAME]"""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from rubrics import audit, formats, suites
from rubrics.models import Project


def error_text(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(exc.messages)


class Command(audit.Command):
    help = "Import rubrics from a HealthBench JSONL file or a PaperBench rubric tree."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--format", required=True, choices=formats.ALL_FORMATS)
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="FIELD=COLUMN",
            help="CSV: which column holds a field ("
            + ", ".join(formats.SHEET_FIELDS)
            + "); by default the column named like the field.",
        )
        parser.add_argument("--project", required=True, help="The project's slug.")
        parser.add_argument("--user", help="Username recorded as the author (default: none).")
        parser.add_argument("--title", default="", help="PaperBench: the rubric's title.")
        parser.add_argument("--publish", action="store_true", help="Publish what is imported.")
        parser.add_argument(
            "--suite",
            default="",
            metavar="NAME",
            help="Add the file's tasks to the suite NAME (made when new) and freeze a new "
            "version of it, in the same transaction. Needs --publish unless every imported "
            "rubric is already published.",
        )
        parser.add_argument(
            "--task",
            default="",
            metavar="EXTERNAL_ID",
            help="PaperBench: the task the tree grades (made when new; with --suite, by "
            "default the tree's root id).",
        )

    def handle(self, *args, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug '{options['project']}'.")
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user named '{options['user']}'.")
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path}: no such file.")
        try:
            with path.open("rb") as upload:
                done = suites.suite_import(
                    project=project,
                    upload=upload,
                    name=path.name,
                    format=options["format"],
                    mapping=formats.parse_mapping(options["map"]),
                    user=user,
                    title=options["title"],
                    publish=options["publish"],
                    suite=options["suite"],
                    task=options["task"],
                )
        except ValidationError as exc:
            raise CommandError(f"{path}: {error_text(exc)} Nothing was imported.") from None
        result = done.result
        self.stdout.write(
            f"Imported {result.rubrics} rubric(s) with {result.criteria} criteria"
            f"{f', published {result.published}' if result.published else ''}"
            f"{f', {result.updated} changed since the last import' if result.updated else ''}."
        )
        if done.version is not None:
            version = done.version
            state = "froze" if done.created else "unchanged, still"
            self.stdout.write(
                f"Suite '{done.suite.name}': {state} version {version.number} "
                f"({version.task_count} tasks, hash {version.content_hash[:12]})."
            )
