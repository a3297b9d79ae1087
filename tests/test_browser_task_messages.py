"""An author edits a task's messages in headless Chromium: adds three, reorders them, reads
the Markdown preview, saves; once a response answers the task the Edit form is gone."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from rubrics import services
from rubrics.models import Task
from tests import factories
from tests.test_browser_reference import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_author_writes_reorders_previews_and_saves_messages(page, live_server):
    author = factories.make_user("writer")
    project = factories.make_project(owner=author, name="Cardiology")
    services.task_create(
        project=project, external_id="chest", title="Chest pain", messages="Chest pressure?"
    )
    login(page, live_server.url, author.username)
    page.goto(f"{live_server.url}/p/{project.slug}/tasks/chest/")
    editor = page.get_by_test_id("messages-editor")
    rows = editor.locator("[data-message-row]")
    expect(rows).to_have_count(1)
    for role, text in (
        ("assistant", "Are you **short of breath**?"),
        ("user", "Yes, and sweating."),
        ("system", "You are a *triage* nurse."),
    ):
        editor.get_by_role("button", name="Add a message").click()
        row = rows.last
        row.get_by_label("Role").select_option(role)
        row.get_by_label("Message content").fill(text)
    expect(rows).to_have_count(4)
    # The preview is the server's sanitized Markdown, fetched as the author types.
    expect(rows.nth(1).get_by_test_id("message-preview").locator("strong")).to_have_text(
        "short of breath"
    )
    expect(rows.nth(3).get_by_test_id("message-preview").locator("em")).to_have_text("triage")
    # The system message goes first: up three times.
    rows.nth(3).get_by_role("button", name="Move up").click()
    rows.nth(2).get_by_role("button", name="Move up").click()
    rows.nth(1).get_by_role("button", name="Move up").click()
    # Down and back up again: both directions move a row.
    rows.nth(1).get_by_role("button", name="Move down").click()
    rows.nth(2).get_by_role("button", name="Move up").click()
    order = [
        "You are a *triage* nurse.",
        "Chest pressure?",
        "Are you **short of breath**?",
        "Yes, and sweating.",
    ]
    for i, text in enumerate(order):
        expect(rows.nth(i).get_by_label("Message content")).to_have_value(text)
    page.get_by_role("button", name="Save the task").click()
    expect(page.get_by_text("Saved the task.")).to_be_visible()
    task = Task.objects.get(external_id="chest")
    assert [m["role"] for m in task.messages] == ["system", "user", "assistant", "user"]
    shown = page.locator(".message .badge")
    expect(shown).to_have_text(["system", "user", "assistant", "user"])
    expect(page.locator(".message .md").first.locator("em")).to_have_text("triage")

    factories.import_responses(project, [{"task_id": "chest", "model": "m", "response": "Rest."}])
    page.reload()
    expect(page.get_by_test_id("prompt-frozen")).to_be_visible()
    expect(page.get_by_test_id("messages-editor")).to_have_count(0)
    expect(page.get_by_role("button", name="Save the task")).to_have_count(0)
