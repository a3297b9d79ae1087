"""An author attaches a file to the reference answer from the rubric editor, in headless
Chromium; it is shown beside the rubric and a reviewer downloads it."""

from __future__ import annotations

import hashlib

import pytest
from playwright.sync_api import expect

from rubrics import services
from rubrics.models import ReferenceDeliverable, Role
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(page, base: str, username: str) -> None:
    page.goto(f"{base}/login/", timeout=60_000)  # the live server's first page warms it up
    page.fill("#id_username", username)
    page.fill("#id_password", factories.PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()


MEMO = b"Chest pain triage memo\n1. Call 911.\n2. Chew aspirin.\n"


def test_author_attaches_a_file_beside_the_rubric_and_a_reviewer_downloads_it(
    page, live_server, tmp_path
):
    author = factories.make_user("writer")
    project = factories.make_project(owner=author, name="Cardiology")
    factories.add_member(project, Role.REVIEWER, "rev")
    task = services.task_create(
        project=project,
        external_id="chest",
        title="Chest pain",
        messages="Chest pressure?",
        reference="Call emergency services.",
    )
    rubric = services.rubric_create(project=project, task=task, title="Chest pain", user=author)
    memo = tmp_path / "triage memo.txt"
    memo.write_bytes(MEMO)

    login(page, live_server.url, author.username)
    page.goto(f"{live_server.url}/rubrics/{rubric.pk}/")
    expect(page.get_by_test_id("reference")).to_contain_text("Call emergency services.")
    page.click("text=Edit the reference or attach a file")
    expect(page.locator("#reference-body")).to_have_value("Call emergency services.")
    page.fill("#reference-body", "Call emergency services **now**.")
    page.set_input_files("#reference-file", str(memo))
    page.click("button:has-text('Save reference')")
    expect(page.get_by_text("Saved the reference answer with triage_memo.txt.")).to_be_visible()
    assert page.url.endswith(f"/rubrics/{rubric.pk}/")
    beside = page.get_by_test_id("reference")
    expect(beside).to_contain_text("Call emergency services now.")
    expect(beside.get_by_test_id("reference-file")).to_contain_text("triage_memo.txt")
    reference = ReferenceDeliverable.objects.order_by("-pk").first()
    assert reference.file_sha256 == hashlib.sha256(MEMO).hexdigest()
    # Editing the text again keeps the file (the box is ticked).
    page.click("text=Edit the reference or attach a file")
    expect(page.locator("#reference-keep-file")).to_be_checked()
    page.fill("#reference-body", "Call emergency services **now**, and chew aspirin.")
    page.click("button:has-text('Save reference')")
    expect(beside).to_contain_text("and chew aspirin.")
    expect(beside.get_by_test_id("reference-file")).to_contain_text("triage_memo.txt")

    page.click("button:has-text('Log out')")
    login(page, live_server.url, "rev")
    page.goto(f"{live_server.url}/p/{project.slug}/tasks/chest/")
    with page.expect_download() as download:
        page.get_by_test_id("reference-file").get_by_role("link").first.click()
    assert download.value.suggested_filename == "triage_memo.txt"
    assert download.value.path().read_bytes() == MEMO
