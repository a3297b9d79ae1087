"""Steps 1-5 of the walking skeleton, done by a person in headless Chromium."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from grading.judges.simulator import simulated_verdict
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CRITERIA = [
    ("Advises calling emergency services immediately", 5),
    ("Mentions electrocardiogram testing at hospital", 3),
    ("Suggests waiting at home to see if the pain passes", -4),
]
GOOD = (
    "Call emergency services immediately: chest pressure with sweating needs an "
    "electrocardiogram and troponin testing at a hospital."
)
BAD = "It is probably muscle strain. Try waiting at home until it passes."


def test_rule_predicts_the_scores_this_test_expects():
    assert [simulated_verdict(c, GOOD)[0] for c, _ in CRITERIA] == [True, True, False]
    assert [simulated_verdict(c, BAD)[0] for c, _ in CRITERIA] == [False, False, True]


def login(page, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", factories.PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()


def test_author_builds_rubric_imports_outputs_and_reads_scores(
    page, live_server, celery_worker, sim
):
    base = live_server.url
    expert = factories.make_user("expert")
    factories.make_user("eng")
    factories.make_user("rev")
    login(page, base, expert.username)

    # 1. A project; the creator is its admin and invites members with a role, who accept on
    # their projects page (an admin cannot add someone without them knowing).
    page.fill("#id_name", "Cardiology eval")
    page.click("text=Create project")
    expect(page.get_by_role("heading", name="Cardiology eval")).to_be_visible()
    project_url = page.url
    page.click("nav >> text=Members")
    for username, role in (("eng", "engineer"), ("rev", "reviewer")):
        page.fill("#id_username", username)
        page.select_option("#id_role", role)
        page.click("button:has-text('Save')")
        expect(page.get_by_text(f"if a user named '{username}' exists")).to_be_visible()
    page.click("button:has-text('Log out')")
    for username, role in (("eng", "engineer"), ("rev", "reviewer")):
        login(page, base, username)
        page.click("button:has-text('Accept')")
        expect(page.get_by_text(f"You joined Cardiology eval as {role}.")).to_be_visible()
        page.click("button:has-text('Log out')")
    login(page, base, expert.username)
    page.goto(project_url)

    # 2. A task and its rubric, edited inline.
    page.click("nav >> text=Cardiology eval")
    page.click("text=Add task")
    page.fill("#id_external_id", "chest-pain")
    page.fill("#id_title", "Chest pain at the gym")
    page.get_by_label("Message content").fill(
        "I felt chest pressure and sweating at the gym. What should I do?"
    )
    page.fill("#id_reference", "**Call emergency services now.**")
    page.click("text=Create task")
    expect(page.get_by_role("heading", name="Chest pain at the gym")).to_be_visible()
    page.click("text=Write a rubric")
    criteria = page.get_by_test_id("criterion")
    for i, (text, points) in enumerate([*CRITERIA[:2], ("A criterion to delete", 1), CRITERIA[2]]):
        # Typed straight after the previous add: the editor's swaps never wipe what is typed
        # (tests/test_browser_editor_race.py holds the adds in flight to prove it).
        value = "2" if i == 1 else str(points)
        page.fill("#new-criterion-text", text)
        page.fill("#new-criterion-points", value)
        page.click("text=Add criterion")
        expect(criteria).to_have_count(i + 1)
        expect(criteria.nth(i).locator("input.points")).to_have_value(value)
    total = page.get_by_test_id("points-total")
    expect(total).to_have_text("8")  # 5 + 2 + 1; the pitfall does not count
    # The total follows the points as they are typed, before anything is saved.
    points_b = criteria.nth(1).locator("input.points")
    points_b.fill("3")
    expect(total).to_have_text("9")
    with page.expect_response(lambda r: "/criteria/" in r.url and r.request.method == "POST"):
        points_b.press("Tab")  # leaving the field saves it
    expect(criteria.nth(1).locator("input.points")).to_have_value("3")
    page.once("dialog", lambda dialog: dialog.accept())
    criteria.nth(2).locator("button[title=Delete]").click()
    expect(criteria).to_have_count(3)
    expect(total).to_have_text("8")
    # Reorder: move the pitfall up, then back down.
    criteria.nth(2).locator("button[title='Move up']").click()
    expect(criteria.nth(1).locator("textarea")).to_have_value(CRITERIA[2][0])
    criteria.nth(1).locator("button[title='Move down']").click()
    expect(criteria.nth(2).locator("textarea")).to_have_value(CRITERIA[2][0])

    # 3. Submit for review; a reviewer approves: the version is published, immutable, hashed,
    # and compiled into a grader shown on the page.
    page.click("button:has-text('Submit v1 for review')")
    rubric_url = page.url.split("?")[0]
    page.click("button:has-text('Log out')")
    login(page, base, "rev")
    page.goto(rubric_url)
    page.click("button:has-text('Approve and publish v1')")
    expect(page.get_by_text("Published", exact=False).first).to_be_visible()
    page.click("button:has-text('Log out')")
    login(page, base, expert.username)
    page.goto(rubric_url)
    grader = page.get_by_test_id("grader")
    expect(grader).to_contain_text('"format": "assay.grader/1"')
    expect(grader).to_contain_text('"output_schema"')
    expect(page.locator("#new-criterion-text")).to_have_count(0)

    # 4. Upload outputs: a bad file is refused by line, then a good one imports.
    page.click("nav >> text=Responses")
    bad = "\n".join(
        [
            json.dumps({"task_id": "chest-pain", "model": "m-good", "response": GOOD}),
            "{not json",
            json.dumps({"task_id": "nope", "model": "m-bad", "response": BAD}),
        ]
    )
    page.set_input_files(
        "input[name=file]",
        files=[{"name": "bad.jsonl", "mimeType": "application/jsonl", "buffer": bad.encode()}],
    )
    page.click("button:has-text('Import')")
    result = page.get_by_test_id("import-result")
    expect(result).to_contain_text("Nothing was imported: 2 errors")
    expect(result).to_contain_text("line 2: not valid JSON")
    expect(result).to_contain_text("line 3, field 'task_id'")
    good = "\n".join(
        json.dumps({"task_id": "chest-pain", "model": m, "response": r})
        for m, r in (("m-good", GOOD), ("m-bad", BAD))
    )
    page.set_input_files(
        "input[name=file]",
        files=[{"name": "outputs.jsonl", "mimeType": "application/jsonl", "buffer": good.encode()}],
    )
    page.click("button:has-text('Import')")
    expect(result).to_contain_text("Imported 2 responses from outputs.jsonl")

    # 5. A judge (the simulator), a run, a progress bar, then scores.
    sim.config.latency_ms = 300  # slow enough to see the run in progress
    page.click("nav >> text=Judges")
    page.fill("#id_name", "Simulator")
    page.fill("#id_base_url", sim.url)
    page.fill("#id_model", "judge-model")
    page.fill("#id_max_concurrency", "2")
    page.click("text=Save judge")
    expect(page.locator("text=Judge Simulator saved.")).to_be_visible()
    page.click("nav >> text=Runs")
    page.click("text=Start grading")
    expect(page.get_by_test_id("progress").locator("progress")).to_be_visible()
    expect(page.get_by_test_id("run-status")).to_have_text("Completed", timeout=60_000)
    expect(page.locator("text=simulated judge").first).to_be_visible()
    means = page.get_by_test_id("model-means")
    expect(means.locator("tr[data-model=m-good] [data-testid=mean]")).to_have_text("1.00")
    expect(means.locator("tr[data-model=m-bad] [data-testid=mean]")).to_have_text("0.00")
    expect(means.locator("tr[data-model=m-bad]")).to_contain_text("-0.50")
    expect(page.locator("canvas[data-chart=means]")).to_be_visible()
    # The verdicts of one response, with the judge's explanation.
    page.get_by_test_id("scores").locator("tr", has_text="m-bad").locator("text=verdicts").click()
    expect(page.get_by_test_id("score")).to_have_text("-0.50")
    expect(page.locator("tr.met")).to_contain_text(CRITERIA[2][0])
    expect(page.locator("tr.met")).to_contain_text("Simulated verdict: found 2 of 2 key words")
