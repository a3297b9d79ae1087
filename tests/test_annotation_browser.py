"""Two annotators who disagree, a reviewer who adjudicates, and the calibration report of a
judge that really graded through the simulator on a Celery worker: all in Chromium."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from annotation.models import Adjudication, Assignment, Verdict
from grading import services as grading_services
from grading.judges.simulator import simulated_verdict
from grading.models import GradingRun
from rubrics.models import Role
from tests import factories
from tests.conftest import wait_for
from tests.test_browser_flow import login

ACTIVE = re.compile(r"\bactive\b")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CRITERIA = [
    ("Advises calling emergency services immediately", 5),
    ("Mentions electrocardiogram testing at hospital", 3),
]
GOOD = (
    "Call emergency services immediately: chest pressure with sweating needs an "
    "electrocardiogram and troponin testing at a hospital.\n\n"
    "| step | why |\n|---|---|\n| call | time matters |\n\n```\nnot code to run\n```"
)


def test_the_simulated_judge_says_met_on_both():
    assert [simulated_verdict(c, GOOD)[0] for c, _ in CRITERIA] == [True, True]


def annotate_with_keys(page, base, username, second_outcome_key: str, rationale: str):
    login(page, base, username)
    page.goto(f"{base}/p/cardio/queues/")
    page.click("button:has-text('Start annotating')")
    expect(page.get_by_test_id("shortcuts")).to_contain_text("Ctrl")
    expect(page.get_by_test_id("response").locator("table")).to_be_visible()  # Markdown table
    items = page.locator("li.check-item")
    expect(items.nth(0)).to_have_class("check-item active")
    # Criterion 1: met, with evidence quoted from a selection in the response.
    page.get_by_test_id("response").locator("p").first.evaluate(
        """p => { const r = document.createRange(); r.selectNodeContents(p);
                  const s = window.getSelection(); s.removeAllRanges(); s.addRange(r); }"""
    )
    # The quote goes in first: the decision then saves both and moves on to criterion 2.
    page.keyboard.press("e")
    expect(items.nth(0).locator("blockquote.evidence")).to_contain_text("Call emergency")
    with page.expect_response(lambda r: "/draft/" in r.url):
        page.keyboard.press("1")
    # Criterion 2: the key decides, then a rationale typed after "r", saved on leaving it.
    expect(items.nth(1)).to_have_class("check-item active")
    with page.expect_response(lambda r: "/draft/" in r.url):
        page.keyboard.press(second_outcome_key)
    page.keyboard.press("r")
    page.keyboard.type(rationale)
    with page.expect_response(lambda r: "/draft/" in r.url):
        page.keyboard.press("Escape")
    expect(items.nth(1).locator(".saved")).to_have_text("saved")
    page.keyboard.press("Control+Enter")
    expect(page.locator("text=Nothing left for you")).to_be_visible()
    page.click("text=Log out")


def test_annotators_disagree_reviewer_adjudicates_calibration_reports(
    page, live_server, celery_worker, sim
):
    base = live_server.url
    admin = factories.make_user("boss")
    project = factories.make_project(owner=admin, name="Cardio")
    assert project.slug == "cardio"
    for name, role in (("ann1", Role.ANNOTATOR), ("ann2", Role.ANNOTATOR)):
        factories.add_member(project, role, username=name)
    factories.add_member(project, Role.REVIEWER, username="rev")
    task = factories.make_task(project, "chest-pain", prompt="Chest pressure at the gym?")
    grader = factories.make_published_rubric(project, task, CRITERIA, admin)
    factories.import_responses(
        project, [{"task_id": "chest-pain", "model": "m-good", "response": GOOD}]
    )

    # The judge grades for real: the simulator over HTTP, on the Celery worker.
    judge = factories.make_judge(project, sim.url)
    run = grading_services.run_create(project=project, grader=grader, judge=judge, user=admin)
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == GradingRun.Status.COMPLETED,
        what="the judge's run to finish",
    )
    assert set(Verdict.objects.filter(run=run).values_list("outcome", flat=True)) == {"met"}

    # The admin makes a queue with overlap 2 in the browser.
    login(page, base, "boss")
    page.goto(f"{base}/p/cardio/queues/")
    page.fill("#q-name", "Cardio double")
    page.fill("#q-overlap", "2")
    page.click("button:has-text('Make queue')")
    expect(page.get_by_test_id("queue-progress")).to_contain_text("0 of 2 gradings")
    page.click("text=Log out")

    # Two annotators, by keyboard: they agree on criterion 1 and differ on criterion 2.
    annotate_with_keys(page, base, "ann1", "1", "The ECG at hospital is named.")
    annotate_with_keys(page, base, "ann2", "2", "Only troponin is really explained.")
    assert Assignment.objects.filter(status=Assignment.Status.SUBMITTED).count() == 2
    # The quote taken before the decision was saved with it.
    quoted = Verdict.objects.filter(assignment__isnull=False, criterion__text=CRITERIA[0][0])
    assert [v.evidence.startswith("Call emergency") for v in quoted] == [True, True]

    # The reviewer finds the disagreement, reads both rationales, and decides.
    login(page, base, "rev")
    page.goto(f"{base}/versions/{grader.version_id}/disagreements/?among=people")
    rows = page.get_by_test_id("disagreements").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("electrocardiogram")
    rows.first.locator("text=Adjudicate").click()
    cards = page.get_by_test_id("verdicts")
    expect(cards).to_contain_text("The ECG at hospital is named.")
    expect(cards).to_contain_text("Only troponin is really explained.")
    expect(cards).to_contain_text("simulated")  # the judge sits beside the people
    page.check("input[name=outcome][value=unmet]")
    page.fill("#note", "ECG is mentioned but not advised")
    page.click("button:has-text('Record gold verdict')")
    expect(page.get_by_test_id("audit")).to_contain_text("ECG is mentioned but not advised")
    assert Adjudication.objects.get().decided_by.username == "rev"

    # The calibration report: the judge said met where gold says unmet on criterion 2.
    page.click("text=Calibration")
    expect(page.get_by_test_id("macro-f1")).to_contain_text("over 2 items")
    table = page.get_by_test_id("calibration")
    expect(table.locator("tbody tr").nth(0)).to_contain_text("100%")
    expect(table.locator("tbody tr").nth(1)).to_contain_text("0%")
    # Agreement, with the judge in the same tables.
    page.click("nav.subnav >> text=Agreement")
    expect(page.get_by_test_id("heatmap")).to_contain_text("ann1")
    expect(page.get_by_test_id("heatmap")).to_contain_text("sim")
    expect(page.locator("canvas[data-annotation-chart=alpha]")).to_have_attribute("data-drawn", "1")
    assert (
        page.evaluate(
            "Chart.getChart(document.querySelector('canvas[data-annotation-chart=alpha]'))"
            ".data.labels.length"
        )
        == 2
    )


def test_fifteen_criteria_take_sixteen_keys_and_q_opens_the_queues(page, live_server):
    """Auto-advance: each decision key moves to the next undecided criterion, so a rubric of
    15 takes 15 decisions and one submit (30 keys with a j between each before). "q" opens
    the queues page, also from a submitted item revisited through My work."""
    base = live_server.url
    admin = factories.make_user("boss")
    project = factories.make_project(owner=admin, name="Cardio")
    ann = factories.add_member(project, Role.ANNOTATOR, username="ann1")
    task = factories.make_task(project, "chest-pain", prompt="Chest pressure at the gym?")
    criteria = [(f"Criterion number {n}", 1) for n in range(1, 16)]
    grader = factories.make_published_rubric(project, task, criteria, admin)
    factories.import_responses(
        project, [{"task_id": "chest-pain", "model": "m-good", "response": GOOD}]
    )
    factories.make_queue(project, grader, [ann], admin, overlap=1, name="Fifteen")

    login(page, base, "ann1")
    page.goto(f"{base}/p/cardio/queues/")
    page.click("button:has-text('Start annotating')")
    expect(page.get_by_test_id("shortcuts")).to_contain_text("queues")
    items = page.locator("li.check-item")
    expect(items).to_have_count(15)
    keys = ["1", "2", "3"] * 5
    pressed = 0
    for number, key in enumerate(keys):
        expect(items.nth(number)).to_have_class("check-item active")
        with page.expect_response(lambda r: "/draft/" in r.url):
            page.keyboard.press(key)
        pressed += 1
    expect(page.locator("li.check-item.decided")).to_have_count(15)
    page.keyboard.press("Control+Enter")
    pressed += 1
    expect(page.locator("text=Nothing left for you")).to_be_visible()
    assert pressed == 16
    turn = Assignment.objects.get(annotator__username="ann1")
    assert turn.status == Assignment.Status.SUBMITTED
    outcomes = list(
        Verdict.objects.filter(assignment=turn)
        .order_by("criterion__position")
        .values_list("outcome", flat=True)
    )
    assert outcomes == ["met", "unmet", "na"] * 5

    # My work lists the submitted item; revisiting it is read-only; "q" goes to the queues.
    page.click("nav.subnav >> text=My work")
    rows = page.get_by_test_id("my-work").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Submitted")
    expect(rows.first).to_contain_text("15")
    rows.first.locator("text=Revisit").click()
    expect(page.get_by_test_id("closed")).to_be_visible()
    expect(page.locator("#criteria input[name=outcome][value=unmet]:checked")).to_have_count(5)
    page.keyboard.press("q")
    expect(page.get_by_role("heading", name="Annotation queues")).to_be_visible()


def test_a_decision_skips_criteria_already_decided(page, live_server):
    """Going back with k to change a decision moves on to the next undecided one, not to a
    criterion already decided."""
    base = live_server.url
    admin = factories.make_user("boss")
    project = factories.make_project(owner=admin, name="Cardio")
    ann = factories.add_member(project, Role.ANNOTATOR, username="ann1")
    task = factories.make_task(project, "chest-pain", prompt="Chest pressure at the gym?")
    criteria = [(f"Criterion number {n}", 1) for n in range(1, 5)]
    grader = factories.make_published_rubric(project, task, criteria, admin)
    factories.import_responses(
        project, [{"task_id": "chest-pain", "model": "m-good", "response": GOOD}]
    )
    factories.make_queue(project, grader, [ann], admin, overlap=1, name="Four")
    login(page, base, "ann1")
    page.goto(f"{base}/p/cardio/queues/")
    page.click("button:has-text('Start annotating')")
    items = page.locator("li.check-item")
    expect(items.nth(0)).to_have_class(ACTIVE)
    for key in ("1", "1"):
        with page.expect_response(lambda r: "/draft/" in r.url):
            page.keyboard.press(key)
    expect(items.nth(2)).to_have_class(ACTIVE)
    page.keyboard.press("k")
    page.keyboard.press("k")
    expect(items.nth(0)).to_have_class(ACTIVE)
    with page.expect_response(lambda r: "/draft/" in r.url):
        page.keyboard.press("2")
    expect(items.nth(2)).to_have_class(ACTIVE)  # criterion 2 is decided already


def test_a_scale_level_or_n_a_also_moves_on(page, live_server):
    """On a scale criterion a level key (or x for n/a) is the decision, and moves on too."""
    from decimal import Decimal

    from rubrics import services as rubric_services

    base = live_server.url
    admin = factories.make_user("boss")
    project = factories.make_project(owner=admin, name="Cardio")
    ann = factories.add_member(project, Role.ANNOTATOR, username="ann1")
    task = factories.make_task(project, "chest-pain", prompt="Chest pressure at the gym?")
    scale = rubric_services.CriterionInput(
        text="Explains the risk", points=Decimal(2), kind="scale", scale=("none", "some", "full")
    )
    rubric = rubric_services.rubric_create(
        project=project,
        task=task,
        title="Scaled",
        user=admin,
        criteria=[scale, scale, rubric_services.CriterionInput(text="Calls", points=Decimal(1))],
    )
    grader = rubric_services.version_publish(version=rubric.versions.get(), user=admin)
    factories.import_responses(
        project, [{"task_id": "chest-pain", "model": "m-good", "response": GOOD}]
    )
    factories.make_queue(project, grader, [ann], admin, overlap=1, name="Scaled")
    login(page, base, "ann1")
    page.goto(f"{base}/p/cardio/queues/")
    page.click("button:has-text('Start annotating')")
    items = page.locator("li.check-item")
    expect(items.nth(0)).to_have_class(ACTIVE)
    with page.expect_response(lambda r: "/draft/" in r.url):
        page.keyboard.press("3")
    expect(items.nth(1)).to_have_class(ACTIVE)
    with page.expect_response(lambda r: "/draft/" in r.url):
        page.keyboard.press("x")
    expect(items.nth(2)).to_have_class(ACTIVE)
    with page.expect_response(lambda r: "/draft/" in r.url):
        page.keyboard.press("1")
    page.keyboard.press("Control+Enter")
    expect(page.locator("text=Nothing left for you")).to_be_visible()
    outcomes = list(
        Verdict.objects.filter(assignment__annotator=ann)
        .order_by("criterion__position")
        .values_list("outcome", "value")
    )
    assert outcomes == [("met", 1.0), ("na", None), ("met", None)]
