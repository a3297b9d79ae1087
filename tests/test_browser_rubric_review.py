"""An author writes a rubric with the keyboard, a reviewer reviews and publishes it, and after
an edit the version diff shows the change: in headless Chromium against a live server."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from rubrics import services
from rubrics.models import Role, RubricVersion
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CRITERIA = [
    "Advises calling emergency services for chest pressure",
    "Asks whether the pain spreads to the arm or jaw",
    "Asks about shortness of breath",
    "Explains why sweating with chest pain is a warning sign",
    "Recommends chewing aspirin unless allergic",
    "Advises not to drive oneself to hospital",
    "Mentions electrocardiogram testing at hospital",
    "Explains troponin blood testing",
    "Uses plain language without jargon",
    "Keeps the answer short enough to act on",
    "Acknowledges the person's worry",
]
PITFALL = "Suggests waiting at home to see if the pain passes"


def login(page, base: str, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", factories.PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()


def test_author_writes_with_keyboard_reviewer_publishes_and_diff_shows_the_edit(page, live_server):
    base = live_server.url
    author = factories.make_user("doc")
    project = factories.make_project(owner=author, name="Cardiology")
    reviewer = factories.add_member(project, Role.REVIEWER, "rev")
    services.task_create(
        project=project,
        external_id="chest",
        title="Chest pain at the gym",
        messages="I felt chest pressure and sweating at the gym. What should I do?",
    )

    # 1. The author writes twelve criteria without the mouse.
    login(page, base, author.username)
    page.goto(f"{base}/p/{project.slug}/tasks/chest/")
    page.click("text=Write a rubric")
    criteria = page.get_by_test_id("criterion")
    expect(page.get_by_test_id("criteria")).to_be_visible()
    page.wait_for_load_state("load")  # the editor's keyboard script is deferred
    page.keyboard.press("Alt+n")
    for i, text in enumerate(CRITERIA):
        expect(page.locator("#new-criterion-text")).to_be_focused()
        page.keyboard.type(text)
        page.keyboard.press("Enter")
        expect(criteria).to_have_count(i + 1)
    # The pitfall: Tab to the points, type them, Shift+Tab back, Enter.
    page.keyboard.type(PITFALL)
    page.keyboard.press("Tab")
    page.keyboard.press("Control+a")
    page.keyboard.type("-5")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    expect(criteria).to_have_count(12)
    expect(criteria.nth(11)).to_have_class("criterion pitfall")
    expect(page.get_by_test_id("points-total")).to_have_text("55")

    # Criteria 2 and 3 become a group: Alt+Right on the third one.
    criteria.nth(2).locator("textarea").focus()
    page.keyboard.press("Alt+ArrowRight")
    expect(page.get_by_test_id("group")).to_have_count(1)
    expect(page.locator(f"#crit-{_pk(page, 2)}-text")).to_be_focused()
    expect(page.get_by_test_id("formula")).to_contain_text("tree")
    # And a move up with Alt+Up keeps the focus on the moved criterion.
    criteria.nth(5).locator("textarea").focus()
    page.keyboard.press("Alt+ArrowUp")
    expect(criteria.nth(4).locator("textarea")).to_have_value(CRITERIA[5])
    expect(criteria.nth(4).locator("textarea")).to_be_focused()
    page.keyboard.press("Alt+ArrowDown")
    expect(criteria.nth(5).locator("textarea")).to_have_value(CRITERIA[5])
    page.click("button:has-text('Submit v1 for review')")
    expect(page.get_by_test_id("status")).to_have_text("In review")

    # 2. The reviewer comments on a criterion; approval waits for the author to resolve it.
    login(page, base, reviewer.username)
    page.goto(f"{base}/p/{project.slug}/tasks/chest/")
    page.click("text=Rubric for Chest pain at the gym")
    page.select_option("#comment-criterion", index=1)
    page.fill("#comment-body", "Say which emergency number.")
    page.click("button:has-text('Comment')")
    expect(page.get_by_test_id("comments")).to_contain_text("Say which emergency number.")
    page.click("button:has-text('Approve and publish v1')")
    expect(page.locator("ul.flash")).to_contain_text("review comment(s) are unresolved")
    rubric_url = page.url

    login(page, base, author.username)
    page.goto(rubric_url)
    expect(page.locator("button:has-text('Approve and publish')")).to_have_count(0)
    # The author asks back in the comment's thread, then resolves it.
    page.fill("[data-testid=comments] textarea[name=body]", "911, or the local number?")
    page.click("[data-testid=comments] button:has-text('Reply')")
    expect(page.get_by_test_id("reply")).to_contain_text("911, or the local number?")
    page.click("button:has-text('Resolve')")
    expect(page.get_by_test_id("comments")).to_contain_text("resolved by doc")

    # The reviewer finds it in their inbox, which says they may approve it.
    login(page, base, reviewer.username)
    page.goto(f"{base}/p/{project.slug}/")
    page.click("nav >> text=Reviews")
    row = page.get_by_test_id("review-row")
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("open-comments")).to_have_text("0")
    expect(row.get_by_test_id("may-approve")).to_have_text("yes")
    row.locator("a").click()
    page.click("button:has-text('Approve and publish v1')")
    expect(page.locator("text=Approved and published version 1")).to_be_visible()
    expect(page.get_by_test_id("grader")).to_contain_text('"method": "tree"')
    assert RubricVersion.objects.get(number=1).published_by == reviewer

    # 3. The author edits v2; the diff shows exactly that change, side by side.
    login(page, base, author.username)
    page.goto(rubric_url)
    page.click("button:has-text('Edit as new draft')")
    first = page.get_by_test_id("criterion").nth(0).locator("textarea")
    first.fill("Advises calling 911 for chest pressure")
    with page.expect_response(lambda r: "/criteria/" in r.url and r.request.method == "POST"):
        page.keyboard.press("Tab")
    expect(page.locator("#save-status")).to_contain_text("Saved")
    page.click("text=Compare versions")
    expect(page.get_by_test_id("diff-summary")).to_have_text(
        "0 added · 0 removed · 1 changed · 0 moved"
    )
    changed = page.locator("tr[data-status=changed]")
    expect(changed.locator("td.left")).to_contain_text(CRITERIA[0])
    expect(changed.locator("td.right")).to_contain_text("Advises calling 911 for chest pressure")
    expect(changed).to_contain_text("text")


def _pk(page, index: int) -> str:
    return page.get_by_test_id("criterion").nth(index).get_attribute("data-criterion")


def test_lint_follows_typing_and_a_second_authors_stale_save_is_refused(page, browser, live_server):
    base = live_server.url
    author = factories.make_user("doc")
    project = factories.make_project(owner=author, name="Cardiology")
    other = factories.add_member(project, Role.AUTHOR, "colleague")
    rubric = services.rubric_create(
        project=project,
        title="Shared draft",
        user=author,
        criteria=[services.clean_criterion("Advises calling emergency services", 5)],
    )
    url = f"{base}/rubrics/{rubric.pk}/"
    login(page, base, author.username)
    page.goto(url)
    lint = page.get_by_test_id("lint")
    expect(lint.locator('[data-code="vague"]')).to_have_count(0)
    text = page.get_by_test_id("criterion").nth(0).locator("textarea")
    text.fill("Gives appropriate advice")  # no blur: the autosave fires as the author types
    expect(lint.locator('[data-code="vague"]')).to_have_count(1)
    expect(page.locator("#save-status")).to_contain_text("Saved")

    # A colleague opened the same draft before the next edit, and saves first.
    second = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    login(second, base, other.username)
    second.goto(url)
    page.get_by_test_id("criterion").nth(0).locator("input.points").fill("4")
    expect(page.locator("#save-status")).to_contain_text("Saved (revision 2)")
    second.get_by_test_id("criterion").nth(0).locator("textarea").fill("Colleague's text")
    expect(second.locator("#save-status")).to_contain_text("Not saved")
    expect(second.locator("#save-status")).to_contain_text("reload")
    second.context.close()
    page.reload()
    expect(page.get_by_test_id("criterion").nth(0).locator("textarea")).to_have_value(
        "Gives appropriate advice"
    )
    expect(page.get_by_test_id("criterion").nth(0).locator("input.points")).to_have_value("4")
