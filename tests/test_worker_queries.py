"""The worker's queries per chunk grow neither with the number of distinct tasks (each its
own grader) that a chunk of a suite run spans nor with its number of responses: graders are
read once per process, and what a chunk of responses needs is read and written in a few
statements (grading.services `grade_responses`). Graded in-process through the service the
Celery task calls, against PostgreSQL, Redis and the judge simulator; then a run big enough to
be chunked, through the real worker."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext

from annotation.models import Verdict
from grading import services
from grading.models import GradingRun, Score
from rubrics import suites
from tests import factories
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 8
# The simulator meets a criterion whose key words the response has: each response has the
# first criterion's only, so every score is 1 point of its own grader's total.
KEY_WORDS = ["hydration", "electrolytes", "antibiotics", "paracetamol"]


def suite_run(personas, sim, n_tasks: int, models: list[str]) -> GradingRun:
    """A suite of `n_tasks` tasks, each its own published rubric (2 to 4 criteria), one
    response per task per model, and a started run over its frozen version (nothing queued:
    the test grades in-process)."""
    project, admin = personas.project, personas.admin
    tasks = []
    for i in range(n_tasks):
        task = factories.make_task(project, external_id=f"q{n_tasks}-{i:03d}")
        criteria = [(f"Has {KEY_WORDS[j]}", 1 + j) for j in range(2 + i % 3)]
        factories.make_published_rubric(project, task, criteria, admin)
        tasks.append(task)
    factories.import_responses(
        project,
        [
            {"task_id": t.external_id, "model": m, "response": f"{m} on {KEY_WORDS[0]}."}
            for t in tasks
            for m in models
        ],
    )
    suite = suites.suite_create(
        project=project, name=f"Q{n_tasks}", user=admin, task_ids=[t.pk for t in tasks]
    )
    version, _ = suites.suite_freeze(suite=suite, user=admin)
    judge = factories.make_judge(project, sim.url, name=f"sim-{n_tasks}", max_concurrency=64)
    run = services.run_create(
        project=project, suite_version=version, judge=judge, user=admin, start=False
    )
    services.run_start(run_id=run.pk, enqueue=False)
    return run


def grade(run: GradingRun, response_ids: list[int]) -> tuple[list[str], int]:
    """One chunk as a worker grades it: what became of each response, and the queries made."""
    with CaptureQueriesContext(connection) as ctx:
        said = services.grade_responses(run_id=run.pk, response_ids=response_ids)
    return said, len(ctx.captured_queries)


def pending(run: GradingRun) -> list[int]:
    return list(
        Score.objects.filter(run=run, status=Score.Status.PENDING)
        .order_by("pk")
        .values_list("response_id", flat=True)
    )


def assert_complete(run: GradingRun) -> None:
    run.refresh_from_db()
    assert run.status == GradingRun.Status.COMPLETED
    per_item = Verdict.objects.filter(run=run).values(
        "response_id", "criterion_id", "rater_id", "sample_index"
    )
    assert per_item.count() == run.total_items
    assert not per_item.annotate(n=Count("pk")).filter(n__gt=1).exists()
    # Every score by its own task's grader: its possible points are its criteria's (1+2+..).
    for score in Score.objects.filter(run=run).select_related("grader"):
        criteria = score.grader.spec["criteria"]
        assert score.possible_points == sum(c["points"] for c in criteria)
        assert score.met_points == 1


def test_a_chunk_makes_as_many_queries_over_eight_graders_as_over_one(personas, sim):
    # Eight responses of one task (one grader) ...
    one = suite_run(personas, sim, 1, [f"m{i}" for i in range(CHUNK)])
    said, one_grader = grade(one, pending(one))
    assert said == ["graded 2 items"] * CHUNK
    assert_complete(one)
    # ... and chunks of eight responses of a 40-task suite, each over four to eight tasks.
    many = suite_run(personas, sim, 40, ["m-a", "m-b"])
    ids = pending(many)
    by_task = dict(Score.objects.filter(run=many).values_list("response_id", "response__task_id"))
    spread = [ids[0::2][:CHUNK], ids[0::2][CHUNK : 2 * CHUNK]]  # eight tasks each
    counts = []
    for chunk in spread:
        assert len({by_task[r] for r in chunk}) == CHUNK
        said, queries = grade(many, chunk)
        assert all(s.startswith("graded ") for s in said), said
        counts.append(queries)
    # No more (the one-grader chunk also completed its run, and each run's first chunk marks
    # it simulated: a statement each).
    assert max(counts) <= one_grader, (counts, one_grader)
    # A dozen for the chunk, marking the run simulated, and, as it completes the run, its
    # score per model read and stored (two: grading.services._store_model_scores).
    assert one_grader <= 15
    # The rest of the run, a chunk at a time: the same per chunk, whatever it holds.
    rest = pending(many)
    per_chunk = []
    for i in range(0, len(rest), CHUNK):
        said, queries = grade(many, rest[i : i + CHUNK])
        assert all(s.startswith("graded ") for s in said), said
        per_chunk.append(queries)
    # (Less by one when its graders were read already; the last, which completes the run,
    # two more: its score per model read and stored.)
    assert max(per_chunk[:-1]) <= counts[1], (per_chunk, counts)
    assert per_chunk[-1] <= counts[1] + 2, (per_chunk, counts)
    assert_complete(many)


def test_a_chunks_queries_do_not_grow_with_its_responses(personas, sim):
    # Chunks of 1, 8 and 24 responses of a 40-task suite, each response its own task's
    # grader not read before: the cache is read once, the verdicts written in one statement
    # and the scores in one, for the whole chunk; the run's completion is one statement.
    run = suite_run(personas, sim, 40, ["m-a", "m-b"])
    ids = pending(run)
    grade(run, ids[:1])  # the run's first chunk also marks it simulated
    fresh = ids[2::2]  # one response per task, of tasks not graded yet
    counts = {}
    for size, chunk in ((1, fresh[:1]), (8, fresh[1:9]), (24, fresh[9:33])):
        said, counts[size] = grade(run, chunk)
        assert all(s.startswith("graded ") for s in said), said
    assert counts[1] == counts[8] == counts[24], counts
    assert counts[1] <= 12, counts  # BEGIN and COMMIT of the write included
    grade(run, pending(run))
    assert_complete(run)


def test_a_redelivered_chunk_asks_nothing_and_writes_no_second_verdict(personas, sim):
    run = suite_run(personas, sim, 6, ["m-a", "m-b"])
    ids = pending(run)
    said, _ = grade(run, ids)
    assert all(s.startswith("graded ") for s in said)
    requests, verdicts = sim.stats.requests, Verdict.objects.filter(run=run).count()
    assert requests == verdicts == run.total_items
    # Delivered again: the run is over.
    assert grade(run, ids)[0] == ["run is completed"] * len(ids)
    # A worker that wrote the verdicts of half the chunk and died before scoring them: the
    # chunk again decides only the missing items (from the cache: no judge call), and every
    # response ends scored once.
    half = ids[: len(ids) // 2]
    Score.objects.filter(run=run).update(status=Score.Status.PENDING, raw=None)
    Verdict.objects.filter(run=run).exclude(response_id__in=half).delete()
    GradingRun.objects.filter(pk=run.pk).update(status=GradingRun.Status.RUNNING)
    said, _ = grade(run, ids)
    assert said[: len(half)] == ["graded 0 items"] * len(half)
    assert all(s.startswith("graded ") and s != "graded 0 items" for s in said[len(half) :])
    assert sim.stats.requests == requests
    assert_complete(run)


def test_a_large_run_goes_to_the_workers_in_chunks_and_a_small_one_by_response(settings):
    settings.ASSAY_GRADE_CHUNK = CHUNK
    small = list(range(services.CHUNK_SPREAD * 2 - 1))
    assert [len(c) for c in services._chunks(small)] == [1] * len(small)
    large = list(range(1000))
    chunks = services._chunks(large)
    assert {len(c) for c in chunks} == {CHUNK}
    assert [r for c in chunks for r in c] == large


def test_a_chunked_run_completes_on_the_real_worker(personas, sim, celery_worker):
    # 130 responses of one task: chunks of two, graded by the Celery worker.
    run = suite_run(personas, sim, 1, [f"m{i:03d}" for i in range(2 * services.CHUNK_SPREAD + 2)])
    assert len(services._chunks(pending(run))[0]) == 2
    services.run_start(run_id=run.pk)
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == GradingRun.Status.COMPLETED,
        timeout=180,
        what="the chunked run to complete",
    )
    assert_complete(run)


def test_a_chunk_with_a_slow_judge_saves_each_response_as_it_goes(personas, sim, monkeypatch):
    # Every response takes longer than the chunk's write interval: each is saved on its own,
    # in order, so the run page and the stall sweep see progress.
    monkeypatch.setattr(services, "CHUNK_WRITE_S", -1)
    run = suite_run(personas, sim, 3, ["m-a", "m-b"])
    ids = pending(run)
    with CaptureQueriesContext(connection) as ctx:
        said = services.grade_responses(run_id=run.pk, response_ids=ids)
    assert all(s.startswith("graded ") for s in said), said
    inserts = [q for q in ctx.captured_queries if q["sql"].startswith('INSERT INTO "annotation_')]
    assert len(inserts) == len(ids)
    assert_complete(run)
