"""People grading episodes: a step criterion is decided at each of its steps, submit needs
every step and writes the verdict on the whole response by the step rule, evidence is
anchored to a step; through the services and the JSON API."""

from __future__ import annotations

import json
import re
import time

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation import selectors, services
from annotation.models import Adjudication, Verdict
from rubrics.models import Role
from rubrics.scoring import Outcome, step_rule_outcome
from tests import factories
from tests.episode_fixtures import SECRET_MODEL, add_episode, publish_rubric, refund_episode
from tests.test_api import api_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def stepped(personas):
    p = personas
    task = factories.make_task(p.project, "refund")
    grader = publish_rubric(p.project, task, p.admin)
    episode = refund_episode(10)
    response = add_episode(task, episode)
    queue = factories.make_queue(p.project, grader, [p.annotator], p.admin, overlap=1)
    assignment = services.assignment_claim(queue=queue, user=p.annotator)
    outcome, each, refunds = grader.version.criteria.order_by("position")
    return p, assignment, episode, response, outcome, each, refunds


def draft(assignment, criterion, outcome, **kw):
    return services.verdict_save_draft(
        assignment_id=assignment.pk, criterion_id=criterion.pk, outcome=outcome, **kw
    )


@pytest.mark.parametrize(
    ("rule", "outcomes", "expected"),
    [
        ("all", ["met", "met"], Outcome("met")),
        ("all", ["met", "unmet"], Outcome("unmet")),
        ("all", ["met", "na"], Outcome("met")),
        ("all", [], Outcome("na")),
        ("all", ["na", "na"], Outcome("na")),
        ("share", ["met", "unmet", "unmet", "met"], Outcome("met", 0.5)),
        ("share", ["unmet"], Outcome("met", 0.0)),
        ("share", [], Outcome("na")),
        ("any", ["unmet", "met"], Outcome("met")),
        ("any", ["unmet", "unmet"], Outcome("unmet")),
        ("any", ["met", "error"], Outcome("error")),
    ],
)
def test_step_rule_outcome(rule, outcomes, expected):
    assert step_rule_outcome(rule, outcomes) == expected


def test_a_step_criterion_is_decided_at_each_of_its_steps(stepped):
    p, assignment, episode, response, outcome, each, refunds = stepped
    steps = episode.steps()
    assert len(steps) == 10
    v = draft(assignment, each, "met", step=steps[3])
    assert (v.step, v.outcome) == (steps[3], "met")
    # Deciding the same step again overwrites; it does not add a verdict.
    draft(assignment, each, "unmet", step=steps[3])
    assert Verdict.objects.get(assignment=assignment, criterion=each, step=steps[3]).outcome == (
        "unmet"
    )
    with pytest.raises(ValidationError, match="name the step"):
        draft(assignment, each, "met")
    with pytest.raises(ValidationError, match="#1 is not a step"):
        draft(assignment, each, "met", step=0)  # the user's message
    with pytest.raises(ValidationError, match="not a step"):
        draft(assignment, refunds, "met", step=steps[0])  # no refund call in that turn
    with pytest.raises(ValidationError, match="name no step"):
        draft(assignment, outcome, "met", step=steps[0])


def test_submit_needs_every_step_and_writes_the_step_rule(stepped):
    p, assignment, episode, response, outcome, each, refunds = stepped
    steps = episode.steps()
    refund_steps = episode.steps(tool="refund")
    assert len(refund_steps) == 1  # turn 4 (index 4 of the lookups) calls refund too
    draft(assignment, outcome, "met")
    for s in steps[:-2]:
        draft(assignment, each, "met", step=s)
    with pytest.raises(ValidationError) as caught:
        services.assignment_submit(assignment_id=assignment.pk)
    said = str(caught.value)
    assert f"#2 at step(s) #{steps[-2] + 1}, #{steps[-1] + 1}" in said
    assert "#3 at step(s)" in said
    assert not Verdict.objects.filter(assignment=assignment, step=None, criterion=each).exists()
    draft(assignment, each, "met", step=steps[-2])
    draft(assignment, each, "unmet", step=steps[-1])
    draft(assignment, refunds, "met", step=refund_steps[0])
    services.assignment_submit(assignment_id=assignment.pk)
    whole = {
        v.criterion_id: (v.outcome, v.value)
        for v in Verdict.objects.filter(assignment=assignment, step=None)
    }
    assert whole == {
        outcome.pk: ("met", None),
        each.pk: ("unmet", None),  # "all": one step unmet
        refunds.pk: ("met", None),  # "any": the pitfall happened at a step
    }
    assert Verdict.objects.filter(assignment=assignment, criterion=each).count() == 11
    # The per-response verdicts are what everything else reads as the person's verdicts.
    assert Verdict.objects.submitted().filter(assignment=assignment, step=None).count() == 3


def test_share_rule_writes_the_share_of_steps_met(personas):
    p = personas
    task = factories.make_task(p.project, "share")
    grader = publish_rubric(
        p.project, task, p.admin, [("Polite at each turn", 1, "step", "share", "")]
    )
    episode = refund_episode(4)
    add_episode(task, episode)
    queue = factories.make_queue(p.project, grader, [p.annotator], p.admin, overlap=1)
    assignment = services.assignment_claim(queue=queue, user=p.annotator)
    (criterion,) = grader.version.criteria.all()
    for s, o in zip(episode.steps(), ["met", "unmet", "met", "na"], strict=True):
        draft(assignment, criterion, o, step=s)
    services.assignment_submit(assignment_id=assignment.pk)
    v = Verdict.objects.get(assignment=assignment, step=None)
    assert (v.outcome, v.value) == ("met", pytest.approx(2 / 3))


def test_evidence_is_anchored_to_a_step(stepped):
    p, assignment, episode, response, outcome, each, refunds = stepped
    steps = episode.steps()
    v = draft(assignment, each, "met", step=steps[2], evidence="checking  order\nA2")
    assert v.evidence_step == steps[2]
    # A tool output shown with the step is part of it too.
    draft(assignment, each, "met", step=steps[2], evidence='"by": "c2"')
    with pytest.raises(ValidationError, match=f"message #{steps[2] + 1}"):
        draft(assignment, each, "met", step=steps[2], evidence="checking order A3")
    with pytest.raises(ValidationError, match="quoted from that step"):
        draft(assignment, each, "met", step=steps[2], evidence="A3", evidence_step=steps[3])
    # Another criterion's quote: from the final answer, or from the message it names.
    v = draft(assignment, outcome, "met", evidence="refund for A17")
    assert v.evidence_step is None
    v = draft(assignment, outcome, "met", evidence="Refund order A17", evidence_step=0)
    assert v.evidence_step == 0
    with pytest.raises(ValidationError, match="quoted from the response"):
        draft(assignment, outcome, "met", evidence="Turn 3")
    with pytest.raises(ValidationError, match="message #999"):
        draft(assignment, outcome, "met", evidence="Turn 3", evidence_step=998)
    kept = Verdict.objects.get(assignment=assignment, criterion=each, step=steps[2])
    assert kept.evidence == '"by": "c2"'  # a refused save changes nothing


def test_the_api_takes_step_decisions_and_stays_blind(stepped):
    p, assignment, episode, response, outcome, each, refunds = stepped
    client = api_client(p.annotator)
    url = f"/api/assignments/{assignment.pk}/"
    steps = episode.steps()
    reply = client.put(
        url + "verdicts/",
        {"criterion": each.pk, "step": steps[1], "outcome": "met", "evidence": "checking order A1"},
        format="json",
    )
    assert reply.status_code == 200, reply.content
    assert reply.json()["step"] == steps[1]
    assert reply.json()["evidence_step"] == steps[1]
    bad = client.put(url + "verdicts/", {"criterion": each.pk, "outcome": "met"}, format="json")
    assert bad.status_code == 400
    assert "step" in bad.content.decode()
    body = client.get(url)
    assert body.status_code == 200
    data = body.json()
    assert data["steps"][str(each.pk)] == steps
    assert data["steps"][str(refunds.pk)] == episode.steps(tool="refund")
    assert [c["scope"] for c in data["criteria"]] == ["outcome", "step", "step"]
    assert len(data["episode"]["messages"]) == len(episode.messages)
    assert {"criterion": each.pk, "step": steps[1]}.items() <= data["verdicts"][0].items()
    assert SECRET_MODEL not in body.content.decode()
    missing = client.post(url + "submit/")
    assert missing.status_code == 400
    assert "#2 at step(s)" in missing.content.decode()


# --- The annotation page ------------------------------------------------------------------


def _claim(p, steps: int, tag: str):
    task = factories.make_task(p.project, f"page-{tag}")
    grader = publish_rubric(p.project, task, p.admin)
    episode = refund_episode(steps, tag=tag)
    add_episode(task, episode)
    queue = factories.make_queue(p.project, grader, [p.annotator], p.admin, overlap=1)
    assignment = services.assignment_claim(queue=queue, user=p.annotator)
    return assignment, episode, grader


def test_the_page_shows_the_episode_and_a_cell_per_step_blind(client, stepped):
    p, assignment, episode, response, outcome, each, refunds = stepped
    steps = episode.steps()
    draft(assignment, each, "unmet", step=steps[1], explanation="Names no order")
    client.force_login(p.annotator)
    page = client.get(reverse("assignment", args=[assignment.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="trajectory"' in html
    assert "Turn 3: checking order A3." in html
    assert "lookup_order" in html and "&quot;id&quot;: &quot;A3&quot;" in html
    # Each step criterion's grid comes as JSON rows [index, outcome, rationale, evidence].
    grid = json.loads(re.search(rf'id="cells-{each.pk}"[^>]*>(.*?)</script>', html).group(1))
    assert [row[0] for row in grid] == steps
    assert grid[1] == [steps[1], "unmet", "Names no order", "", None, ""]
    assert all(len(row) == 1 for i, row in enumerate(grid) if i != 1)
    refund_grid = re.search(rf'id="cells-{refunds.pk}"[^>]*>(.*?)</script>', html).group(1)
    assert [row[0] for row in json.loads(refund_grid)] == episode.steps(tool="refund")
    assert "0/3 decided" in html
    assert SECRET_MODEL not in html  # the metadata names the model; the page never does


def test_the_page_saves_a_step_decision_posted_as_a_form(client, stepped):
    p, assignment, episode, response, outcome, each, refunds = stepped
    step = episode.steps()[4]
    client.force_login(p.annotator)
    url = reverse("assignment_draft", args=[assignment.pk])
    reply = client.post(
        url,
        {"criterion": each.pk, "step": step, "outcome": "na", "evidence": "order A4"},
        HTTP_ACCEPT="application/json",
    )
    assert reply.status_code == 200 and reply.json() == {"saved": True, "error": ""}
    v = Verdict.objects.get(assignment=assignment, step=step)
    assert (v.outcome, v.evidence, v.evidence_step) == ("na", "order A4", step)
    bad = client.post(
        url, {"criterion": each.pk, "step": "x", "outcome": "na"}, HTTP_ACCEPT="application/json"
    )
    assert bad.status_code == 400


def test_page_queries_do_not_grow_with_steps(client, personas):
    p = personas
    client.force_login(p.annotator)
    counts = []
    for steps in (10, 200):
        assignment, episode, grader = _claim(p, steps, str(steps))
        each = grader.version.criteria.get(position=1)
        for s in episode.steps()[: steps // 2]:
            draft(assignment, each, "met", step=s)
        with CaptureQueriesContext(connection) as ctx:
            reply = client.get(reverse("assignment", args=[assignment.pk]))
        assert reply.status_code == 200
        assert reply.content.decode().count('"met", ') == steps // 2
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts


def test_a_200_step_page_renders_fast(client, personas):
    """The issue's target: p95 under 150 ms for a 200-step episode. Asserted with room for a
    loaded test machine; the figure is printed (run with -s)."""
    p = personas
    assignment, episode, grader = _claim(p, 200, "fast")
    each = grader.version.criteria.get(position=1)
    for s in episode.steps()[:100]:
        draft(assignment, each, "met", step=s)
    client.force_login(p.annotator)
    url = reverse("assignment", args=[assignment.pk])
    for _ in range(3):
        client.get(url)
    times = []
    for _ in range(30):
        start = time.perf_counter()
        assert client.get(url).status_code == 200
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p95 = times[int(0.95 * len(times)) - 1]
    print(f"\n200-step annotation page: p50 {times[14]:.1f} ms, p95 {p95:.1f} ms over 30")
    assert p95 < 1000, times  # a loaded CI box; the target (150 ms) is measured in the report


# --- Disagreements and gold at a step ------------------------------------------------------


def test_people_who_differ_at_a_step_are_listed_per_step_and_gold_names_it(client, personas):
    p = personas
    second = factories.add_member(p.project, Role.ANNOTATOR)
    task = factories.make_task(p.project, "disagree")
    grader = publish_rubric(p.project, task, p.admin)
    episode = refund_episode(4)
    response = add_episode(task, episode)
    queue = factories.make_queue(p.project, grader, [p.annotator, second], p.admin, overlap=2)
    outcome, each, refunds = grader.version.criteria.order_by("position")
    steps = episode.steps()
    for user, odd in ((p.annotator, "met"), (second, "unmet")):
        turn = services.assignment_claim(queue=queue, user=user)
        draft(turn, outcome, "met")
        for s in steps:
            draft(turn, each, odd if s == steps[2] else "met", step=s)
        services.assignment_submit(assignment_id=turn.pk)
    found = selectors.disagreements(grader.version, among="people")
    keyed = {(d.criterion_id, d.step) for d in found}
    # At step 3 they differ, and so does each one's verdict on the whole ("all" steps met).
    assert keyed == {(each.pk, steps[2]), (each.pk, None)}
    # Agreement reads the verdicts on the whole response only: one per person per criterion.
    ratings, _ = selectors.version_ratings(grader.version)
    assert len(ratings) == 2 * 3
    client.force_login(p.reviewer)
    listed = client.get(reverse("disagreements", args=[grader.version_id]) + "?among=people")
    assert f"at step #{steps[2] + 1}" in listed.content.decode()
    url = reverse("adjudicate", args=[grader.version_id, response.pk, each.pk])
    page = client.get(f"{url}?step={steps[2]}")
    assert page.status_code == 200
    assert "Turn 2: checking order A2." in page.content.decode()  # the step's message
    assert client.get(f"{url}?step=0").status_code == 404  # not a step
    reply = client.post(f"{url}?step={steps[2]}", {"outcome": "unmet", "note": "no order named"})
    assert reply.status_code == 302
    gold = Adjudication.objects.get()
    assert (gold.step, gold.outcome) == (steps[2], "unmet")
    still = {(d.criterion_id, d.step) for d in selectors.disagreements(grader.version)}
    assert still == {(each.pk, None)}  # decided at the step; the whole is still open
    api = api_client(p.reviewer).post(
        f"/api/versions/{grader.version_id}/gold/",
        {"response": response.pk, "criterion": outcome.pk, "step": steps[0], "outcome": "met"},
        format="json",
    )
    assert api.status_code == 400 and "step" in api.content.decode()


def test_agreement_compares_step_criteria_step_by_step(client, personas):
    """Two people who differ at one step of four: on the whole response they disagree (the
    'all' rule), step by step they agree on three steps of four; the page and the API say both."""
    p = personas
    second = factories.add_member(p.project, Role.ANNOTATOR)
    task = factories.make_task(p.project, "kappa-steps")
    grader = publish_rubric(p.project, task, p.admin)
    episode = refund_episode(4)
    add_episode(task, episode)
    queue = factories.make_queue(p.project, grader, [p.annotator, second], p.admin, overlap=2)
    outcome, each, _ = grader.version.criteria.order_by("position")
    steps = episode.steps()
    for user, odd in ((p.annotator, "met"), (second, "unmet")):
        turn = services.assignment_claim(queue=queue, user=user)
        draft(turn, outcome, "met")
        for s in steps:
            draft(turn, each, odd if s == steps[1] else "met", step=s)
        services.assignment_submit(assignment_id=turn.pk)
    report = selectors.agreement_report(grader.version)
    assert report.figures.per_criterion[each.pk].percent == 0.0  # the whole: met vs unmet
    by_step = report.at_steps.per_criterion[each.pk]
    assert (by_step.items, by_step.percent) == (len(steps), (len(steps) - 1) / len(steps))
    assert outcome.pk not in report.at_steps.per_criterion  # not a step criterion
    client.force_login(p.reviewer)
    page = client.get(reverse("agreement", args=[grader.version_id])).content.decode()
    table = page.split('data-testid="per-step-criterion"', 1)[1].split("</table>", 1)[0]
    assert f'<td class="num">{len(steps)}</td>' in table and "75%" in table
    api = api_client(p.reviewer).get(f"/api/versions/{grader.version_id}/agreement/").json()
    (row,) = api["per_step_criterion"]
    assert row["criterion"] == each.pk and row["figures"]["items"] == len(steps)
    assert row["figures"]["percent_agreement"] == pytest.approx(0.75)
