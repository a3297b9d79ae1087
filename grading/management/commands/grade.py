"""Grade a JSONL file of responses from the terminal, in this process, with a progress line:

    python manage.py grade --rubric-version ID --responses FILE.jsonl --judge NAME [--mode batched]

Responses already imported (same task, model and sample index) are reused, not re-imported.
The run is an ordinary run (it shows on the run page); judge limits and the cache apply.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.models import Q

from annotation import services as annotation_services
from annotation.models import Response
from grading import selectors, services, workers
from grading.models import GradingRun, Judge, Score
from rubrics import uploads
from rubrics.models import Grader


class Command(BaseCommand):
    help = "Grade responses from a JSONL file with a published rubric version and a judge."

    def add_arguments(self, parser):
        parser.add_argument("--rubric-version", type=int, required=True)
        parser.add_argument("--responses", required=True, help="JSONL, one response a line")
        parser.add_argument("--judge", required=True, help="The judge's name in the project")
        parser.add_argument("--mode", choices=GradingRun.Mode.values, default="per_criterion")
        parser.add_argument("--no-cache", action="store_true")
        parser.add_argument("--parallel", type=int, default=16, help="responses at a time")

    def handle(self, *args, **opts):
        grader = (
            Grader.objects.select_related("version__rubric__project")
            .filter(version_id=opts["rubric_version"])
            .first()
        )
        if grader is None:
            raise CommandError("No published rubric version with that id.")
        project = grader.version.rubric.project
        judge = Judge.objects.filter(project=project, name=opts["judge"]).first()
        if judge is None:
            raise CommandError(f"No judge named {opts['judge']!r} in project {project.slug}.")
        path = Path(opts["responses"])
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        lines = path.read_text().splitlines()
        keys, new_lines = [], []
        existing = self._existing(project, lines)
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
        responses = Response.objects.filter(query, task__project=project)
        try:
            run = services.run_create(
                project=project,
                grader=grader,
                judge=judge,
                user=None,
                responses=responses,
                mode=opts["mode"],
                use_cache=not opts["no_cache"],
                start=False,
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
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
        with ThreadPoolExecutor(max_workers=max(1, opts["parallel"])) as pool:
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
        run.refresh_from_db()
        for s in selectors.model_summaries(run):
            mean = "n/a" if s.mean is None else f"{s.mean:.3f}"
            ci = f" (95% CI {s.ci[0]:.3f}-{s.ci[1]:.3f})" if s.ci else ""
            self.stdout.write(f"{s.model}: mean {mean}{ci} over {s.scored} scored responses")
        self.stdout.write(
            f"run {run.pk}: {run.status}, {progress.done} verdicts, {progress.errors} errors"
        )

    @staticmethod
    def _existing(project, lines) -> set[tuple[str, str, int]]:
        return set(
            Response.objects.filter(task__project=project).values_list(
                "task__external_id", "model", "sample_index"
            )
        )

    def _progress(self, run, started):
        progress = selectors.run_progress(run)
        sys.stdout.write(
            f"\rgraded {progress.responses_done}/{progress.responses_total} responses · "
            f"{progress.done}/{progress.total} verdicts · {progress.errors} errors · "
            f"{time.monotonic() - started:.1f} s"
        )
        sys.stdout.flush()
        return progress
