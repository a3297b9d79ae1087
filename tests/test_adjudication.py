"""The adjudication page a reviewer works through: every rater named apart (a judge by its
run), "record and next" along the filtered list of disagreements, and the queue page's
progress chart per annotator."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation.models import Adjudication, Response, Verdict
from grading import services as grading_services
from rubrics import services as rubric_services
from rubrics.models import Role
from tests import factories

pytestmark = pytest.mark.django_db

CRITERIA = [("Advises hydration", 2), ("Mentions rest", 1)]


@pytest.fixture
def world(personas):
    p = personas
    task = factories.make_task(p.project, "t1")
    grader = factories.make_published_rubric(p.project, task, CRITERIA, p.admin)
    factories.import_responses(
        p.project,
        [
            {"task_id": "t1", "model": "m", "response": f"Drink water {i}.", "sample_index": i}
            for i in range(4)
        ],
    )
    second = factories.add_member(p.project, Role.ANNOTATOR)
    queue = factories.make_queue(p.project, grader, [p.annotator, second], p.admin, overlap=2)
    return p, grader, queue, second


def raters_on_page(body: str) -> list[str]:
    found = re.findall(r'<strong data-testid="rater">(.*?)</strong>', body, re.S)
    return [unescape(re.sub(r"<[^>]+>", "", f)).strip() for f in found]


def test_each_judge_verdict_names_its_judge_run_and_mode(client, world):
    p, grader, queue, second = world
    done = factories.annotate(queue, p.annotator, {1: "met", 2: "met"})
    factories.annotate(queue, second, {1: "unmet", 2: "met"})
    response_id = done.item.response_id
    c1 = grader.version.criteria.order_by("position")[0]
    sim = factories.make_judge(p.project, "http://127.0.0.1:9/v1", name="Simulated judge")
    other = factories.make_judge(p.project, "http://127.0.0.1:9/v1", name="Second opinion")
    runs = [
        grading_services.run_create(project=p.project, grader=grader, judge=judge, user=p.admin)
        for judge in (sim, sim, other)
    ]
    runs[1].mode = "batched"
    runs[1].save(update_fields=["mode"])
    for run in runs:
        Verdict.objects.create(
            run=run,
            rater_id=run.judge.rater_id,
            grader=grader,
            response_id=response_id,
            criterion=c1,
            outcome="met",
        )
    client.force_login(p.reviewer)
    url = reverse("adjudicate", args=[grader.version_id, response_id, c1.pk])
    body = client.get(url).content.decode()
    names = raters_on_page(body)
    assert len(names) == 5 and len(set(names)) == 5, names
    assert f"Judge Simulated judge · run #{runs[0].pk} (per criterion)" in names
    assert f"Judge Simulated judge · run #{runs[1].pk} (batched)" in names
    assert f"Judge Second opinion · run #{runs[2].pk} (per criterion)" in names
    assert {p.annotator.username, second.username} < set(names)  # people as before
    for run in runs:  # each judge's label links to its run
        assert f'href="{reverse("run", args=[run.pk])}"' in body


def make_disagreements(world):
    """People disagree on criterion 1 of every response and on criterion 2 of two."""
    p, grader, queue, second = world
    for user, verdicts in (
        (p.annotator, lambda i: {1: "met", 2: "met"}),
        (second, lambda i: {1: "unmet", 2: "unmet" if i < 2 else "met"}),
    ):
        i = 0
        while factories.annotate(queue, user, verdicts(i)):
            i += 1
    c1, c2 = grader.version.criteria.order_by("position")
    responses = sorted(queue.items.values_list("response_id", flat=True))
    return grader, c1, c2, responses


def test_record_and_next_walks_the_filtered_list_then_says_none_is_left(client, world):
    p = world[0]
    grader, c1, c2, responses = make_disagreements(world)
    client.force_login(p.reviewer)
    version = grader.version_id

    def record_and_next(response_id, item_criterion, outcome="met", **extra):
        url = reverse("adjudicate", args=[version, response_id, item_criterion.pk])
        reply = client.post(url, {"outcome": outcome, "next": "1", **extra})
        assert reply.status_code == 302, reply.content
        return reply.url

    def page(response_id, criterion, query):
        return f"{reverse('adjudicate', args=[version, response_id, criterion.pk])}?{query}"

    # Criterion 1 only: the list runs over the four responses in order. The reviewer starts
    # at the second; after the last comes the first, which they passed over.
    only = {"among": "people", "criterion": str(c1.pk)}
    query = f"among=people&criterion={c1.pk}"
    assert record_and_next(responses[1], c1, **only) == page(responses[2], c1, query)
    assert record_and_next(responses[2], c1, **only) == page(responses[3], c1, query)
    assert record_and_next(responses[3], c1, **only) == page(responses[0], c1, query)
    end = record_and_next(responses[0], c1, **only)
    assert end == f"{reverse('disagreements', args=[version])}?{query}"
    listing = client.get(end).content.decode()
    assert "No open disagreement is left in this list." in listing
    assert "No disagreements match." in listing
    # Unfiltered, criterion 2's two disagreements remain, in order, then the same message.
    assert record_and_next(responses[0], c2, among="all") == page(responses[1], c2, "among=all")
    end = record_and_next(responses[1], c2, among="all")
    assert end == f"{reverse('disagreements', args=[version])}?among=all"
    assert Adjudication.objects.count() == 6
    # The list's links carry its filter to the adjudication page, and that page's form on.
    listing = client.get(
        reverse("disagreements", args=[version]) + f"?status=all&among=people&criterion={c1.pk}"
    ).content.decode()
    assert f"/{c1.pk}/?among=people&amp;criterion={c1.pk}" in listing
    form = client.get(page(responses[0], c1, query)).content.decode()
    assert '<input type="hidden" name="among" value="people">' in form
    assert f'<input type="hidden" name="criterion" value="{c1.pk}">' in form


def test_record_alone_stays_and_a_refused_decision_goes_nowhere(client, world):
    p = world[0]
    grader, c1, c2, responses = make_disagreements(world)
    client.force_login(p.reviewer)
    url = reverse("adjudicate", args=[grader.version_id, responses[0], c1.pk])
    stay = client.post(url, {"outcome": "unmet", "next": "0", "among": "all"})
    assert stay.url == f"{url}?among=all"
    bad = client.post(url, {"outcome": "maybe", "next": "1", "among": "all"})
    assert bad.status_code == 200 and "outcome: Choose met, unmet or na" in bad.content.decode()
    assert list(Adjudication.objects.values_list("outcome", flat=True)) == ["unmet"]


def test_queue_page_charts_progress_per_annotator(client, world):
    p, grader, queue, second = world
    factories.annotate(queue, p.annotator)  # one submitted
    factories.annotate(queue, p.annotator, submit=False)  # one held
    client.force_login(p.admin)
    body = client.get(reverse("queue", args=[queue.pk])).content.decode()
    assert 'data-chart="queue-progress"' in body
    found = re.search(r'id="queue-chart-data" hidden data-json="([^"]*)"', body)
    chart = json.loads(unescape(found.group(1)))
    names = sorted([p.annotator.username, second.username])
    assert chart["annotators"] == names
    mine = names.index(p.annotator.username)
    # Four items, overlap 2: the annotator submitted one and holds one; two remain for them.
    assert chart["submitted"][mine] == 1 and chart["active"][mine] == 1
    assert chart["remaining"][mine] == 2
    assert chart["submitted"][1 - mine] == 0 and chart["remaining"][1 - mine] == 4


def test_gold_on_a_scale_takes_a_level_or_not_applicable_from_the_grid(client, personas):
    p = personas
    task = factories.make_task(p.project, "t2")
    rubric = rubric_services.rubric_create(
        project=p.project,
        task=task,
        title="Scaled",
        user=p.admin,
        criteria=[
            rubric_services.CriterionInput(
                text="Advises hydration",
                points=Decimal(2),
                kind="scale",
                scale=("none", "some", "full"),
            )
        ],
    )
    grader = rubric_services.version_publish(version=rubric.versions.get(), user=p.admin)
    factories.import_responses(p.project, [{"task_id": "t2", "model": "m", "response": "Rest."}])
    response = Response.objects.get(task=task)
    scale = grader.version.criteria.get()
    url = reverse("adjudicate", args=[grader.version_id, response.pk, scale.pk])
    client.force_login(p.reviewer)
    body = client.get(url).content.decode()
    assert 'class="gold-choices scale"' in body and body.count('name="value"') == 3
    assert '<span class="descriptor">some</span>' in body
    client.post(url, {"outcome": "met", "value": "0.5", "next": "0"})
    client.post(url, {"outcome": "met", "value": "0.5", "na": "1", "next": "0"})
    gold = list(Adjudication.objects.order_by("pk").values_list("outcome", "value"))
    assert gold == [("met", 0.5), ("na", None)]
    # The current gold is what the grid shows checked.
    assert 'name="na" value="1" checked' in client.get(url).content.decode()


def count_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_adjudication_and_queue_pages_queries_do_not_grow(client, world):
    p, grader, queue, second = world
    done = factories.annotate(queue, p.annotator, {1: "met", 2: "met"})
    factories.annotate(queue, second, {1: "unmet", 2: "met"})
    c1 = grader.version.criteria.order_by("position")[0]
    url = reverse("adjudicate", args=[grader.version_id, done.item.response_id, c1.pk])
    client.force_login(p.admin)
    counts = []
    for name in ("one", "two", "three"):
        judge = factories.make_judge(p.project, "http://127.0.0.1:9/v1", name=name)
        run = grading_services.run_create(
            project=p.project, grader=grader, judge=judge, user=p.admin
        )
        Verdict.objects.create(
            run=run,
            rater_id=judge.rater_id,
            grader=grader,
            response_id=done.item.response_id,
            criterion=c1,
            outcome="met",
        )
        counts.append(count_queries(client, url))
    assert counts[0] == counts[-1], counts
    queue_url = reverse("queue", args=[queue.pk])
    before = count_queries(client, queue_url)
    for _ in range(3):
        newcomer = factories.add_member(p.project, Role.ANNOTATOR)
        queue.annotators.add(newcomer)
        factories.annotate(queue, newcomer, submit=False)
    assert count_queries(client, queue_url) == before
