"""Annotation through the HTML and JSON doors: blind annotators, drafts and submit, gold with
its audit trail, agreement and calibration pages, and query counts that do not grow."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from sklearn.metrics import cohen_kappa_score

from annotation import selectors, services
from annotation.models import Adjudication, Assignment, Verdict
from grading import services as grading_services
from rubrics.models import Role
from tests import factories
from tests.test_api import api_client

pytestmark = pytest.mark.django_db

CRITERIA = [("Advises hydration", 2), ("Mentions rest", 1), ("Suggests antibiotics", -2)]


@pytest.fixture
def world(personas):
    p = personas
    task = factories.make_task(p.project, "t1")
    grader = factories.make_published_rubric(p.project, task, CRITERIA, p.admin)
    factories.import_responses(
        p.project,
        [
            {
                "task_id": "t1",
                "model": "m",
                "response": f"Drink water and rest {i}.",
                "sample_index": i,
            }
            for i in range(4)
        ],
    )
    second = factories.add_member(p.project, Role.ANNOTATOR)
    queue = factories.make_queue(p.project, grader, [p.annotator, second], p.admin, overlap=2)
    judge = factories.make_judge(p.project, "http://127.0.0.1:9/v1")
    run = grading_services.run_create(project=p.project, grader=grader, judge=judge, user=p.admin)
    return p, grader, queue, second, judge, run


def judge_says(run, judge, grader, outcomes: dict[tuple[int, int], str]):
    criteria = dict(enumerate(grader.version.criteria.order_by("position"), 1))
    Verdict.objects.bulk_create(
        Verdict(
            run=run,
            rater_id=judge.rater_id,
            grader=grader,
            response_id=response_id,
            criterion=criteria[position],
            outcome=outcome,
            explanation="JUDGE-SECRET rationale",
        )
        for (response_id, position), outcome in outcomes.items()
    )


def test_annotators_are_blind_to_judges_and_to_each_other(client, world):
    p, grader, queue, second, judge, run = world
    done = factories.annotate(queue, second, "unmet")
    Verdict.objects.filter(assignment=done).update(explanation="OTHER-SECRET rationale")
    judge_says(run, judge, grader, {(done.item.response_id, 1): "met"})
    mine = services.assignment_claim(queue=queue, user=p.annotator)
    assert mine.item_id == done.item_id  # the same item, so there is something to leak
    client.force_login(p.annotator)
    page = client.get(reverse("assignment", args=[mine.pk])).content.decode()
    api = api_client(p.annotator).get(f"/api/assignments/{mine.pk}/").content.decode()
    for body in (page, api):
        assert "Drink water" in body
        assert "SECRET" not in body
    # Another annotator's assignment does not exist for them, in the page or the API.
    assert client.get(reverse("assignment", args=[done.pk])).status_code == 404
    assert api_client(p.annotator).get(f"/api/assignments/{done.pk}/").status_code == 404
    assert (
        api_client(p.annotator)
        .put(
            f"/api/assignments/{done.pk}/verdicts/",
            {"criterion": 1, "outcome": "met"},
            format="json",
        )
        .status_code
        == 404
    )
    # Nor can they read verdicts, agreement, disagreements or calibration.
    version = grader.version_id
    for url in (
        f"/api/versions/{version}/agreement/",
        f"/api/versions/{version}/disagreements/",
        f"/api/versions/{version}/calibration/",
        f"/api/runs/{run.pk}/",
    ):
        assert api_client(p.annotator).get(url).status_code == 403, url
    # An outsider sees nothing at all.
    assert api_client(p.outsider).get(f"/api/assignments/{mine.pk}/").status_code == 404
    assert api_client(p.outsider).get(f"/api/queues/{queue.pk}/").status_code == 404


def test_drafts_save_through_htmx_and_submit_records_time(client, world):
    p, grader, queue, *_ = world
    client.force_login(p.annotator)
    reply = client.post(reverse("queue_next", args=[queue.pk]))
    assignment = Assignment.objects.get(annotator=p.annotator)
    assert reply.url == reverse("assignment", args=[assignment.pk])
    criteria = list(grader.version.criteria.all())
    draft = reverse("assignment_draft", args=[assignment.pk])
    bad = client.post(
        draft, {"criterion": criteria[0].pk, "outcome": "maybe"}, HTTP_HX_REQUEST="true"
    )
    assert bad.status_code == 400 and "outcome" in bad.json()["error"]
    for c in criteria[:2]:
        ok = client.post(
            draft,
            {"criterion": c.pk, "outcome": "met", "explanation": "why", "evidence": "Drink water"},
            HTTP_HX_REQUEST="true",
        )
        assert ok.status_code == 200, ok.content
    # Submitting with a criterion undecided is refused and says which.
    client.post(reverse("assignment_submit", args=[assignment.pk]))
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.ACTIVE
    client.post(draft, {"criterion": criteria[2].pk, "outcome": "na"}, HTTP_HX_REQUEST="true")
    client.post(reverse("assignment_submit", args=[assignment.pk]))
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.SUBMITTED
    assert assignment.submitted_at is not None and assignment.seconds_spent >= 0
    verdict = Verdict.objects.get(assignment=assignment, criterion=criteria[0])
    assert (verdict.outcome, verdict.evidence, verdict.run_id) == ("met", "Drink water", None)
    progress = selectors.queue_progress(queue)
    assert progress.submitted == 1 and progress.needed == 8


def test_only_reviewers_adjudicate_and_every_decision_is_audited(client, world):
    p, grader, queue, second, judge, run = world
    a = factories.annotate(queue, p.annotator, {1: "met", 2: "met", 3: "unmet"})
    factories.annotate(queue, second, {1: "unmet", 2: "met", 3: "unmet"})
    response_id = a.item.response_id
    c1 = grader.version.criteria.order_by("position")[0]
    found = selectors.disagreements(grader.version, among="people")
    assert [(d.response_id, d.criterion_id) for d in found] == [(response_id, c1.pk)]
    url = reverse("adjudicate", args=[grader.version_id, response_id, c1.pk])
    client.force_login(p.reviewer)
    page = client.get(url).content.decode()
    assert page.count("verdict-card") == 2
    client.post(url, {"outcome": "met", "note": "hydration is advised"})
    client.post(url, {"outcome": "unmet", "note": "on reflection, only implied"})
    first, second_gold = Adjudication.objects.order_by("pk")
    assert second_gold.replaces == first and second_gold.decided_by == p.reviewer
    assert (first.outcome, second_gold.outcome) == ("met", "unmet")
    assert "on reflection" in client.get(url).content.decode()
    # Decided: out of the open list.
    assert selectors.disagreements(grader.version, among="people") == []
    # Authors and engineers may look but not decide; annotators may not even look.
    for user, code in ((p.author, 403), (p.engineer, 403), (p.annotator, 403)):
        client.force_login(user)
        assert client.post(url, {"outcome": "met"}).status_code == code
    gold = api_client(p.author).post(
        f"/api/versions/{grader.version_id}/gold/",
        {"response": response_id, "criterion": c1.pk, "outcome": "met"},
        format="json",
    )
    assert gold.status_code == 403
    gold = api_client(p.admin).post(
        f"/api/versions/{grader.version_id}/gold/",
        {"response": response_id, "criterion": c1.pk, "outcome": "bogus"},
        format="json",
    )
    assert gold.status_code == 400 and "outcome" in gold.json()
    assert Adjudication.objects.count() == 2


def test_calibration_against_gold_and_flags_for_the_editor(client, world):
    p, grader, queue, second, judge, run = world
    # Both annotators agree on everything: met, met, unmet on every response.
    for user in (p.annotator, second):
        while factories.annotate(queue, user, {1: "met", 2: "met", 3: "unmet"}):
            pass
    responses = sorted(queue.items.values_list("response_id", flat=True))
    # The judge: right on criterion 1, wrong on half of criterion 2, right on 3.
    judged = {}
    for i, r in enumerate(responses):
        judged[(r, 1)] = "met"
        judged[(r, 2)] = "unmet" if i % 2 else "met"
        judged[(r, 3)] = "unmet" if i else "met"
    judge_says(run, judge, grader, judged)
    c3 = grader.version.criteria.order_by("position")[2]
    # Four items are too few to flag anything by default (10): the figure stands with its n
    # and the page says why nothing is flagged.
    report = selectors.calibration_report(grader.version, judge.rater_id)
    assert report.min_items == 10 and not report.flagged
    assert report.too_few[c3.pk] == "judge kappa below 0.6 on 4 items; flags need 10"
    client.force_login(p.admin)
    page = client.get(reverse("calibration", args=[grader.version_id])).content.decode()
    assert "not flagged: judge kappa below 0.6 on 4 items; flags need 10" in page
    assert 'data-testid="confusion"' in page and 'data-share="0.500"' in page
    assert "(n=4)" in page
    client.post(
        reverse("calibration", args=[grader.version_id]), {"threshold": "0.6", "min_items": "4"}
    )
    bad = client.post(
        reverse("calibration", args=[grader.version_id]),
        {"threshold": "0.6", "min_items": "²"},
        follow=True,
    )
    assert "min_items: A whole number from 1 to 100000." in bad.content.decode()
    report = selectors.calibration_report(grader.version, judge.rater_id)
    assert report.min_items == 4 and report.gold_items == 12 and report.figures.items == 12
    c2 = grader.version.criteria.order_by("position")[1]
    f2 = report.figures.per_criterion[c2.pk]
    gold2 = ["met"] * 4
    pred2 = [judged[(r, 2)] for r in responses]
    assert f2.accuracy == 0.5 and f2.recall == 0.5 and f2.precision == 1.0
    assert f2.confusion == [[2, 2, 0], [0, 0, 0], [0, 0, 0]]
    assert f2.kappa is None or f2.kappa == pytest.approx(cohen_kappa_score(gold2, pred2))
    assert c3.pk in report.flagged  # one wrong "met" against all-unmet gold: kappa 0
    client.force_login(p.author)
    flags = client.get(reverse("calibration_flags", args=[grader.version_id])).content.decode()
    assert "Suggests antibiotics" in flags and "disagreeing examples" in flags
    assert f"criterion={c3.pk}" in flags
    examples = client.get(
        reverse("disagreements", args=[grader.version_id]) + f"?status=all&criterion={c3.pk}"
    ).content.decode()
    assert examples.count("Adjudicate</a>") == 1
    page = client.get(reverse("calibration", args=[grader.version_id])).content.decode()
    assert "Macro F1" in page and "flagged" in page
    assert client.get(reverse("agreement", args=[grader.version_id])).status_code == 200
    # The API says the same.
    data = api_client(p.engineer).get(f"/api/versions/{grader.version_id}/calibration/").json()
    assert data["items"] == 12
    assert [c["flagged"] for c in data["per_criterion"]] == [
        c.pk in report.flagged for c in grader.version.criteria.all()
    ]
    agreement = api_client(p.engineer).get(f"/api/versions/{grader.version_id}/agreement/").json()
    assert {r["kind"] for r in agreement["raters"]} == {"person", "judge"}


def _page_queries(client, user, assignment) -> int:
    client.force_login(user)
    with CaptureQueriesContext(connection) as ctx:
        reply = client.get(reverse("assignment", args=[assignment.pk]))
    assert reply.status_code == 200
    return len(ctx.captured_queries)


def test_annotation_page_queries_do_not_grow_with_criteria(client, personas):
    p = personas
    counts = []
    for n in (2, 25):
        task = factories.make_task(p.project)
        grader = factories.make_published_rubric(
            p.project, task, [(f"Criterion {i}", 1) for i in range(n)], p.admin
        )
        factories.import_responses(
            p.project, [{"task_id": task.external_id, "model": "m", "response": "text"}]
        )
        queue = factories.make_queue(p.project, grader, [p.annotator], p.admin, overlap=1)
        assignment = factories.annotate(queue, p.annotator, "met", submit=False)
        counts.append(_page_queries(client, p.annotator, assignment))
    assert counts[0] == counts[1], counts


def test_a_draft_save_runs_eleven_queries_whatever_the_rubric(client, personas):
    """Drafts are most of what 40 annotators send (bench/load.py): the turn and the user's
    role are read at once, the turn is locked and read with its queue, grader (not its spec)
    and item, and the count does not grow with criteria. Eleven here: the test's transaction
    adds a savepoint and its release, so nine in production."""
    p = personas
    client.force_login(p.annotator)
    counts = []
    for n in (2, 25):
        task = factories.make_task(p.project)
        grader = factories.make_published_rubric(
            p.project, task, [(f"Criterion {i}", 1) for i in range(n)], p.admin
        )
        factories.import_responses(
            p.project, [{"task_id": task.external_id, "model": "m", "response": "text"}]
        )
        queue = factories.make_queue(p.project, grader, [p.annotator], p.admin, overlap=1)
        assignment = factories.annotate(queue, p.annotator, "met", submit=False)
        criterion = grader.version.criteria.order_by("position").last()
        with CaptureQueriesContext(connection) as ctx:
            reply = client.post(
                reverse("assignment_draft", args=[assignment.pk]),
                {"criterion": criterion.pk, "outcome": "unmet"},
                HTTP_HX_REQUEST="true",
            )
        assert reply.status_code == 200 and reply.json() == {"saved": True, "error": ""}
        counts.append(len(ctx.captured_queries))
        assert Verdict.objects.get(assignment=assignment, criterion=criterion).outcome == "unmet"
    assert counts == [11, 11], counts


def test_engineer_makes_a_queue_of_chosen_models_and_annotators_see_only_theirs(client, personas):
    p = personas
    task = factories.make_task(p.project, "t9")
    grader = factories.make_published_rubric(p.project, task, CRITERIA, p.admin)
    factories.import_responses(
        p.project,
        [{"task_id": "t9", "model": m, "response": "text"} for m in ("alpha", "beta", "gamma")],
    )
    client.force_login(p.engineer)
    reply = client.post(
        reverse("queues", args=[p.project.slug]),
        {
            "name": "Two models",
            "grader": grader.hash,
            "overlap": "1",
            "annotators": [p.annotator.username],
            "models": ["alpha", "gamma"],
        },
    )
    assert reply.status_code == 302
    queue = p.project.queues.get()
    assert sorted(queue.items.values_list("response__model", flat=True)) == ["alpha", "gamma"]
    bad = client.post(
        reverse("queues", args=[p.project.slug]),
        {"name": "Two models", "grader": grader.hash, "overlap": "5", "annotators": ["nobody"]},
    )
    body = bad.content.decode()
    assert "name: This project already has a queue" in body
    assert "annotators: Not annotators in this project: nobody" in body
    other = factories.add_member(p.project, Role.ANNOTATOR)
    client.force_login(other)
    assert "Two models" not in client.get(reverse("queues", args=[p.project.slug])).content.decode()
    assert client.post(reverse("queue_next", args=[queue.pk])).status_code == 403
    client.force_login(p.annotator)
    assert "Two models" in client.get(reverse("queues", args=[p.project.slug])).content.decode()


def test_flags_for_a_draft_show_its_latest_published_version(client, world):
    from rubrics import services as rubric_services

    p, grader, queue, second, judge, run = world
    services.calibration_threshold_set(project=p.project, threshold=0.6, min_items=4)
    for user in (p.annotator, second):
        while factories.annotate(queue, user, {1: "met", 2: "unmet", 3: "unmet"}):
            pass
    responses = sorted(queue.items.values_list("response_id", flat=True))
    judge_says(
        run, judge, grader, {(r, 2): "met" if i % 2 else "unmet" for i, r in enumerate(responses)}
    )
    draft = rubric_services.draft_for_edit(rubric=grader.version.rubric, user=p.admin)
    client.force_login(p.author)
    flags = client.get(reverse("calibration_flags", args=[draft.pk])).content.decode()
    assert "v1" in flags and "Mentions rest" in flags and "Advises hydration" not in flags
    client.force_login(p.annotator)
    assert client.get(reverse("calibration_flags", args=[draft.pk])).status_code == 403


def test_admin_sets_the_project_threshold(client, world):
    p, grader, *_ = world
    url = reverse("calibration", args=[grader.version_id])
    client.force_login(p.admin)
    client.post(url, {"threshold": "0.25"})
    assert selectors.project_threshold(p.project) == 0.25
    reply = client.post(url, {"threshold": "2"}, follow=True)
    assert "threshold: A number from -1 to 1." in reply.content.decode()
    assert selectors.project_threshold(p.project) == 0.25
    client.force_login(p.reviewer)
    assert client.post(url, {"threshold": "0.9"}).status_code == 403


def test_a_submitted_item_is_shown_closed(client, world):
    p, grader, queue, *_ = world
    done = factories.annotate(queue, p.annotator, "met")
    client.force_login(p.annotator)
    page = client.get(reverse("assignment", args=[done.pk])).content.decode()
    assert 'data-testid="closed"' in page and '<fieldset class="plain" disabled>' in page
