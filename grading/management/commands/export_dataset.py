import json
import sys
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from grading.datasets import formats, snapshots
from grading.models import GradingRun
from rubrics import audit, suites
from rubrics.models import Project, Suite


class Command(audit.Command):
    help = (
        "Stream a project's export (verdicts as JSONL or Parquet; responses as JSONL, as a zip "
        "with their files, or as Parquet with their images; tasks, HealthBench, OpenAI RFT, "
        "verl Parquet), a run's (preference pairs, scores) or a suite version's "
        "(--suite: its HealthBench file, RFT or verl rows naming it, or its card with the "
        "leaderboard) to a file, with constant memory. The file appears whole or not at all; "
        "its SHA-256 is printed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="the project's slug")
        parser.add_argument(
            "--format", choices=sorted(formats.ALL_FORMATS), default="verdicts-jsonl"
        )
        parser.add_argument(
            "--run",
            type=int,
            help="the run: for preference-pairs, scores-jsonl and step-supervision; narrows "
            "verdicts to it",
        )
        parser.add_argument("--min-margin", type=float, default=0.1)
        parser.add_argument(
            "--suite",
            help="a suite's name: for suite-card; narrows healthbench-jsonl, openai-rft and "
            "verl-parquet to its version's tasks and pinned graders",
        )
        parser.add_argument(
            "--suite-version", type=int, help="the suite's version number (default: newest)"
        )
        parser.add_argument("--output", required=True, help="file to write ('-': stdout)")
        parser.add_argument(
            "--grader-model", default="o4-mini", help="openai-rft: the score_model grader's model"
        )

    def handle(self, *args, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"--project: no project with slug '{options['project']}'")
        fmt, output = options["format"], options["output"]
        version = self.suite_version(project, options)
        try:
            params = snapshots.snapshot_params(
                project,
                fmt,
                run_id=options["run"],
                min_margin=options["min_margin"],
                suite_version_id=version.pk if version else None,
            )
        except ValidationError as exc:
            raise CommandError(
                "; ".join(
                    f"--{k.replace('_', '-')}: {' '.join(v)}" for k, v in exc.message_dict.items()
                )
            ) from None
        run = (
            GradingRun.objects.select_related("suite_version__suite").get(pk=params["run"])
            if params.get("run")
            else None
        )

        def write(out, progress=None):
            return formats.write(
                fmt,
                out,
                project=project,
                run=run,
                version=version,
                min_margin=options["min_margin"],
                progress=progress,
            )

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
            run_id=run.pk if run else None,
        )
        self.stderr.write(f"Wrote {count:,} ({fmt}), sha256 {digest}")

    def suite_version(self, project, options):
        if not options["suite"]:
            if options["suite_version"]:
                raise CommandError("--suite-version: name the suite with --suite")
            return None
        suite = Suite.objects.filter(project=project, name=options["suite"]).first()
        if suite is None:
            raise CommandError(
                f"--suite: project '{project.slug}' has no suite named '{options['suite']}'"
            )
        version = suites.version_of(suite, options["suite_version"])
        if version is None:
            raise CommandError(
                f"--suite-version: suite '{suite.name}' has no version {options['suite_version']}"
                if options["suite_version"]
                else f"--suite: suite '{suite.name}' has no frozen version yet"
            )
        return version
