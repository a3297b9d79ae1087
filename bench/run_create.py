"""Starting a run over a HealthBench-sized suite. Prints ONE JSON line of figures.

    .venv/bin/python bench/run_create.py [--tasks 5000] [--repeat 3] [--reuse] [--profile]

Seeds, in a database of its own: `--tasks` tasks imported through the HealthBench importer,
each its own rubric of 8-15 criteria (seeded), published in bulk (bench/_django.py
`publish_in_bulk`), one suite frozen over them, two models with one response per task each
(10,000 responses at 5,000 tasks), and a judge that cannot see images (so the run's image
warnings are worked out in full). Then, `--repeat` times each: the estimate shown before a run
starts (`grading.services.run_create_estimate`) and `grading.services.run_create` itself
(start=False: nothing is queued), each timed for wall (ms), CPU of this process (ms; the
database's own time is the difference, on an idle machine) and its queries. Then the doors a
person uses, through Django's test client in this process: the runs page's form asking for
the estimate, the same form starting the run (its redirect), and the API starting one
(POST /api/projects/<slug>/runs/); wall ms each. Figures are the median over the repeats;
queries are counted on the last. The runs the doors start are queued on a queue of their own
on BENCH_BROKER_URL, deleted at the end (no worker takes them).

`--reuse` keeps the database of an earlier invocation when it holds the seeded suite (seeding
takes a minute), else seeds again. `--profile` prints a cProfile of one run_create to stderr.

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/assay_bench_run_create),
BENCH_BROKER_URL (default redis://127.0.0.1:6379/14).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from urllib.parse import urlsplit

import _django
from _django import log

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/assay_bench_run_create"
PROJECT = "Run create bench"


def seed(tasks: int, rng: random.Random) -> None:
    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.create_user(username="owner")
    _django.healthbench_case(
        owner, project_name=PROJECT, tasks=tasks, rng=rng, judge_url="http://127.0.0.1:9/v1"
    )


def timed(fn) -> tuple[object, dict]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        cpu = time.process_time() - c0
        wall = time.perf_counter() - w0
    return result, {"wall_ms": wall * 1000, "cpu_ms": cpu * 1000, "queries": len(queries)}


def median(samples: list[dict]) -> dict:
    return {
        "wall_ms": round(statistics.median(s["wall_ms"] for s in samples), 1),
        "cpu_ms": round(statistics.median(s["cpu_ms"] for s in samples), 1),
        "queries": samples[-1]["queries"],
    }


def time_doors(project, version, judge, owner, repeat: int) -> dict:
    """Wall ms (median) of the runs form's estimate, the runs form starting a run, and the API
    starting one."""
    from django.conf import settings
    from django.test import Client
    from django.urls import reverse

    settings.STORAGES = {  # the pages' static files without a collectstatic manifest
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    client = Client()
    client.force_login(owner)
    form = {
        "suite_version": str(version.pk),
        "judge": str(judge.pk),
        "mode": "per_criterion",
        "samples": "1",
        "use_cache": "on",
    }
    page = reverse("runs", args=[project.slug])
    api = f"/api/projects/{project.slug}/runs/"
    doors = {
        "runs_form_estimate": (page, {**form, "estimate": "1"}, {}, 200),
        "runs_form_start": (page, form, {}, 302),
        "api_run_start": (
            api,
            json.dumps({"suite": version.suite_id, "judge": judge.pk}),
            {"content_type": "application/json"},
            201,
        ),
    }
    # The runs list under the form works out each run's summary once, then reads it cached:
    # the doors are timed warm, as a person who has the page open posts it.
    assert client.get(page).status_code == 200
    figures = {}
    for name, (path, data, extra, expected) in doors.items():
        walls = []
        for _ in range(repeat):
            w0 = time.perf_counter()
            response = client.post(path, data, **extra)
            walls.append((time.perf_counter() - w0) * 1000)
            assert response.status_code == expected, (name, response.status_code)
        figures[f"{name}_ms"] = round(statistics.median(walls), 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    url = urlsplit(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
    if {url.hostname, urlsplit(broker).hostname} - {"127.0.0.1", "localhost", "::1"}:
        sys.exit("The benchmark runs on loopback only.")
    queue = f"bench-run-create-{os.urandom(4).hex()}"
    os.environ.update(CELERY_BROKER_URL=broker, CELERY_QUEUE=queue, ALLOWED_HOSTS="testserver")
    os.environ["BENCH_DATABASE_URL"] = url._replace(path="/postgres").geturl()
    _django.setup(url.path.lstrip("/"))

    from django.core.management import call_command

    from grading import services
    from grading.models import GradingRun
    from rubrics.models import Project, SuiteVersion

    project = Project.objects.filter(name=PROJECT).first()
    if not (args.reuse and project and project.tasks.count() == args.tasks):
        call_command("flush", interactive=False, verbosity=0)
        log(f"seeding {args.tasks} tasks")
        seed(args.tasks, random.Random(args.seed))
        project = Project.objects.get(name=PROJECT)
    GradingRun.objects.filter(project=project).delete()
    version = SuiteVersion.objects.get(suite__project=project)
    judge = project.judges.get()
    owner = project.memberships.get().user
    target = {"project": project, "suite_version": version, "judge": judge}
    log("timing")
    estimates, creates = [], []
    for _ in range(args.repeat):
        estimate, figures = timed(lambda: services.run_create_estimate(**target))
        estimates.append(figures)
        run, figures = timed(lambda: services.run_create(**target, user=owner, start=False))
        creates.append(figures)
    responses = run.scores.count()
    doors = time_doors(project, version, judge, owner, args.repeat)
    import redis

    redis.Redis.from_url(broker).delete(queue)
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        services.run_create(**target, user=owner, start=False)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats(
            os.environ.get("BENCH_SORT", "cumulative")
        ).print_stats(40)
    GradingRun.objects.filter(project=project).delete()
    _django.emit(
        "run_create",
        {
            "tasks": args.tasks,
            "responses": responses,
            "total_items": run.total_items,
            "repeat": args.repeat,
            "run_create_estimate": median(estimates),
            "run_create": median(creates),
            **doors,
            "estimate": {k: v for k, v in estimate.items() if k != "warnings"},
            "warnings": [w["message"] for w in estimate["warnings"]],
        },
    )


if __name__ == "__main__":
    main()
