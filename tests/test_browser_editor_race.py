"""The rubric editor never loses typing to its own re-renders: an author who types the instant
after adding a criterion keeps every character, and it is saved.

Each request to add a criterion is held in the browser until the test lets it go (a slow
network, not a stand-in for Assay's code), so the typing lands while the add is in flight,
every time: no retries."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from rubrics import services
from rubrics.models import Criterion, Role
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(page, base: str, username: str) -> None:
    page.goto(f"{base}/login/", timeout=60_000)  # the live server's first page warms it up
    page.fill("#id_username", username)
    page.fill("#id_password", factories.PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()


class HeldAdds:
    """Holds every request to add a criterion until the test lets it go: the add is in
    flight, for certain, while the test types."""

    def __init__(self, page):
        self.page = page
        self.held: list = []
        self.seen = 0
        page.route("**/rubrics/*/criteria/", self._hold)

    def _hold(self, route) -> None:
        self.held.append(route)
        self.seen += 1

    def wait_until_held(self) -> None:
        deadline = time.monotonic() + 15
        while not self.held:
            assert time.monotonic() < deadline, "no add was sent"
            self.page.wait_for_timeout(20)  # lets Playwright hand over the request

    def release(self) -> None:
        self.wait_until_held()
        self.held.pop(0).continue_()


@pytest.fixture
def editor(page, live_server):
    author = factories.make_user("writer")
    project = factories.make_project(owner=author, name="Cardiology")
    factories.add_member(project, Role.AUTHOR, "coauthor")
    task = services.task_create(
        project=project, external_id="chest", title="Chest pain", messages="Chest pressure?"
    )
    rubric = services.rubric_create(project=project, task=task, title="Chest pain", user=author)
    login(page, live_server.url, author.username)
    page.goto(f"{live_server.url}/rubrics/{rubric.pk}/")
    page.wait_for_load_state("load")  # the editor's scripts are deferred
    return rubric


def saved_texts(rubric) -> list[str]:
    return list(
        Criterion.objects.filter(version__rubric=rubric)
        .order_by("position")
        .values_list("text", flat=True)
    )


def test_typing_in_a_row_while_an_add_is_in_flight_survives_and_is_saved(page, editor):
    criteria = page.get_by_test_id("criterion")
    page.fill("#new-criterion-text", "Advises calling emergency services")
    page.click("text=Add criterion")
    expect(criteria).to_have_count(1)
    first = criteria.nth(0)

    adds = HeldAdds(page)
    page.fill("#new-criterion-text", "Asks whether the pain spreads to the arm")
    page.click("text=Add criterion")
    adds.wait_until_held()
    # While the add is in flight: edit the first criterion's text and points.
    first.locator("textarea").fill("Advises calling emergency services immediately")
    first.locator("input.points").fill("7")
    assert criteria.count() == 1
    adds.release()

    expect(criteria).to_have_count(2)
    expect(first.locator("textarea")).to_have_value(
        "Advises calling emergency services immediately"
    )
    expect(first.locator("input.points")).to_have_value("7")
    expect(page.get_by_test_id("points-total")).to_have_text("12")
    # The autosave waited behind the add, then stored what was typed.
    expect(page.locator("#save-status")).to_contain_text("Saved")
    page.wait_for_load_state("networkidle")
    assert saved_texts(editor) == [
        "Advises calling emergency services immediately",
        "Asks whether the pain spreads to the arm",
    ]
    assert [float(c.points) for c in Criterion.objects.order_by("position")] == [7, 5]
    page.reload()
    expect(criteria.nth(0).locator("input.points")).to_have_value("7")


def test_the_next_criterion_typed_the_instant_after_enter_survives_and_is_saved(page, editor):
    criteria = page.get_by_test_id("criterion")
    texts = [
        "Advises calling emergency services for chest pressure",
        "Asks whether the pain spreads to the arm or jaw",
        "Asks about shortness of breath",
        "Recommends chewing aspirin unless allergic",
    ]
    adds = HeldAdds(page)
    page.keyboard.press("Alt+n")
    expect(page.locator("#new-criterion-text")).to_be_focused()
    page.keyboard.type(texts[0])
    page.keyboard.press("Enter")
    for i, text in enumerate(texts[1:], start=1):
        # The previous add is in flight while the next criterion is typed and sent.
        adds.wait_until_held()
        assert criteria.count() == i - 1
        page.keyboard.type(text)
        page.keyboard.press("Enter")
        adds.release()
    adds.release()
    # Every criterion typed is added, in order; nothing was dropped or run together.
    expect(criteria).to_have_count(len(texts))
    page.wait_for_load_state("networkidle")
    assert adds.seen == len(texts)
    assert saved_texts(editor) == texts
    expect(page.locator("#new-criterion-text")).to_have_value("")
    expect(page.locator("#new-criterion-text")).to_be_focused()
    for i, text in enumerate(texts):
        expect(criteria.nth(i).locator("textarea")).to_have_value(text)


def test_tabbing_to_points_while_an_add_lands_keeps_the_focus_there(page, editor):
    criteria = page.get_by_test_id("criterion")
    adds = HeldAdds(page)
    page.keyboard.press("Alt+n")
    page.keyboard.type("Advises calling emergency services")
    page.keyboard.press("Enter")
    adds.wait_until_held()
    # The next criterion is typed and the author tabs to its points while the add is out.
    page.keyboard.type("Asks about shortness of breath")
    page.keyboard.press("Tab")
    expect(page.locator("#new-criterion-points")).to_be_focused()
    adds.release()
    expect(criteria).to_have_count(1)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(100)  # past htmx's settling, when the editor places the focus
    expect(page.locator("#new-criterion-points")).to_be_focused()
    page.keyboard.type("3")
    expect(page.locator("#new-criterion-text")).to_have_value("Asks about shortness of breath")
    expect(page.locator("#new-criterion-points")).to_have_value("3")
