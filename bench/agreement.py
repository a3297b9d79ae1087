"""CPU cost of the agreement page with many raters: 50 annotators and a judge on one version.

Prints ONE JSON line: CPU milliseconds per GET (time.thread_time of the request in this
process, so server-side only: view, selectors, stats, template) p50 and min over N requests;
the process's CPU p50 too (it counts threads a library starts, as OpenBLAS does for matrix
products), wall p50, and the page's query count. On a shared machine compare runs made one
after the other: contention for the cores inflates CPU time as well.

The project is seeded as bench/load.py seeds it, through the services: three of the demo's
15-criterion rubrics, published; 100 responses each; a double-annotation queue per rubric
(overlap 2) with 50 annotators, the first 30 items of each annotated by two people and
submitted; and a grading run per rubric whose judge gave a verdict on every item (written in
bulk: the page reads verdicts, not how the judge reached them). A reviewer opens the agreement
page of the first version.

    .venv/bin/python bench/agreement.py [--requests 30] [--profile]

--profile prints a cProfile of one request to stderr (BENCH_SORT=tottime to sort so);
BENCH_DUMP=path writes the page, to compare its HTML before and after a change.

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/assay_bench_agree),
a throwaway database: created if missing, migrated, its tables emptied before seeding.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import _django
from _django import emit, log

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/assay_bench_agree"


def seed(annotators: int, responses: int, prefilled: int):
    from django.contrib.auth import get_user_model
    from load import DEMO_TASKS, seed_annotated, seed_queues, seed_rubrics

    from annotation.models import Verdict
    from grading import services as grading_services
    from rubrics import services as rubric_services
    from rubrics.models import Role

    rng = random.Random(7)
    user_model = get_user_model()
    names = [f"ann{i:02d}" for i in range(annotators)]
    user_model.objects.bulk_create(user_model(username=n) for n in ["owner", "reviewer", *names])
    owner = user_model.objects.get(username="owner")
    project = rubric_services.project_create(name="Agreement bench", user=owner)
    for name in names:
        rubric_services.membership_set(project=project, username=name, role=Role.ANNOTATOR)
    rubric_services.membership_set(project=project, username="reviewer", role=Role.REVIEWER)

    graders, tasks = seed_rubrics(project, owner, DEMO_TASKS, responses, rng)
    judge = grading_services.judge_create(
        project=project, name="simulator", base_url="http://127.0.0.1:9/v1", model="bench-judge"
    )
    queues = seed_queues(project, owner, graders, names)
    verdicts = seed_annotated(project, queues, names, prefilled, rng)
    # The judge: a run per rubric with a verdict on every (response, criterion).
    for g, task in zip(graders, tasks, strict=True):
        run = grading_services.run_create(
            project=project,
            grader=g,
            judge=judge,
            user=owner,
            responses=task.responses.all(),
            mode="batched",
            start=False,
        )
        criteria = list(g.version.criteria.values_list("pk", flat=True))
        for response_id in task.responses.values_list("pk", flat=True):
            for c in criteria:
                verdicts.append(
                    Verdict(
                        response_id=response_id,
                        criterion_id=c,
                        rater_id=judge.rater_id,
                        grader=g,
                        run=run,
                        outcome=rng.choice(["met", "met", "unmet", "na"]),
                        simulated=True,
                    )
                )
    Verdict.objects.bulk_create(verdicts, batch_size=5000)
    return graders[0].version_id, len(verdicts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--responses", type=int, default=100)
    parser.add_argument("--prefilled", type=int, default=30)
    parser.add_argument("--profile", action="store_true", help="cProfile one request to stderr")
    args = parser.parse_args()

    os.environ["BENCH_DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    url = urlsplit(os.environ["BENCH_DATABASE_URL"])
    db_name = url.path.lstrip("/")
    os.environ["BENCH_DATABASE_URL"] = url._replace(path="/postgres").geturl()
    _django.setup(db_name)

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    setup_test_environment()
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    call_command("flush", interactive=False, verbosity=0)
    log("seeding")
    version_id, n_verdicts = seed(args.annotators, args.responses, args.prefilled)
    log(f"seeded {n_verdicts} verdicts")
    client = Client()
    client.force_login(get_user_model().objects.get(username="reviewer"))
    path = f"/versions/{version_id}/agreement/"
    for _ in range(3):  # warm up templates, imports and the connection
        assert client.get(path).status_code == 200
    cpu, process_cpu, wall = [], [], []
    for _ in range(args.requests):
        w0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
        response = client.get(path)
        cpu.append((time.thread_time() - c0) * 1000)
        # The process's CPU counts threads a library starts for the request (OpenBLAS's).
        process_cpu.append((time.process_time() - p0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
        assert response.status_code == 200
    connection.queries_log.clear()  # a full log (it keeps 9,000) would capture nothing
    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    n_queries = len(queries)
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        client.get(path)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats(
            os.environ.get("BENCH_SORT", "cumulative")
        ).print_stats(40)
    if os.environ.get("BENCH_DUMP"):  # the page, to compare before and after a change
        Path(os.environ["BENCH_DUMP"]).write_bytes(response.content)
    cpu.sort()
    emit(
        "agreement",
        {
            "annotators": args.annotators,
            "verdicts": n_verdicts,
            "requests": args.requests,
            "cpu_ms_p50": round(statistics.median(cpu), 1),
            "cpu_ms_min": round(cpu[0], 1),
            "process_cpu_ms_p50": round(statistics.median(process_cpu), 1),
            "wall_ms_p50": round(statistics.median(wall), 1),
            "queries": n_queries,
            "bytes": len(response.content),
        },
    )


if __name__ == "__main__":
    main()
