"""In Chromium: the rubric editor shows the task's image inline and the reference's file as a
link with its kind, beside the rubric, with no console errors."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from rubrics import services
from tests import factories
from tests.test_browser_reference import login
from tests.test_task_files import png, uri

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_editor_shows_a_task_image_and_a_reference_file(page, live_server):
    author = factories.make_user("writer")
    project = factories.make_project(owner=author, name="Charts")
    part = {"type": "image_url", "image_url": {"url": uri(png())}, "file": {"filename": "bars.png"}}
    task = services.task_create(
        project=project,
        external_id="bars",
        title="Bars",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Read it."}, part]}],
    )
    services.reference_create(
        task=task,
        body="East.",
        file=SimpleUploadedFile("answer.pdf", b"%PDF-1.4\n%demo\n" + bytes(64)),
        user=author,
    )
    rubric = services.rubric_create(project=project, task=task, title="Bars", user=author)
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(page, live_server.url, author.username)
    page.goto(f"{live_server.url}/rubrics/{rubric.pk}/")
    shown = page.get_by_test_id("task-files").locator("img")
    expect(shown).to_be_visible()
    # Shown is not loaded: wait until the browser is done with it (loaded, or broken, when its
    # width stays 0 and the assertion fails), as CI once read the width before the bytes came.
    handle = shown.element_handle()
    page.wait_for_function("(img) => img.complete", arg=handle)
    assert page.evaluate("(img) => img.naturalWidth", handle) == 40
    listed = page.get_by_test_id("reference-files")
    expect(listed).to_contain_text("answer.pdf")
    expect(listed).to_contain_text("pdf")
    assert errors == []
