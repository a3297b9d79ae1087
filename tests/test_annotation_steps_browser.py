"""An annotator grades a 30-step agent episode by keyboard in Chromium: moves between steps,
decides a step criterion at every step (one step with evidence quoted from it), a pitfall at
the steps calling one tool, and an outcome criterion; submits; the stored verdicts are
those keys, and the page never names the model."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from annotation.models import Assignment, Verdict
from rubrics.models import Role
from tests import factories
from tests.episode_fixtures import SECRET_MODEL, add_episode, publish_rubric, refund_episode
from tests.test_browser_flow import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_annotator_grades_a_30_step_episode_by_keyboard(page, live_server):
    base = live_server.url
    admin = factories.make_user("stepboss")
    project = factories.make_project(owner=admin, name="Agents")
    factories.add_member(project, Role.ANNOTATOR, username="stepper")
    task = factories.make_task(project, "refund-30")
    grader = publish_rubric(project, task, admin)
    episode = refund_episode(30)
    response = add_episode(task, episode)
    annotator = project.memberships.get(role=Role.ANNOTATOR).user
    factories.make_queue(project, grader, [annotator], admin, overlap=1, name="Agent steps")
    outcome, each, refunds = grader.version.criteria.order_by("position")
    steps = episode.steps()
    refund_steps = episode.steps(tool="refund")
    assert (len(steps), len(refund_steps)) == (30, 5)

    page.set_default_timeout(45_000)  # 70 keys and saves; shared CI machines are slow
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    login(page, base, "stepper")
    page.goto(f"{base}/p/{project.slug}/queues/")
    page.click("button:has-text('Start annotating')")
    expect(page.get_by_test_id("trajectory")).to_be_visible()
    assert SECRET_MODEL not in page.content()
    items = page.locator("li.check-item")
    grid = items.nth(1).locator(".step-grid .cell")
    expect(grid).to_have_count(30)
    expect(items.nth(2).locator(".step-grid .cell")).to_have_count(5)

    # The outcome criterion: met; the page moves on to the step criterion, at its first step.
    with page.expect_response(lambda r: "/draft/" in r.url):
        page.keyboard.press("1")
    expect(items.nth(1)).to_have_class("check-item step-crit active")
    expect(grid.nth(0)).to_have_class("cell focused")
    expect(page.locator(f"#msg-{steps[0]}")).to_have_class(
        re.compile(r"\bmsg assistant step\b.*\bfocused\b")
    )

    # Move: two steps on, one back (arrows work as l/h do).
    page.keyboard.press("l")
    page.keyboard.press("ArrowRight")
    expect(grid.nth(2)).to_have_class("cell focused")
    page.keyboard.press("h")
    expect(grid.nth(1)).to_have_class("cell focused")
    expect(items.nth(1).locator(".step-label")).to_have_text(f"#{steps[1] + 1}")
    expect(page.locator(f"#msg-{steps[1]}")).to_have_class(
        re.compile(r"\bmsg assistant step\b.*\bfocused\b")
    )
    # Step 2: not met; the next undecided step (3) is shown.
    page.keyboard.press("2")
    expect(grid.nth(1)).to_have_class("cell unmet")
    expect(grid.nth(2)).to_have_class("cell focused")
    # Step 3: evidence quoted from a selection in that step's message, then met.
    page.locator(f"#msg-{steps[2]} .msg-text").evaluate(
        """el => { const r = document.createRange(); r.selectNodeContents(el);
                   const s = window.getSelection(); s.removeAllRanges(); s.addRange(r); }"""
    )
    page.keyboard.press("e")
    expect(items.nth(1).locator(".step-detail blockquote.evidence")).to_have_text(
        "Turn 2: checking order A2."
    )
    page.keyboard.press("1")
    # Every other step: met (the page walks on to the next undecided one, then wraps to #1).
    for _ in range(28):
        page.keyboard.press("1")
    expect(items.nth(1)).to_have_class("check-item step-crit decided")
    # The pitfall is decided at the 5 turns that call refund: never committed.
    expect(items.nth(2)).to_have_class(re.compile(r"\bactive\b"))
    for _ in range(5):
        page.keyboard.press("2")
    expect(page.locator(".annotate-head h1 small")).to_contain_text("3/3 decided")
    page.keyboard.press("Control+Enter")  # waits for the saves still on their way
    expect(page.locator("text=Nothing left for you")).to_be_visible(timeout=60_000)

    assignment = Assignment.objects.get(item__response=response)
    assert assignment.status == Assignment.Status.SUBMITTED
    at_steps = {
        v.step: v
        for v in Verdict.objects.filter(assignment=assignment, criterion=each, step__isnull=False)
    }
    assert sorted(at_steps) == steps
    assert {s for s, v in at_steps.items() if v.outcome == "unmet"} == {steps[1]}
    assert all(v.outcome == "met" for s, v in at_steps.items() if s != steps[1])
    assert (at_steps[steps[2]].evidence, at_steps[steps[2]].evidence_step) == (
        "Turn 2: checking order A2.",
        steps[2],
    )
    pitfall = Verdict.objects.filter(assignment=assignment, criterion=refunds, step__isnull=False)
    assert sorted((v.step, v.outcome) for v in pitfall) == [(s, "unmet") for s in refund_steps]
    whole = {
        v.criterion_id: v.outcome
        for v in Verdict.objects.filter(assignment=assignment, step__isnull=True)
    }
    assert whole == {outcome.pk: "met", each.pk: "unmet", refunds.pk: "unmet"}
    assert not errors, errors
