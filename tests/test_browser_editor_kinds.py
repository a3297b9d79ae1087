"""Making a scale criterion in the editor: choosing the kind shows its level fields at once,
filling them saves it, and a wrong number of levels is said at the criterion, in view."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from rubrics import services
from rubrics.models import Criterion
from tests import factories
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(page, base: str, username: str) -> None:
    page.goto(f"{base}/login/", timeout=60_000)  # the live server's first page warms it up
    page.fill("#id_username", username)
    page.fill("#id_password", factories.PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()


def test_a_scale_criterion_is_made_in_the_editor(page, live_server, personas):
    task = factories.make_task(personas.project, "t-scale")
    rubric = services.rubric_create(
        project=personas.project, task=task, title="Scales", user=personas.author
    )
    draft = rubric.versions.get()
    # Enough criteria that the top of the list is out of view when editing the last one.
    for i in range(14):
        services.criterion_add(version=draft, text=f"Criterion number {i}", points=1)
    last = services.criterion_add(version=draft, text="Explains the trade-offs clearly", points=3)
    n = draft.criteria.count()

    login(page, live_server.url, personas.author.username)
    page.goto(f"{live_server.url}/rubrics/{rubric.pk}/")
    levels = page.locator(f"#crit-{last.pk}-scale")
    expect(levels).to_be_hidden()  # a binary criterion has no levels

    page.get_by_label(f"Criterion {n} kind").select_option("scale")
    # The level fields appear at once, without a round trip, and take the cursor.
    expect(levels).to_be_visible(timeout=500)
    expect(levels).to_be_focused()
    levels.fill("Not at all\nPartly\nFully")
    wait_for(
        lambda: Criterion.objects.get(pk=last.pk).kind == "scale",
        timeout=10,
        what="the scale criterion to be saved",
    )
    saved = Criterion.objects.get(pk=last.pk)
    assert saved.scale == ["Not at all", "Partly", "Fully"]
    errors = page.locator(f"#crit-{last.pk}-errors")
    expect(errors).to_be_empty()

    # One level is too few: the error shows next to the field, in view; nothing is saved.
    levels.fill("Only one")
    expect(errors).to_contain_text("A scale has 2 to 10 levels")
    expect(errors).to_be_in_viewport()
    expect(levels).to_be_visible()
    assert Criterion.objects.get(pk=last.pk).scale == ["Not at all", "Partly", "Fully"]

    # Fixed, the error goes away and the levels are saved.
    levels.fill("Poor\nGood")
    expect(errors).to_be_empty()
    wait_for(
        lambda: Criterion.objects.get(pk=last.pk).scale == ["Poor", "Good"],
        timeout=10,
        what="the fixed levels to be saved",
    )


def test_a_criterion_switched_to_checked_starts_empty_and_case_insensitive(
    page, live_server, personas
):
    task = factories.make_task(personas.project, "t-check")
    rubric = services.rubric_create(
        project=personas.project, task=task, title="Checks", user=personas.author
    )
    draft = rubric.versions.get()
    c = services.criterion_add(version=draft, text="Names the drug warfarin in full", points=2)

    login(page, live_server.url, personas.author.username)
    page.goto(f"{live_server.url}/rubrics/{rubric.pk}/")
    row = page.get_by_test_id("criterion").first
    value = row.locator("input[name=check_value]")
    expect(value).to_have_count(0)

    page.get_by_label("Criterion 1 kind").select_option("checked")
    # The check's fields appear at once: empty, matching case off, the cursor in the value.
    expect(value).to_be_visible(timeout=500)
    expect(value).to_have_value("")
    expect(value).to_be_focused()
    expect(row.locator("input[name=check_case]")).not_to_be_checked()
    expect(row.locator("select[name=check_type]")).to_have_value("contains")
    assert Criterion.objects.get(pk=c.pk).kind == "binary"  # nothing half-made is saved

    value.fill("warfarin")
    wait_for(
        lambda: Criterion.objects.get(pk=c.pk).kind == "checked",
        timeout=10,
        what="the checked criterion to be saved",
    )
    assert Criterion.objects.get(pk=c.pk).check_spec == {
        "type": "contains",
        "value": "warfarin",
        "case_sensitive": False,
    }
    expect(page.locator(f"#crit-{c.pk}-errors")).to_be_empty()
