"""A reviewer settles two disagreements by keyboard alone, and the queue page draws its
progress chart: in Chromium."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from annotation.models import Adjudication
from rubrics.models import Role
from tests import factories
from tests.test_browser_flow import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_reviewer_records_and_moves_on_by_keyboard_and_the_queue_chart_is_drawn(page, live_server):
    base = live_server.url
    admin = factories.make_user("boss")
    project = factories.make_project(owner=admin, name="Keys")
    ann1 = factories.add_member(project, Role.ANNOTATOR, username="ann1")
    ann2 = factories.add_member(project, Role.ANNOTATOR, username="ann2")
    factories.add_member(project, Role.REVIEWER, username="rev")
    task = factories.make_task(project, "t1")
    grader = factories.make_published_rubric(
        project, task, [("Advises hydration", 2), ("Mentions rest", 1)], admin
    )
    factories.import_responses(
        project,
        [
            {"task_id": "t1", "model": "m", "response": f"Drink water {i}.", "sample_index": i}
            for i in range(2)
        ],
    )
    queue = factories.make_queue(project, grader, [ann1, ann2], admin, overlap=2)
    for user, first in ((ann1, "met"), (ann2, "unmet")):  # they differ on criterion 1
        while factories.annotate(queue, user, {1: first, 2: "met"}):
            pass

    login(page, base, "rev")
    page.goto(f"{base}/versions/{grader.version_id}/disagreements/?among=people")
    rows = page.get_by_test_id("disagreements").locator("tbody tr")
    expect(rows).to_have_count(2)
    rows.first.locator("text=Adjudicate").click()
    first_url = page.url
    expect(page.get_by_test_id("shortcuts")).to_contain_text("record and open the next")
    page.wait_for_load_state("load")  # the keys are bound by a deferred script
    # Pick "not met", write a note, and record and move on, all from the keyboard.
    page.keyboard.press("2")
    expect(page.locator("input[name=outcome][value=unmet]")).to_be_checked()
    page.keyboard.press("n")
    expect(page.locator("#note")).to_be_focused()
    page.keyboard.type("Hydration is only implied")
    page.keyboard.press("Control+Enter")
    expect(page).not_to_have_url(first_url)
    expect(page).to_have_url(re.compile(r"/adjudicate/\d+/\d+/\?among=people$"))
    expect(page.locator("text=here is the next disagreement")).to_be_visible()
    page.wait_for_load_state("load")
    # The second: "met", Enter records it; nothing is left and the page says so.
    page.keyboard.press("1")
    expect(page.locator("input[name=outcome][value=met]")).to_be_checked()
    page.keyboard.press("Enter")
    expect(page.locator("text=No open disagreement is left in this list.")).to_be_visible()
    expect(page.get_by_test_id("disagreements")).to_contain_text("No disagreements match.")
    gold = list(Adjudication.objects.order_by("pk").values_list("outcome", "note"))
    assert gold == [("unmet", "Hydration is only implied"), ("met", "")]
    page.click("text=Log out")

    login(page, base, "boss")
    page.goto(f"{base}/queues/{queue.pk}/")
    canvas = page.locator("canvas[data-chart=queue-progress]")
    expect(canvas).to_have_attribute("data-drawn", "1")
    chart = page.evaluate(
        """() => { const c = Chart.getChart(document.querySelector(
                     'canvas[data-chart=queue-progress]'));
                   return c && { labels: c.data.labels,
                                 sets: c.data.datasets.map(d => [d.label, d.data]) }; }"""
    )
    assert chart == {
        "labels": ["ann1", "ann2"],
        "sets": [["Submitted", [2, 2]], ["In progress", [0, 0]], ["Remaining", [0, 0]]],
    }
