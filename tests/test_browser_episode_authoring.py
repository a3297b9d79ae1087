"""An author writes criteria over an agent's episodes in the editor: a step criterion (judged
at each call of refund, met only if met at every step) and a tool_order check; a reviewer
publishes the rubric, and the page says both in words. No console error on the way."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from rubrics import services
from rubrics.models import Criterion, RubricVersion
from tests import factories
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STEP_WORDS = "Judged at each call of refund; met only if met at every step."
ORDER_WORDS = "Refund is called only after lookup_order."


def login(page, base: str, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/login/", timeout=60_000)  # the live server's first page warms it up
    page.fill("#id_username", username)
    page.fill("#id_password", factories.PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()


def test_an_author_writes_a_step_criterion_and_a_tool_order_check(page, live_server, personas):
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    task = factories.make_task(personas.project, "refund-agent")
    rubric = services.rubric_create(
        project=personas.project, task=task, title="Refund agent", user=personas.author
    )
    base = live_server.url

    login(page, base, personas.author.username)
    page.goto(f"{base}/rubrics/{rubric.pk}/")
    page.wait_for_load_state("load")  # the editor's script is deferred
    criteria = page.get_by_test_id("criterion")

    # 1. A step criterion: the step rule and tool show once the scope is step.
    page.fill("#new-criterion-text", "Looks the order up before each refund")
    page.keyboard.press("Enter")
    expect(criteria).to_have_count(1)
    step = criteria.nth(0)
    rule = page.get_by_label("Criterion 1 step rule")
    expect(rule).to_be_hidden()
    page.get_by_label("Criterion 1 scope").select_option("step")
    expect(rule).to_be_visible()
    expect(rule).to_have_value("all")  # a positive criterion starts at "every step"
    page.get_by_label("Criterion 1 step tool").fill("refund")
    wait_for(
        lambda: Criterion.objects.filter(
            version__rubric=rubric, scope="step", step_rule="all", step_tool="refund"
        ).exists(),
        timeout=10,
        what="the step criterion to be saved",
    )
    expect(step.get_by_test_id("crit-scope")).to_have_text(STEP_WORDS)

    # 2. A checked criterion: tool_order, with its own two fields.
    page.fill("#new-criterion-text", "Refunds only after a lookup")
    page.keyboard.press("Enter")
    expect(criteria).to_have_count(2)
    check = criteria.nth(1)
    page.get_by_label("Criterion 2 kind").select_option("checked")
    first = check.locator("input[name=check_first]")
    expect(first).to_be_hidden()  # a contains check has no order fields
    check.locator("select[name=check_type]").select_option("tool_order")
    expect(first).to_be_visible()
    expect(check.locator("input[name=check_value]")).to_be_hidden()
    first.fill("lookup_order")
    check.locator("input[name=check_then]").fill("refund")
    wait_for(
        lambda: Criterion.objects.filter(
            version__rubric=rubric,
            kind="checked",
            check_spec={"type": "tool_order", "first": "lookup_order", "then": "refund"},
        ).exists(),
        timeout=10,
        what="the tool_order check to be saved",
    )
    expect(check.get_by_test_id("crit-check-words")).to_have_text(
        f"Checks that {ORDER_WORDS[0].lower()}{ORDER_WORDS[1:]}"
    )
    expect(page.get_by_test_id("criterion-errors").first).to_be_empty()

    # 3. Saved, reloaded: the page gives back what was set.
    page.reload()
    expect(page.get_by_label("Criterion 1 scope")).to_have_value("step")
    expect(page.get_by_label("Criterion 1 step tool")).to_have_value("refund")
    expect(check.locator("input[name=check_then]")).to_have_value("refund")
    page.click("button:has-text('Submit v1 for review')")
    expect(page.get_by_test_id("status")).to_have_text("In review")

    # 4. The reviewer publishes; the published page states both in words.
    login(page, base, personas.reviewer.username)
    page.goto(f"{base}/rubrics/{rubric.pk}/")
    page.click("button:has-text('Approve and publish v1')")
    expect(page.get_by_test_id("status")).to_have_text("Published")
    shown = page.get_by_test_id("criterion-readonly")
    expect(shown.nth(0).get_by_test_id("crit-scope")).to_have_text(STEP_WORDS[:-1])
    expect(shown.nth(1).get_by_test_id("crit-check-words")).to_have_text(ORDER_WORDS)
    expect(page.get_by_test_id("grader")).to_contain_text('"step_tool": "refund"')
    assert RubricVersion.objects.get(rubric=rubric).status == "published"
    assert not errors, f"console errors: {errors}"
