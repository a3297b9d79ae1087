"""Grade a suite (or one rubric version) from the terminal, in this process, with a progress
line:

    python manage.py grade --suite NAME [--suite-version N] --judge NAME [--project SLUG]
        [--models a,b] [--sample-indices 0,1] [--tasks ext1,ext2] [--mode batched]
        [--responses FILE.jsonl] [--output FILE.json]
    python manage.py grade --rubric-version ID --judge NAME [--responses FILE.jsonl] ...

A rubric version is graded as its rubric's suite of one: there is one grading path. With
`--responses`, the responses of the file are imported (those already imported, same task,
model and sample index, are reused) and only they are graded. The run is an ordinary run (it
shows on the run page); judge limits and the cache apply. `--output` writes the run's report
(grading.selectors.run_report) as one JSON document.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import Q

from annotation import services as annotation_services
from annotation.models import Response
from grading import selectors, services, workers
from grading.models import GradingRun, Judge, Score
from rubrics import audit, suites, uploads
from rubrics.models import Grader, Project, Suite


class Command(audit.Command):
    help = "Grade a suite version (or a published rubric version) with a judge, in this process."

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--suite", help="The suite's name")
        target.add_argument("--rubric-version", type=int, help="A published rubric version's id")
        parser.add_argument("--suite-version", type=int, help="Its version number (newest)")
        parser.add_argument("--project", help="The project's slug, when suite names repeat")
        parser.add_argument("--judge", required=True, help="The judge's name in the project")
        parser.add_argument("--models", help="Only these models (comma-separated)")
        parser.add_argument("--sample-indices", help="Only these sample indices (e.g. 0,1)")
        parser.add_argument("--tasks", help="Only these tasks (external ids, comma-separated)")
        parser.add_argument("--responses", help="JSONL, one response a line: import, then grade")
        parser.add_argument("--mode", choices=GradingRun.Mode.values, default="per_criterion")
        parser.add_argument("--no-cache", action="store_true")
        parser.add_argument("--parallel", type=int, default=16, help="responses at a time")
        parser.add_argument("--output", help="Write the results to this JSON file")

    def handle(self, *args, **opts):
        project = self._project(opts["project"])
        if opts["suite"] is not None:
            project, target = self._suite_version(opts["suite"], opts["suite_version"], project)
            target = {"suite_version": target}
        else:
            if opts["suite_version"] is not None:
                raise CommandError("--suite-version goes with --suite.")
            project, grader = self._grader(opts["rubric_version"], project)
            target = {"grader": grader}
        judge = Judge.objects.filter(project=project, name=opts["judge"]).first()
        if judge is None:
            raise CommandError(f"No judge named {opts['judge']!r} in project {project.slug}.")
        responses = None
        if opts["responses"]:
            responses = self._import(project, Path(opts["responses"]))
        output = Path(opts["output"]) if opts["output"] else None
        if output is not None and not output.parent.is_dir():
            raise CommandError(f"Cannot write {output}: {output.parent} is not a folder.")
        try:
            run = services.run_create(
                project=project,
                judge=judge,
                user=None,
                responses=responses,
                models=opts["models"],
                sample_indices=opts["sample_indices"],
                tasks=opts["tasks"],
                mode=opts["mode"],
                use_cache=not opts["no_cache"],
                start=False,
                **target,
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        progress = self._grade(run, opts["parallel"])
        run.refresh_from_db()
        for m in selectors.model_results(run):
            mean = "n/a" if m["mean"] is None else f"{m['mean']:.3f}"
            ci = ""
            if m["ci95"]:
                low, high = m["ci95"]
                ci = f" (95% CI {low:.3f}-{high:.3f}, resampling {m['ci_resamples']})"
            self.stdout.write(
                f"{m['model']}: mean {mean}{ci} over {m['n']} scored responses "
                f"of {m['tasks']} tasks"
            )
        self.stdout.write(
            f"run {run.pk}: {run.status}, {progress.done} verdicts, {progress.errors} errors"
        )
        if output is not None:
            report = selectors.run_report(run)
            output.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n")
            self.stdout.write(f"wrote {output}")

    # --- What to grade ---------------------------------------------------------------------

    @staticmethod
    def _project(slug: str | None) -> Project | None:
        if slug is None:
            return None
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project with the slug {slug!r}.")
        return project

    @staticmethod
    def _suite_version(name: str, number: int | None, project: Project | None):
        found = Suite.objects.filter(name=name).select_related("project")
        if project is not None:
            found = found.filter(project=project)
        found = list(found[:10])
        if not found:
            where = f" in project {project.slug}" if project else ""
            raise CommandError(f"No suite named {name!r}{where}.")
        if len(found) > 1:
            slugs = ", ".join(sorted(s.project.slug for s in found))
            raise CommandError(
                f"Several projects have a suite named {name!r} ({slugs}): name one with --project."
            )
        suite = found[0]
        version = suites.version_of(suite, number)
        if version is None:
            if number is None:
                raise CommandError(f"Suite {name!r} has no frozen version yet: freeze it first.")
            raise CommandError(f"Suite {name!r} has no version {number}.")
        return suite.project, version

    @staticmethod
    def _grader(version_id: int, project: Project | None):
        grader = (
            Grader.objects.select_related("version__rubric__project")
            .filter(version_id=version_id)
            .first()
        )
        if grader is None or (project is not None and grader.version.rubric.project != project):
            raise CommandError(f"No published rubric version with the id {version_id}.")
        return grader.version.rubric.project, grader

    def _import(self, project: Project, path: Path):
        """Import what is new in the file; the responses it names, as a queryset."""
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        lines = path.read_text().splitlines()
        keys, new_lines = [], []
        existing = set(
            Response.objects.filter(task__project=project).values_list(
                "task__external_id", "model", "sample_index"
            )
        )
        for line in lines:
            try:
                row = uploads.loads(line)
                key = (row["task_id"], row["model"], int(row.get("sample_index", 0)))
            except (ValueError, KeyError, TypeError):
                new_lines.append(line)  # the importer reports it, with its line number
                continue
            keys.append(key)
            if key not in existing:
                new_lines.append(line)
        if any(line.strip() for line in new_lines):
            result = annotation_services.responses_import_jsonl(
                project=project, lines=new_lines, filename=path.name
            )
            if result.error_count:
                for e in result.errors:
                    self.stderr.write(str(e))
                raise CommandError(f"{result.error_count} errors in {path}; nothing imported.")
        query = Q(pk__in=[])
        for task_id, model, sample in keys:
            query |= Q(task__external_id=task_id, model=model, sample_index=sample)
        return Response.objects.filter(query, task__project=project)

    # --- Grading ---------------------------------------------------------------------------

    def _grade(self, run: GradingRun, parallel: int):
        services.run_start(run_id=run.pk, enqueue=False)
        pending = list(
            Score.objects.filter(run=run, status=Score.Status.PENDING).values_list(
                "response_id", flat=True
            )
        )

        def one(response_id: int) -> None:
            try:
                services.grade_response(run_id=run.pk, response_id=response_id)
            finally:
                connection.close()

        started = beat = time.monotonic()
        # This process does a worker's job for its run: it says so, as workers do, so the run
        # page does not report that no worker is running.
        me = f"grade@{socket.gethostname()}:{os.getpid()}"
        workers.heartbeat(name=me)
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            futures = [pool.submit(one, pk) for pk in pending]
            while not all(f.done() for f in futures):
                self._progress(run, started)
                every = settings.ASSAY_WORKER_HEARTBEAT_S
                if every > 0 and time.monotonic() - beat >= every:
                    workers.heartbeat(name=me)
                    beat = time.monotonic()
                time.sleep(0.5)
            for f in futures:
                f.result()
        progress = self._progress(run, started)
        sys.stdout.write("\n")
        return progress

    def _progress(self, run, started):
        progress = selectors.run_progress(run)
        elapsed = time.monotonic() - started
        rate = progress.done / elapsed if elapsed > 0 else 0.0
        sys.stdout.write(
            f"\rgraded {progress.responses_done}/{progress.responses_total} responses · "
            f"{progress.done}/{progress.total} verdicts ({progress.percent}%) · "
            f"{progress.errors} errors · {rate:.1f} verdicts/s · {elapsed:.1f} s"
        )
        sys.stdout.flush()
        return progress
