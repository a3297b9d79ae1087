"""An admin starts a run over one rubric of many in Chromium: the run form lists a few graders,
the search box narrows them through htmx to the one typed, it is picked and graded by a real
worker against the judge simulator. No console error on the way."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from grading.judges.simulator import simulated_verdict
from grading.models import GradingRun, Score
from rubrics import suites
from rubrics.selectors import GRADER_MATCHES
from tests import factories
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CRITERION = "Recommends drinking fluids"
ANSWERS = {"m-good": "I recommend drinking plenty of fluids.", "m-weak": "Rest."}


def test_an_admin_picks_one_grader_of_many_through_the_search_and_starts_a_run(
    page, live_server, celery_worker, sim, personas
):
    p = personas
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    graders = []
    for i in range(GRADER_MATCHES + 5):  # more than the form lists before a search
        task = factories.make_task(p.project, f"case-{i:03d}")
        graders.append(factories.make_published_rubric(p.project, task, [(CRITERION, 1)], p.admin))
    target = graders[-1]  # case-024: not among the first listed
    factories.import_responses(
        p.project,
        [{"task_id": "case-024", "model": m, "response": text} for m, text in ANSWERS.items()],
    )
    # A suite too, so the form starts on it and the suite must be set to "—".
    suite = suites.suite_create(
        project=p.project,
        name="Two",
        user=p.admin,
        task_ids=[g.version.rubric.task_id for g in graders[:2]],
    )
    suites.suite_freeze(suite=suite, user=p.admin)
    judge = factories.make_judge(p.project, sim.url)

    page.goto(f"{live_server.url}/login/", timeout=60_000)
    page.fill("#id_username", p.admin.username)
    page.fill("#id_password", factories.PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    page.goto(f"{live_server.url}/p/{p.project.slug}/runs/")
    matches = page.get_by_test_id("grader-matches")
    expect(matches.get_by_role("radio")).to_have_count(GRADER_MATCHES)
    expect(matches).to_contain_text("type more to narrow")
    expect(matches.get_by_role("radio", name=re.compile("case-024"))).to_have_count(0)

    page.select_option("#id_suite_version", "")
    page.get_by_placeholder("Search by rubric title, task or hash").fill("CASE-024")
    # htmx asks the search and swaps in its one match.
    expect(matches.get_by_role("radio")).to_have_count(1)
    picked = matches.get_by_role("radio", name=re.compile("Rubric for case-024"))
    expect(picked).to_have_value(target.hash)
    picked.check()
    page.select_option("#id_judge", str(judge.pk))
    page.click("button:has-text('Start grading')")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    run = GradingRun.objects.get(pk=int(re.search(r"/runs/(\d+)/", page.url).group(1)))
    expect(page.get_by_test_id("run-status")).to_have_text("Completed", timeout=120_000)
    assert run.suite_version.entries.get().grader_id == target.pk

    wait_for(
        lambda: not run.scores.exclude(status=Score.Status.DONE).exists(),
        what="every score done",
    )
    scores = {s.response.model: s.raw for s in run.scores.select_related("response")}
    assert scores == {
        model: 1.0 if simulated_verdict(CRITERION, text)[0] else 0.0
        for model, text in ANSWERS.items()
    }
    assert scores == {"m-good": 1.0, "m-weak": 0.0}  # the rule tells them apart
    assert not errors, f"console errors: {errors}"
