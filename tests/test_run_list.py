"""The project's run list: suite, version, models, status, progress, score per model, cost,
judge, who started it and when; sorted by any of its sortable columns without JavaScript,
50 a page, in a number of queries that does not grow with the runs."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation.models import Rater, Response, Verdict
from grading import selectors
from grading.models import GradingRun, JudgeCall, ModelPrice, Score
from rubrics import suites
from rubrics.models import Role
from tests import factories

pytestmark = pytest.mark.django_db

ROW = re.compile(r'<tr data-run="(\d+)">')
STATUSES = ["completed", "running", "queued", "cancelled"]


class World:
    """Two suites (one with two versions), two judges, two people who start runs."""

    def __init__(self, personas):
        p = self.p = personas
        self.project = p.project
        tasks = [factories.make_task(p.project, f"t{i}") for i in range(2)]
        for task in tasks:
            factories.make_published_rubric(p.project, task, [("Mentions water", 1)], p.admin)
        factories.import_responses(
            p.project,
            [{"task_id": t.external_id, "model": m, "response": "x"} for t in tasks for m in "ab"],
        )
        zeta = suites.suite_create(project=p.project, name="zeta", task_ids=[tasks[0].pk])
        zeta_v1, _ = suites.suite_freeze(suite=zeta)
        suites.suite_update(suite=zeta, task_ids=[t.pk for t in tasks])
        zeta_v2, _ = suites.suite_freeze(suite=zeta)
        alpha = suites.suite_create(project=p.project, name="alpha", task_ids=[tasks[1].pk])
        alpha_v1, _ = suites.suite_freeze(suite=alpha)
        self.versions = [zeta_v1, zeta_v2, alpha_v1]
        self.judges = [
            factories.make_judge(p.project, "http://127.0.0.1:9/v1", name=n)
            for n in ("kappa", "delta")
        ]
        self.people = [
            factories.add_member(p.project, Role.ENGINEER, n) for n in ("olga", "bruno")
        ] + [None]
        ModelPrice.objects.create(model="judge-model", input_per_mtok=1, output_per_mtok=2)
        self.made = 0

    def add_runs(self, n: int) -> None:
        now = timezone.now()
        for _ in range(n):
            i = self.made
            self.made += 1
            version = self.versions[i % 3]
            status = STATUSES[i % 4]
            run = GradingRun.objects.create(
                project=self.project,
                suite_version=version,
                judge=self.judges[i % 2],
                created_by=self.people[i % 3],
                status=status,
                total_items=version.task_count * 2,
                started_at=None if status == "queued" else now - timedelta(minutes=i * 7 % 50),
            )
            GradingRun.objects.filter(pk=run.pk).update(created_at=now - timedelta(hours=i))
            pinned = suites.pinned_graders(version)
            responses = Response.objects.filter(task_id__in=pinned).select_related("task")
            Score.objects.bulk_create(
                Score(
                    run=run,
                    response=r,
                    grader_id=pinned[r.task_id],
                    status="done",
                    raw=(i % 5) / 4 if r.model == "a" else 1.25 - (i % 3) / 2,
                )
                for r in responses
            )
            if status == "running":  # one verdict of its items is in
                r = responses[0]
                Verdict.objects.create(
                    response=r,
                    criterion=r.task.rubrics.get().versions.get().criteria.get(),
                    rater=Rater.objects.get(judge=run.judge),
                    run=run,
                    outcome="met",
                )
            JudgeCall.objects.create(
                run=run, judge=run.judge, prompt_tokens=1_000_000 * (i % 3), completion_tokens=0
            )


@pytest.fixture
def world(personas):
    return World(personas)


def listed(client, project, query: str = "") -> list[int]:
    reply = client.get(f"/p/{project.slug}/runs/{query}")
    assert reply.status_code == 200
    return [int(pk) for pk in ROW.findall(reply.content.decode())]


def started(run):
    return run.started_at or run.created_at


SORT_VALUES = {
    "id": lambda r: r.pk,
    "suite": lambda r: (r.suite_version.suite.name, r.suite_version.number),
    "version": lambda r: r.suite_version.number,
    "status": lambda r: r.status,
    "judge": lambda r: r.judge.name,
    "started_by": lambda r: r.created_by.username if r.created_by else None,
    "started": started,
}


def expected(key: str, descending: bool) -> list[int]:
    """The order the page should show: by the value (nulls last either way), then by id."""
    runs = list(GradingRun.objects.select_related("suite_version__suite", "judge", "created_by"))
    value = SORT_VALUES[key]
    known = sorted((r for r in runs if value(r) is not None), key=lambda r: (value(r), r.pk))
    unknown = sorted((r for r in runs if value(r) is None), key=lambda r: r.pk)
    if descending:
        known.reverse()
        unknown.reverse()
    return [r.pk for r in known + unknown]


def test_every_sortable_column_sorts_both_ways(client, world):
    world.add_runs(12)
    client.force_login(world.p.engineer)
    assert set(selectors.RUN_SORTS) == set(SORT_VALUES)
    for key in SORT_VALUES:
        assert listed(client, world.project, f"?sort={key}") == expected(key, False), key
        assert listed(client, world.project, f"?sort=-{key}") == expected(key, True), key
    # The default is newest first; an unknown sort is the default, not an error.
    assert listed(client, world.project) == expected("started", True)
    assert listed(client, world.project, "?sort=secret_column") == expected("started", True)


def test_headers_link_to_their_sort_and_back(client, world):
    world.add_runs(3)
    client.force_login(world.p.admin)
    page = client.get(f"/p/{world.project.slug}/runs/?sort=judge").content.decode()
    assert '<th aria-sort="ascending"><a href="?sort=-judge#runs" data-sort="judge">' in page
    assert '<a href="?sort=status#runs" data-sort="status">' in page
    page = client.get(f"/p/{world.project.slug}/runs/?sort=-judge").content.decode()
    assert '<th aria-sort="descending"><a href="?sort=judge#runs" data-sort="judge">' in page


def test_a_row_shows_suite_version_models_progress_scores_cost_and_who(client, world):
    world.add_runs(4)
    client.force_login(world.p.engineer)
    page = client.get(f"/p/{world.project.slug}/runs/?sort=id").content.decode()
    rows = page.split('<tr data-run="')[1:]
    # Run 0: zeta v1 (t0), completed, judge kappa, by olga; model a raw 0, model b 1.25.
    first = rows[0]
    zeta = world.versions[0].suite_id
    assert f'<a href="/suites/{zeta}/">zeta</a>' in first and "<td>v1</td>" in first
    assert "<td>a, b</td>" in first and "<td>100%</td>" in first
    assert "a 0.000</span> · <span" in first and "b 1.000</span>" in first  # clipped
    assert "$0.00" in first and "kappa" in first and "olga" in first
    # Run 1: zeta v2 (t0, t1), running with one verdict of four, by bruno; $1.00 of input.
    second = rows[1]
    assert "<td>v2</td>" in second and "<td>25%</td>" in second
    assert "$1.00" in second and "bruno" in second and "delta" in second
    # Run 2: alpha v1, queued, started by the CLI (nobody).
    third = rows[2]
    assert ">alpha</a>" in third and "queued" in third and ">CLI<" in third


def page_queries(client, project, query="") -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"/p/{project.slug}/runs/{query}").status_code == 200
    return len(queries)


def test_queries_do_not_grow_with_runs_and_pages_hold_fifty(client, world):
    client.force_login(world.p.engineer)
    world.add_runs(3)
    few = page_queries(client, world.project)
    world.add_runs(27)
    assert page_queries(client, world.project) == few
    assert page_queries(client, world.project, "?sort=-suite") == few
    assert len(listed(client, world.project)) == 30
    world.add_runs(25)
    first = listed(client, world.project, "?sort=id")
    second = listed(client, world.project, "?sort=id&page=2")
    assert len(first) == 50 and len(second) == 5
    assert first + second == expected("id", False)
    page = client.get(f"/p/{world.project.slug}/runs/?sort=id").content.decode()
    assert 'href="?sort=id&amp;page=2#runs" rel="next"' in page
    assert "Runs 1–50 of 55" in page
    assert page_queries(client, world.project, "?sort=id&page=2") == few


def test_a_thousand_runs_list_fast(client, world, capsys):
    """1,000 runs: the first page renders in a fixed number of queries. The time is printed
    (pytest -s) for the report; the assertion is a loose bound for a loaded machine."""
    world.add_runs(3)
    client.force_login(world.p.engineer)
    few = page_queries(client, world.project)
    template = GradingRun.objects.get(pk=GradingRun.objects.order_by("pk").first().pk)
    GradingRun.objects.bulk_create(
        GradingRun(
            project=world.project,
            suite_version=template.suite_version,
            judge=template.judge,
            status="completed",
            total_items=2,
        )
        for _ in range(997)
    )
    # Fewer, even: a page of finished runs without calls counts no verdicts and no prices.
    assert page_queries(client, world.project) <= few
    took = []
    for _ in range(5):
        t0 = time.perf_counter()
        listed(client, world.project, "?sort=-judge")
        took.append(time.perf_counter() - t0)
    with capsys.disabled():
        print(f"\n1,000 runs, first page sorted by judge: best {min(took) * 1000:.0f} ms")
    assert min(took) < 2.0


def test_annotators_never_see_the_run_list(client, world):
    world.add_runs(1)
    client.force_login(world.p.annotator)
    assert client.get(f"/p/{world.project.slug}/runs/").status_code in (403, 404)
