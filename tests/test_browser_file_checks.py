"""An author writes a check over a spreadsheet deliverable in the editor: an xlsx_cell check
(sheet 'Debt', cell B7, within 1% of 1,200,000), whose own fields show once the type is
chosen; the page says it in words, before and after a reviewer publishes it. No console
error on the way."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from rubrics import services
from rubrics.models import Criterion
from tests import factories
from tests.test_browser_episode_authoring import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WORDS = "in the first spreadsheet (XLSX or CSV), sheet 'Debt', B7 is 1,200,000 ± 1%"
SPEC = {
    "type": "xlsx_cell",
    "sheet": "Debt",
    "cell": "B7",
    "value": 1_200_000.0,
    "tolerance": 0.01,
    "relative": True,
}


def test_an_author_writes_a_spreadsheet_cell_check(page, live_server, personas):
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    task = factories.make_task(personas.project, "debt-schedule")
    rubric = services.rubric_create(
        project=personas.project, task=task, title="Debt schedule", user=personas.author
    )
    base = live_server.url

    login(page, base, personas.author.username)
    page.goto(f"{base}/rubrics/{rubric.pk}/")
    page.wait_for_load_state("load")
    criteria = page.get_by_test_id("criterion")
    page.fill("#new-criterion-text", "The facility in the schedule is 1.2m")
    page.keyboard.press("Enter")
    expect(criteria).to_have_count(1)
    row = criteria.nth(0)
    page.get_by_label("Criterion 1 kind").select_option("checked")
    cell = row.locator("input[name=check_cell]")
    expect(cell).to_be_hidden()  # a contains check has no cell
    row.locator("select[name=check_type]").select_option("xlsx_cell")
    expect(cell).to_be_visible()
    expect(row.locator("input[name=check_tool]")).to_be_hidden()
    expect(row.locator("input[name=check_max]")).to_be_hidden()
    row.locator("input[name=check_sheet]").fill("Debt")
    cell.fill("b7")
    row.locator("input[name=check_tolerance]").fill("0.01")
    row.locator("input[name=check_relative]").check()
    row.locator("input[name=check_value]").fill("1,200,000")
    row.locator("input[name=check_value]").blur()

    def saved() -> bool:
        c = Criterion.objects.filter(version__rubric=rubric).first()
        return bool(c and c.check_spec == SPEC)

    from tests.conftest import wait_for

    wait_for(saved, timeout=10, what="the xlsx_cell check to be saved")
    expect(row.get_by_test_id("crit-check-words")).to_have_text(f"Checks that {WORDS}.")
    expect(page.get_by_test_id("criterion-errors").first).to_be_empty()
    # The lint says nothing of a tolerance: one is set.
    expect(page.locator("#lint li[data-code=exact_cell_number]")).to_have_count(0)

    # A bad address is named, and the saved check stays.
    cell.fill("B")
    cell.blur()
    expect(page.get_by_test_id("criterion-errors").first).to_contain_text("check.cell")
    assert saved()
    cell.fill("B7")
    cell.blur()
    expect(page.get_by_test_id("criterion-errors").first).to_be_empty()

    # Reloaded, the fields come back as set.
    page.reload()
    row = page.get_by_test_id("criterion").nth(0)
    expect(row.locator("select[name=check_type]")).to_have_value("xlsx_cell")
    expect(row.locator("input[name=check_cell]")).to_have_value("B7")
    expect(row.locator("input[name=check_value]")).to_have_value("1200000")
    expect(row.locator("input[name=check_relative]")).to_be_checked()
    page.click("button:has-text('Submit v1 for review')")
    expect(page.get_by_test_id("status")).to_have_text("In review")

    login(page, base, personas.reviewer.username)
    page.goto(f"{base}/rubrics/{rubric.pk}/")
    page.click("button:has-text('Approve and publish v1')")
    expect(page.get_by_test_id("status")).to_have_text("Published")
    shown = page.get_by_test_id("criterion-readonly").nth(0)
    expect(shown.get_by_test_id("crit-check-words")).to_have_text(f"{WORDS[0].upper()}{WORDS[1:]}.")
    assert not errors, f"console errors: {errors}"
