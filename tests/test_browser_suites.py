"""An author makes a suite of two tasks in Chromium, freezes it and reads v1; then a run over
it shows on the suite's chart. No console error on the way."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotation.models import Response
from grading.models import GradingRun, Score
from rubrics import suites
from rubrics.models import Suite
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(page, base: str, username: str) -> None:
    page.goto(f"{base}/login/", timeout=60_000)  # the live server's first page warms it up
    page.fill("#id_username", username)
    page.fill("#id_password", factories.PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()


def test_an_author_makes_a_suite_of_two_tasks_and_freezes_it(page, live_server, personas):
    p = personas
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: console.append(str(exc)))
    graders = {}
    for external_id, criterion in (("fever", "Advises fluids"), ("cough", "Asks how long")):
        task = factories.make_task(p.project, external_id)
        graders[external_id] = factories.make_published_rubric(
            p.project, task, [(criterion, 1)], p.admin
        )
    factories.make_task(p.project, "rash")  # a third task, left out

    login(page, live_server.url, p.author.username)
    page.goto(f"{live_server.url}/p/{p.project.slug}/")
    page.click("nav >> text=Suites")
    expect(page.get_by_role("heading", name="Suites")).to_be_visible()
    page.fill("#id_name", "Respiratory eval")
    page.fill("#id_description", "Fever and cough")
    # The filter box narrows the task checkboxes; a ticked one stays ticked.
    page.get_by_placeholder("Filter tasks").fill("fev")
    expect(page.get_by_label("cough — Task cough")).to_be_hidden()
    page.get_by_label("fever — Task fever").check()
    page.get_by_placeholder("Filter tasks").fill("")
    expect(page.get_by_label("cough — Task cough")).to_be_visible()
    page.fill("#id_external_ids", "cough\n")
    page.click("button:has-text('Make the suite')")

    expect(page.get_by_role("heading", name="Respiratory eval")).to_be_visible()
    expect(page.get_by_test_id("task-count")).to_have_text("2")
    expect(page.get_by_test_id("not-frozen")).to_be_visible()
    page.get_by_test_id("freeze").click()
    expect(page.get_by_text("Froze v1: 2 tasks, each pinned.")).to_be_visible()
    row = page.locator("[data-testid=suite-versions] tr[data-version='1']")
    expect(row).to_contain_text("v1")
    suite = Suite.objects.get(name="Respiratory eval")
    version = suites.version_of(suite)
    expect(row.get_by_test_id("suite-hash")).to_have_text(version.content_hash[:12])
    assert version.manifest == {"cough": graders["cough"].hash, "fever": graders["fever"].hash}
    tasks_table = page.get_by_test_id("suite-tasks")
    expect(tasks_table).to_contain_text("fever")
    expect(tasks_table).not_to_contain_text("rash")

    # Freezing again changes nothing, and says so.
    page.get_by_test_id("freeze").click()
    expect(page.get_by_text("Nothing changed since v1")).to_be_visible()

    # A run over v1 appears on the chart of runs over time.
    factories.import_responses(
        p.project,
        [{"task_id": t, "model": "m-a", "response": "Drink water."} for t in ("fever", "cough")],
    )
    judge = factories.make_judge(p.project, "http://127.0.0.1:9/v1")
    run = GradingRun.objects.create(
        project=p.project, suite_version=version, judge=judge, status="completed"
    )
    pinned = suites.pinned_graders(version)
    for response in Response.objects.filter(task__project=p.project):
        Score.objects.create(
            run=run,
            response=response,
            grader_id=pinned[response.task_id],
            raw=1.0,
            status=Score.Status.DONE,
        )
    page.reload()
    expect(page.get_by_test_id("suite-runs")).to_contain_text("m-a: 1.00 (2)")
    canvas = page.locator("canvas[data-chart=suite-runs]")
    expect(canvas).to_be_visible()
    page.wait_for_timeout(1_000)  # Chart.js animates for a second at most
    assert page.evaluate(
        "() => Boolean(window.Chart && Chart.getChart(document.querySelector("
        "'canvas[data-chart=suite-runs]')))"
    )
    assert not console, f"console errors: {console}"
