"""Page speed of a HealthBench-sized suite run. Prints ONE JSON line of figures.

    .venv/bin/python bench/pages.py [--tasks 5000] [--requests 20] [--runs 1] [--profile PAGE]

Seeds, in a throwaway database: 5,000 tasks imported through the HealthBench importer, each
its own rubric of 8-15 criteria (seeded), published in bulk (bench/_django.py
`publish_in_bulk`: the real compiled graders and hashes); a suite of them, frozen with
`rubrics.suites.suite_freeze` (timed: target < 5 s); two models' responses (one per task
each, through the responses importer); a run over the suite version made by
`grading.services.run_create` (timed; not started), then completed as a worker would leave
it: a verdict and a judge call per (response, criterion), written in bulk, and every score
done (the pages read verdicts and scores, not how the judge reached them), then finished as the
worker finishes a run (`grading.services.run_finish_if_done`). With `--runs N`, N - 1 more runs
over the same version, each its scores done (other raws) and finished the same way, without
verdicts or calls: the suite page lists every run with its score per model.

Then a reviewer GETs each page with Django's test client, in this process: the first request
(cold: the run's model summaries are computed and cached), then `--requests` more: wall p50
and p95 in ms (target p95 < 300 ms), server CPU p50 (time.thread_time), and the page's query
count. Pages: the run page, its second page of scores, the runs list, the suite page; and
the leaderboard (the run page's section and the suite leaderboard API) when
grading/leaderboard.py exists. `suite_page_first_view`: the suite page with an empty cache, as
a web process that has not shown it yet (each of --cold views after cache.clear()): wall and
server CPU p50, queries.

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/assay_bench_pages),
created if missing, migrated, emptied before seeding.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import _django
from _django import log

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/assay_bench_pages"
TARGET_P95_MS = 300


def seed(tasks: int, rng: random.Random, runs: int = 1) -> dict:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from annotation.models import Verdict
    from grading import services as grading_services
    from grading.models import JudgeCall, Score
    from rubrics import bulk
    from rubrics import services as rubric_services
    from rubrics.models import Grader, Role

    figures: dict = {}
    user_model = get_user_model()
    owner = user_model.objects.create_user(username="owner")
    reviewer = user_model.objects.create_user(username="reviewer")
    case = _django.healthbench_case(
        owner,
        project_name="Pages bench",
        tasks=tasks,
        rng=rng,
        judge_url="http://127.0.0.1:9/v1",
        response_words=60,
    )
    project, suite, version, judge = case.project, case.suite, case.version, case.judge
    rubric_services.membership_set(project=project, username="reviewer", role=Role.REVIEWER)
    figures.update({k: round(v, 2) for k, v in case.timings.items()})
    figures["suite_freeze_s"] = round(case.timings["suite_freeze_s"], 3)

    t0 = time.monotonic()
    run = grading_services.run_create(
        project=project, suite_version=version, judge=judge, user=owner, start=False
    )
    figures["run_create_s"] = round(time.monotonic() - t0, 2)

    # What a worker leaves behind: a verdict and a call per (response, criterion), scores done.
    t0 = time.monotonic()
    criteria = {
        g.pk: [c["id"] for c in g.spec["criteria"]]
        for g in Grader.objects.filter(version__rubric__project=project)
    }
    scores = list(run.scores.values_list("response_id", "grader_id"))
    now = timezone.now()
    verdicts, calls = [], []
    for response_id, grader_id in scores:
        for criterion_id in criteria[grader_id]:
            outcome = rng.choice(("met", "met", "unmet"))
            verdicts.append(
                {
                    "run_id": run.pk,
                    "response_id": response_id,
                    "criterion_id": criterion_id,
                    "rater_id": judge.rater_id,
                    "grader_id": grader_id,
                    "outcome": outcome,
                    "explanation": "Seeded by bench/pages.py.",
                    "judge_model": "bench-judge",
                    "prompt_tokens": 900,
                    "completion_tokens": 40,
                }
            )
            calls.append(
                {
                    "run_id": run.pk,
                    "judge_id": judge.pk,
                    "response_id": response_id,
                    "prompt_tokens": 900,
                    "completion_tokens": 40,
                }
            )
    bulk.insert_rows(Verdict, verdicts)
    bulk.insert_rows(JudgeCall, calls)
    _finish(run, now)
    figures["seed_results_s"] = round(time.monotonic() - t0, 2)
    t0 = time.monotonic()
    for _ in range(runs - 1):
        more = grading_services.run_create(
            project=project, suite_version=version, judge=judge, user=owner, start=False
        )
        _finish(more, timezone.now())
    figures["seed_more_runs_s"] = round(time.monotonic() - t0, 2)
    figures.update(
        tasks=tasks,
        responses=len(scores),
        verdicts=len(verdicts),
        criteria=sum(len(v) for v in criteria.values()),
    )
    assert Score.objects.filter(run=run, status="done").count() == len(scores)
    return {
        "run": run,
        "suite": suite,
        "project": project,
        "reviewer": reviewer,
        "owner": owner,
        **figures,
    }


def _finish(run, now) -> None:
    """Every score of `run` done (random raws and axis scores), then the run finished as the
    worker finishes it."""
    from django.db import connection

    from grading import services as grading_services
    from grading.models import GradingRun

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE grading_score SET status = 'done', raw = random() * 1.3 - 0.2, "
            "met_points = 5, possible_points = 10, finished_at = %s, "
            "by_tag = jsonb_build_object('axis:accuracy', random(), "
            "'axis:completeness', random()) WHERE run_id = %s",
            [now, run.pk],
        )
    GradingRun.objects.filter(pk=run.pk).update(status=GradingRun.Status.RUNNING, started_at=now)
    assert grading_services.run_finish_if_done(run_id=run.pk)


def first_view(client, path: str, views: int) -> dict:
    """`path` with an empty cache, `views` times: what a web process pays the first time."""
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    wall, cpu, queries = [], [], []
    for _ in range(views):
        cache.clear()
        with CaptureQueriesContext(connection) as captured:
            w0, c0 = time.perf_counter(), time.thread_time()
            response = client.get(path)
            cpu.append((time.thread_time() - c0) * 1000)
            wall.append((time.perf_counter() - w0) * 1000)
        assert response.status_code == 200, (path, response.status_code)
        queries.append(len(captured))
    return {
        "views": views,
        "wall_ms_p50": round(statistics.median(wall), 1),
        "cpu_ms_p50": round(statistics.median(cpu), 1),
        "cpu_ms_min": round(min(cpu), 1),
        "queries": sorted(set(queries)),
    }


def pages(seeded: dict) -> dict[str, str]:
    """Name -> path of each page to time; the leaderboard's when it exists."""
    from django.urls import NoReverseMatch, reverse

    run, suite, project = seeded["run"], seeded["suite"], seeded["project"]
    paths = {
        "run_page": reverse("run", args=[run.pk]),
        "run_page_scores_2": reverse("run", args=[run.pk]) + "?page=2",
        "runs_list": reverse("runs", args=[project.slug]),
        "suite_page": reverse("suite", args=[suite.pk]),
    }
    # The leaderboard (issue 15), once grading/leaderboard.py has landed: the run and suite
    # pages show it; its API has these URL names (absent before, so the bench runs either way).
    for name, args in (
        ("api_run_leaderboard", [run.pk]),
        ("api_suite_leaderboard", [suite.pk]),
    ):
        with contextlib.suppress(NoReverseMatch):
            paths[name] = reverse(name, args=args)
            # By default the API lists every task (5,000: about 1 MB of JSON); `top` cuts it.
            paths[f"{name}_top20"] = reverse(name, args=args) + "?top=20"
    return paths


def time_page(client, path: str, requests: int) -> dict:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    w0 = time.perf_counter()
    response = client.get(path)
    cold = (time.perf_counter() - w0) * 1000
    assert response.status_code == 200, (path, response.status_code)
    wall, cpu = [], []
    for _ in range(requests):
        w0, c0 = time.perf_counter(), time.thread_time()
        response = client.get(path)
        cpu.append((time.thread_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    reset_queries()
    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    wall.sort()
    p95 = wall[min(len(wall) - 1, int(round(0.95 * (len(wall) - 1))))]
    return {
        "cold_ms": round(cold, 1),
        "p50_ms": round(statistics.median(wall), 1),
        "p95_ms": round(p95, 1),
        "cpu_ms_p50": round(statistics.median(cpu), 1),
        "queries": len(queries),
        "bytes": len(response.content),
        "under_target": p95 < TARGET_P95_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--runs", type=int, default=1, help="runs over the suite (at least 1)")
    parser.add_argument("--cold", type=int, default=5, help="first views of the suite page")
    parser.add_argument("--profile", default="", help="cProfile one GET of this page to stderr")
    args = parser.parse_args()

    os.environ["BENCH_DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    url = urlsplit(os.environ["BENCH_DATABASE_URL"])
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("The benchmark runs on loopback only.")
    db_name = url.path.lstrip("/")
    os.environ["BENCH_DATABASE_URL"] = url._replace(path="/postgres").geturl()
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    _django.setup(db_name)

    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    call_command("flush", interactive=False, verbosity=0)
    log(f"seeding {args.tasks} tasks")
    seeded = seed(args.tasks, random.Random(args.seed), runs=max(1, args.runs))
    log("seeded; timing pages")
    client = Client()
    client.force_login(seeded["reviewer"])
    suite_first = first_view(client, pages(seeded)["suite_page"], args.cold)
    figures = {name: time_page(client, path, args.requests) for name, path in pages(seeded).items()}
    # The runs list as an admin sees it: with the form that starts a run (its grader picker).
    admin = Client()
    admin.force_login(seeded["owner"])
    figures["runs_list_admin"] = time_page(admin, pages(seeded)["runs_list"], args.requests)
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        client.get(pages(seeded)[args.profile])
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats(
            os.environ.get("BENCH_SORT", "cumulative")
        ).print_stats(40)
    if os.environ.get("BENCH_DUMP"):
        Path(os.environ["BENCH_DUMP"]).write_bytes(client.get(pages(seeded)["run_page"]).content)
    _django.emit(
        "pages",
        {
            **{k: v for k, v in seeded.items() if not hasattr(v, "pk")},
            "requests": args.requests,
            "target_p95_ms": TARGET_P95_MS,
            "runs": max(1, args.runs),
            "suite_page_first_view": suite_first,
            "pages": figures,
        },
    )


if __name__ == "__main__":
    main()
