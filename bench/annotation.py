"""Annotation benchmark. Prints ONE JSON line of figures.

    .venv/bin/python bench/annotation.py [--requests 60] [--responses 500] [--files-only]

On PostgreSQL (its own database, created and dropped):

1. the annotation page for a 50-criterion rubric and a 20,000-word response (Markdown with
   headings, lists, a table and code), half the criteria drafted: server-side render time
   through Django's test client (p50, p95 in ms, after warm-up) and its query count; then
   the page for an agent episode of 200 steps under a rubric with step criteria (target p95
   under 150 ms) and its query count against a 10-step episode's (target: equal); then the
   page for a response carrying a 50-page PDF once its pages are rendered (renders kept in
   storage), the PDF's preview fragment (20 page images) and one page's PNG: p50 and p95
   (target: under 200 ms), query counts against a 1-page PDF's (target: equal), and how long
   the first look took (rendering 20 pages in the bounded child process);
2. agreement (per criterion, overall, pairs, per rater) plus calibration (judge vs gold, with a
   1,000-resample bootstrap) over 100,000 verdicts: 50 criteria x 500 responses x 3 people +
   1 judge, read from the database and computed; seconds.

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/assay_bench_i5).
Targets: page p95 < 100 ms with a query count that does not grow with criteria; < 5 s.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _django import emit  # noqa: E402 - beside this file

WORDS = (  # noqa: SIM905 - easier to read as prose
    "hydration electrolyte urgent evaluation persistent vomiting dangerous dehydration "
    "monitoring temperature antibiotic resistance paracetamol dosing isolation hygiene "
    "followup appointment fever contraindication anticoagulant interaction bleeding warfarin "
    "vitamin potassium kidney function cardiac troponin ischemia aspirin the a of to and"
).split()


def long_response(words: int, rng: random.Random) -> str:
    parts, n = [], 0
    while n < words:
        k = rng.randint(60, 140)
        parts.append(" ".join(rng.choice(WORDS) for _ in range(k)) + ".")
        n += k
        if len(parts) % 15 == 0:
            parts.append(f"## Section {len(parts)}\n\n- first point\n- second point")
        if len(parts) % 40 == 0:
            parts.append("| drug | dose |\n|---|---|\n| aspirin | 300 mg |\n| warfarin | 5 mg |")
            parts.append("```\nif fever > 39:\n    call()\n```")
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--responses", type=int, default=500)
    parser.add_argument(
        "--files-only", action="store_true", help="only the page with a 50-page PDF (1c)"
    )
    args = parser.parse_args()

    db_url = os.environ.get(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/assay_bench_i5"
    )
    os.environ.update(
        DATABASE_URL=db_url,
        CELERY_BROKER_URL=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13"),
        SECRET_KEY=os.environ.get("SECRET_KEY", "bench-only-secret"),
        DEBUG="0",
        ASSAY_SECURE_COOKIES="0",
        ASSAY_SSL_REDIRECT="0",  # the test client speaks HTTP
        ASSAY_DOTENV="off",  # a demo install's .env is not the bench's
        ASSAY_JUDGE_ALLOW_PRIVATE_URLS="1",  # the calibration judge's URL is on loopback
        DJANGO_SETTINGS_MODULE="assay.settings",
        DJANGO_ALLOW_ASYNC_UNSAFE="true",
        ASSAY_MEDIA_DIR=tempfile.mkdtemp(prefix="assay-bench-media-"),  # renders start unmade
    )
    import psycopg

    url = urlsplit(db_url)
    dbname = url.path.lstrip("/")
    admin_url = url._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')
    try:
        emit("annotation", run(args))
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def run(args) -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ALLOWED_HOSTS = ["*"]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    call_command("migrate", verbosity=0)

    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from annotation import selectors
    from annotation import services as annotation_services
    from annotation.models import Assignment, QueueItem, Rater, Response, Verdict
    from rubrics.models import Role
    from tests import factories

    rng = random.Random(7)
    admin = factories.make_user("bench-admin")
    project = factories.make_project(owner=admin, name="Bench")
    people = [factories.add_member(project, Role.ANNOTATOR, f"bench-ann{i}") for i in range(3)]

    if args.files_only:
        return pdf_figures(args, project, admin, people[0])

    # 1. The annotation page.
    task = factories.make_task(project, "long", prompt="Summarise the case.")
    criteria = [(f"Criterion {i}: mentions {rng.choice(WORDS)} clearly", 1) for i in range(50)]
    grader = factories.make_published_rubric(project, task, criteria, admin)
    text = long_response(20_000, rng)
    factories.import_responses(
        project, [{"task_id": "long", "model": "m", "response": text, "sample_index": 0}]
    )
    queue = factories.make_queue(project, grader, people[:1], admin, overlap=1)
    assignment = annotation_services.assignment_claim(queue=queue, user=people[0])
    for criterion in list(grader.version.criteria.all())[:25]:
        annotation_services.verdict_save_draft(
            assignment_id=assignment.pk,
            criterion_id=criterion.pk,
            outcome="met",
            explanation="because",
            evidence="hydration",
        )
    client = Client()
    client.force_login(people[0])
    url = f"/assignments/{assignment.pk}/"
    for _ in range(5):
        assert client.get(url).status_code == 200
    times = []
    for _ in range(args.requests):
        start = time.perf_counter()
        reply = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert reply.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]

    # 1b. The annotation page for an agent episode of 200 steps (a rubric with step criteria:
    # a decision grid per step criterion), and its query count against a 10-step one.
    from tests.episode_fixtures import add_episode, publish_rubric, refund_episode

    def episode_page(steps: int) -> str:
        episode_task = factories.make_task(project, f"agent-{steps}")
        episode_grader = publish_rubric(project, episode_task, admin)
        add_episode(episode_task, refund_episode(steps, tag=str(steps)))
        episode_queue = factories.make_queue(project, episode_grader, people[:1], admin, overlap=1)
        claimed = annotation_services.assignment_claim(queue=episode_queue, user=people[0])
        return f"/assignments/{claimed.pk}/"

    episode_queries = {}
    for steps in (10, 200):
        episode_url = episode_page(steps)
        for _ in range(3):
            assert client.get(episode_url).status_code == 200
        with CaptureQueriesContext(connection) as captured:
            client.get(episode_url)
        episode_queries[steps] = len(captured.captured_queries)
    episode_times = []
    for _ in range(args.requests):
        start = time.perf_counter()
        assert client.get(episode_url).status_code == 200
        episode_times.append((time.perf_counter() - start) * 1000)
    episode_times.sort()
    episode_p95 = episode_times[min(len(episode_times) - 1, round(0.95 * (len(episode_times) - 1)))]

    files = pdf_figures(args, project, admin, people[0])

    # 2. 100,000 verdicts: 3 people on every item (submitted), 1 judge on every item.
    task2 = factories.make_task(project, "many")
    grader2 = factories.make_published_rubric(
        project, task2, [(f"Check {i}", 1) for i in range(50)], admin
    )
    Response.objects.bulk_create(
        Response(task=task2, model="m", text=f"answer {i}", sample_index=i)
        for i in range(args.responses)
    )
    queue2 = factories.make_queue(project, grader2, people, admin, overlap=3)
    items = list(QueueItem.objects.filter(queue=queue2).values_list("pk", "response_id"))
    raters = {p.pk: annotation_services.person_rater(project=project, user=p) for p in people}
    now = timezone.now()
    Assignment.objects.bulk_create(
        Assignment(
            item_id=item,
            queue=queue2,
            annotator=p,
            rater=raters[p.pk],
            status=Assignment.Status.SUBMITTED,
            opened_at=now,
            lease_expires_at=now,
            submitted_at=now,
            seconds_spent=60,
        )
        for item, _ in items
        for p in people
    )
    turns = {
        (a.item_id, a.annotator_id): a
        for a in Assignment.objects.filter(queue=queue2).only("pk", "item_id", "annotator_id")
    }
    crits = list(grader2.version.criteria.values_list("pk", flat=True))
    judge = factories.make_judge(project, "http://127.0.0.1:9/v1", name="bench-judge")
    run = factories.make_run(
        project=project, grader=grader2, judge=judge, total_items=len(items) * len(crits)
    )
    verdicts = []
    for item, response_id in items:
        for c in crits:
            truth = rng.random() < 0.55
            for p in people:
                said = truth if rng.random() > 0.12 else not truth
                verdicts.append(
                    Verdict(
                        response_id=response_id,
                        criterion_id=c,
                        rater=raters[p.pk],
                        grader=grader2,
                        assignment=turns[(item, p.pk)],
                        outcome="met" if said else "unmet",
                    )
                )
            said = truth if rng.random() > 0.2 else not truth
            verdicts.append(
                Verdict(
                    response_id=response_id,
                    criterion_id=c,
                    rater_id=judge.rater_id,
                    grader=grader2,
                    run=run,
                    outcome="met" if said else "unmet",
                )
            )
    Verdict.objects.bulk_create(verdicts, batch_size=5000)
    n_verdicts = Verdict.objects.filter(criterion__version=grader2.version).count()
    assert Rater.objects.filter(project=project).count() == 4
    profile = None
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    start = time.perf_counter()
    agreement = selectors.agreement_report(grader2.version)
    agreement_s = time.perf_counter() - start
    calibration = selectors.calibration_report(grader2.version, judge.rater_id)
    seconds = time.perf_counter() - start
    if profile is not None:
        import pstats

        profile.disable()
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    assert agreement.figures.overall.ratings == n_verdicts
    assert calibration.figures is not None and calibration.figures.items > 0

    return {
        "page_criteria": 50,
        "page_response_words": len(text.split()),
        "page_p50_ms": round(statistics.median(times), 1),
        "page_p95_ms": round(p95, 1),
        "page_queries": len(queries.captured_queries),
        "page_requests": args.requests,
        "episode_page_steps": 200,
        "episode_page_p50_ms": round(statistics.median(episode_times), 1),
        "episode_page_p95_ms": round(episode_p95, 1),
        "episode_page_queries_10_steps": episode_queries[10],
        "episode_page_queries_200_steps": episode_queries[200],
        **files,
        "stats_verdicts": n_verdicts,
        "stats_raters": 4,
        "agreement_calibration_s": round(seconds, 2),
        "agreement_s": round(agreement_s, 2),
        "calibration_s": round(seconds - agreement_s, 2),
        "macro_f1": round(calibration.figures.macro_f1, 3),
        "alpha_overall": round(agreement.figures.overall.alpha, 3),
        "targets": {
            "page_p95_ms": 100,
            "agreement_calibration_s": 5,
            "pdf_page_p95_ms": 200,
        },
    }


def p95_of(times: list[float]) -> float:
    times = sorted(times)
    return round(times[min(len(times) - 1, round(0.95 * (len(times) - 1)))], 1)


def pdf_figures(args, project, admin, annotator) -> dict:
    """1c. The annotation page of a response carrying a 50-page PDF (and its preview fragment
    and a page's PNG), once the pages are rendered; query counts against a 1-page PDF's."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from annotation import services as annotation_services
    from tests import factories
    from tests.file_fixtures import make_pdf, response_with_files

    client = Client()
    client.force_login(annotator)

    def urls(pages: int) -> tuple[str, str, str]:
        task = factories.make_task(project, f"pdf-{pages}")
        grader = factories.make_published_rubric(project, task, [("Reads the book", 1)], admin)
        response = response_with_files(project, task, [("book.pdf", make_pdf(pages))])
        queue = factories.make_queue(project, grader, [annotator], admin, overlap=1)
        claimed = annotation_services.assignment_claim(queue=queue, user=annotator)
        sha = next(ref for _, ref in response.episode.files()).sha256
        files = f"/p/{project.slug}/files/{sha}"
        return f"/assignments/{claimed.pk}/", f"{files}/preview/", f"{files}/pages/20.png"

    def timed(url: str) -> float:
        start = time.perf_counter()
        assert client.get(url).status_code == 200, url
        return (time.perf_counter() - start) * 1000

    out: dict = {"pdf_pages": 50}
    queries: dict[tuple[int, str], int] = {}
    for pages in (1, 50):
        page_url, fragment_url, png_url = urls(pages)
        if pages == 50:
            out["pdf_first_preview_ms"] = round(timed(fragment_url), 1)  # renders 20 pages
        for url in (page_url, fragment_url) * 3:
            timed(url)
        for what, url in (("page", page_url), ("fragment", fragment_url)):
            with CaptureQueriesContext(connection) as captured:
                timed(url)
            queries[(pages, what)] = len(captured.captured_queries)
    for what, url in (("page", page_url), ("fragment", fragment_url), ("png", png_url)):
        times = [timed(url) for _ in range(args.requests)]
        out[f"pdf_{what}_p50_ms"] = round(statistics.median(times), 1)
        out[f"pdf_{what}_p95_ms"] = p95_of(times)
    for what in ("page", "fragment"):
        out[f"pdf_{what}_queries_1_page"] = queries[(1, what)]
        out[f"pdf_{what}_queries_50_pages"] = queries[(50, what)]
    return out


if __name__ == "__main__":
    main()
