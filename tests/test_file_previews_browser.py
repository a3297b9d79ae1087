"""File-borne script injection (tests/xss_files.py) in Chromium: every preview (PDF pages, XLSX,
CSV, DOCX, PPTX, an image) on a response page and on the annotation page shows the corpus as
text, and nothing runs: no dialog, no marked element, no script, frame or handler inside the
previews, no console error. On the annotation page a click on a cell or a page anchors the
active criterion's evidence there."""

from __future__ import annotations

import pytest
from django.test import Client
from playwright.sync_api import expect

from annotation.content.episode import ContentError, Episode
from annotation.content.intake import ProjectIntake
from annotation.models import Verdict
from tests.conftest import wait_for
from tests.file_fixtures import annotation_world, data_uri
from tests.test_browser_run_charts import login
from tests.test_xss import html_problems
from tests.xss_files import SHEET_NAME, SVG, hostile_files
from tests.xss_payloads import PAYLOADS

DOCUMENTS = 5  # hostile_files() minus the image
INERT = """() => document.querySelectorAll(
  '.trajectory script, .trajectory iframe, .trajectory object, .trajectory embed, '
  + '.trajectory svg, .trajectory [onerror], .trajectory [onload], .trajectory [onclick], '
  + '.trajectory [href^="javascript"], .trajectory [src^="javascript"], [data-xss]').length"""


def test_an_svg_is_refused_at_import(personas):
    value = [
        {"role": "user", "content": "Draw it."},
        {
            "role": "assistant",
            "content": [{"type": "image_url", "image_url": {"url": data_uri(SVG, "image/png")}}],
        },
    ]
    with pytest.raises(ContentError) as caught:
        Episode.parse(value, files=ProjectIntake(personas.project))
    assert "SVG" in str(caught.value)


@pytest.mark.django_db
def test_every_preview_fragment_holds_the_corpus_only_as_text(personas):
    response, _ = annotation_world(personas, hostile_files())
    client = Client()
    client.force_login(personas.annotator)
    for _, ref in Episode.load(response.content).files():
        if ref.is_image:
            served = b"".join(
                client.get(f"/p/{personas.project.slug}/files/{ref.sha256}/").streaming_content
            )
            assert b"alert" not in served  # the PNG's text chunks were dropped
            continue
        for sheet in (0, 1) if ref.kind == "xlsx" else (0,):
            answer = client.get(
                f"/p/{personas.project.slug}/files/{ref.sha256}/preview/", {"sheet": sheet}
            )
            html = answer.content.decode()
            assert answer.status_code == 200 and 'data-testid="preview-error"' not in html
            assert not html_problems(html), (ref.kind, html_problems(html))


def open_previews(page) -> None:
    """Scroll to each preview so htmx loads it, and wait until every document shows."""
    figures = page.get_by_test_id("file-preview")
    expect(figures).to_have_count(DOCUMENTS + 1)
    for i in range(DOCUMENTS + 1):
        figures.nth(i).scroll_into_view_if_needed()
    expect(page.get_by_test_id("file-shown")).to_have_count(DOCUMENTS, timeout=60_000)
    expect(page.get_by_test_id("preview-error")).to_have_count(0)


def check_inert_and_shown(page, dialogs: list[str]) -> None:
    first = PAYLOADS[0][1]
    xlsx = page.locator('[data-kind="xlsx"][data-testid="file-preview"]')
    expect(xlsx.locator('td[data-cell="A2"]')).to_have_text(first)
    expect(xlsx.locator('td[data-cell="B2"]')).to_have_text(
        '=HYPERLINK("javascript:alert(103)","click")'
    )
    csv = page.locator('[data-kind="csv"][data-testid="file-preview"]')
    expect(csv.locator('td[data-cell="B2"]')).to_have_text(first)
    expect(page.get_by_test_id("docx")).to_contain_text(first)
    expect(page.get_by_test_id("docx")).to_contain_text("open the memo")
    expect(page.get_by_test_id("slides")).to_contain_text(first)
    pages = page.get_by_test_id("pdf-page")
    expect(pages.first).to_be_attached()
    for i in range(pages.count()):
        pages.nth(i).scroll_into_view_if_needed()
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.pdf-page, img.file-image')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    assert page.locator("img.file-image").evaluate("i => i.naturalWidth") == 120
    # The sheet named with markup is a tab, shown as text; its table opens on a click.
    xlsx.locator(".sheet-tabs a.tab").click()
    expect(xlsx.locator("table.sheet")).to_have_attribute(
        "data-sheet", f'"><svg onload=alert({SHEET_NAME})>'
    )
    expect(xlsx.locator('td[data-cell="A1"]')).to_have_text("second sheet")
    assert page.evaluate(INERT) == 0
    assert not dialogs, dialogs


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_previews_on_the_response_and_annotation_pages_run_nothing(page, live_server, personas):
    response, assignment = annotation_world(personas, hostile_files())
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)

    login(page, live_server.url, personas.engineer.username)
    page.goto(f"{live_server.url}/responses/{response.pk}/")
    open_previews(page)
    check_inert_and_shown(page, dialogs)
    page.context.clear_cookies()

    login(page, live_server.url, personas.annotator.username)
    page.goto(f"{live_server.url}/assignments/{assignment.pk}/")
    open_previews(page)
    check_inert_and_shown(page, dialogs)
    assert not console, console


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_click_on_a_cell_or_a_page_anchors_the_evidence(page, live_server, personas):
    from tests.file_fixtures import make_pdf, make_xlsx

    response, assignment = annotation_world(
        personas, [("debt.xlsx", make_xlsx()), ("book.pdf", make_pdf(["Leverage 4.2x", "two"]))]
    )
    refs = {ref.kind: ref for _, ref in Episode.load(response.content).files()}
    login(page, live_server.url, personas.annotator.username)
    page.goto(f"{live_server.url}/assignments/{assignment.pk}/")
    page.locator('[data-kind="pdf"][data-testid="file-preview"]').scroll_into_view_if_needed()
    expect(page.get_by_test_id("file-shown")).to_have_count(2, timeout=60_000)
    first, second = page.locator("#criteria li.check-item").all()

    page.locator('td[data-cell="D3"]').click()
    expect(first.get_by_test_id("evidence-anchor")).to_have_text(
        "Evidence at debt.xlsx › Debt schedule › D3"
    )
    expect(first.locator("blockquote.evidence")).to_have_text("900000")
    page.keyboard.press("1")  # met; the next criterion becomes active
    expect(first.locator(".saved")).to_have_text("saved")

    page.locator('img.pdf-page[data-page="2"]').click()
    expect(second.get_by_test_id("evidence-anchor")).to_have_text("Evidence at book.pdf › page 2")
    page.keyboard.press("2")
    expect(second.locator(".saved")).to_have_text("saved")

    def anchors():
        found = dict(
            Verdict.objects.filter(assignment=assignment).values_list(
                "criterion__position", "evidence_anchor"
            )
        )
        return found if len(found) == 2 else None

    found = wait_for(anchors, what="both drafts saved")
    assert found[0] == {"file": refs["xlsx"].sha256, "sheet": "Debt schedule", "cell": "D3"}
    assert found[1] == {"file": refs["pdf"].sha256, "page": 2}
    # Reopened, the page shows where the evidence points.
    page.reload()
    expect(first.get_by_test_id("evidence-anchor")).to_have_text(
        "Evidence at debt.xlsx › Debt schedule › D3"
    )
