"""Previews of the files a response carries (rubrics.files.preview, rubrics/_file_preview.html):
PDF pages rendered once and kept, limits stated, sheets as addressed tables, DOCX sanitised,
images inline at their size; members only; and evidence anchored to a page or a cell."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client

from annotation import services as annotation_services
from annotation.content import evidence
from annotation.content.episode import Episode
from annotation.models import Verdict
from rubrics.files import preview, store
from tests import factories
from tests.file_fixtures import (
    annotation_world,
    make_docx,
    make_pdf,
    make_png,
    make_pptx,
    make_xlsx,
    response_with_files,
)

pytestmark = pytest.mark.django_db


def refs(response) -> dict[str, store.FileRef]:
    return {ref.kind: ref for _, ref in Episode.load(response.content).files()}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def fragment(client, project, ref, **query) -> str:
    answer = client.get(f"/p/{project.slug}/files/{ref.sha256}/preview/", query)
    assert answer.status_code == 200, answer.content[:500]
    return answer.content.decode()


def test_pdf_pages_are_rendered_once_kept_in_storage_and_served_as_png(personas):
    response, _ = annotation_world(personas, [("book.pdf", make_pdf(3))])
    ref = refs(response)["pdf"]
    client = client_for(personas.annotator)
    before = preview.renders
    html = fragment(client, personas.project, ref)
    assert preview.renders - before == 3
    assert html.count('data-testid="pdf-page"') == 3
    assert 'width="827" height="1170"' in html and 'loading="lazy"' in html
    for n in (1, 2, 3):
        assert default_storage.exists(preview.page_path(ref.sha256, n))
    made = default_storage.get_modified_time(preview.page_path(ref.sha256, 1))
    # Asked again (the fragment, and each page), nothing is rendered again.
    fragment(client, personas.project, ref)
    page = client.get(f"/p/{personas.project.slug}/files/{ref.sha256}/pages/2.png")
    assert page.status_code == 200
    body = b"".join(page.streaming_content)
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    assert page["Content-Type"] == "image/png"
    assert page["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in page["Content-Security-Policy"]
    assert preview.renders - before == 3
    assert default_storage.get_modified_time(preview.page_path(ref.sha256, 1)) == made
    # No page 4, no page 0, and no pages of anything that is not a PDF.
    for n in (0, 4):
        assert (
            client.get(f"/p/{personas.project.slug}/files/{ref.sha256}/pages/{n}.png").status_code
            == 404
        )


def test_a_page_asked_for_before_the_preview_renders_the_pdf(personas):
    response, _ = annotation_world(personas, [("book.pdf", make_pdf(["only page"]))])
    ref = refs(response)["pdf"]
    before = preview.renders
    answer = client_for(personas.author).get(
        f"/p/{personas.project.slug}/files/{ref.sha256}/pages/1.png"
    )
    assert answer.status_code == 200
    assert preview.renders - before == 1


def test_a_long_pdf_shows_its_first_pages_and_says_which_were_not_rendered(personas):
    response, _ = annotation_world(personas, [("book.pdf", make_pdf(50))])
    ref = refs(response)["pdf"]
    html = fragment(client_for(personas.reviewer), personas.project, ref)
    assert html.count('data-testid="pdf-page"') == 20
    assert "50 pages" in html
    assert "Pages 21-50 not rendered (at most 20)" in html
    assert not default_storage.exists(preview.page_path(ref.sha256, 21))
    page = f"/p/{personas.project.slug}/files/{ref.sha256}/pages/21.png"
    assert client_for(personas.reviewer).get(page).status_code == 404


def test_a_renderer_out_of_time_is_stopped_and_said(personas, monkeypatch):
    response, _ = annotation_world(personas, [("slow.pdf", make_pdf(2))])
    ref = refs(response)["pdf"]
    monkeypatch.setattr(preview, "PDF_RENDER_SECONDS", 0.01)
    html = fragment(client_for(personas.admin), personas.project, ref)
    assert "could not be rendered within 0.01 s" in html
    assert 'data-testid="preview-error"' in html
    # Nothing was kept, so the next look (with time enough) renders it.
    monkeypatch.setattr(preview, "PDF_RENDER_SECONDS", 30)
    html = fragment(client_for(personas.admin), personas.project, ref)
    assert html.count('data-testid="pdf-page"') == 2


def test_a_broken_pdf_is_an_error_on_the_page_not_a_500(personas):
    ref = store.put(personas.project, b"%PDF-1.7\n" + b"\x00garbage" * 20, name="bad.pdf")
    client = client_for(personas.admin)
    html = fragment(client, personas.project, ref)
    assert "is not a PDF PDFium can render" in html
    page = client.get(f"/p/{personas.project.slug}/files/{ref.sha256}/pages/1.png")
    assert page.status_code == 404


def test_a_workbook_is_a_table_per_sheet_with_addresses_and_tabs(personas):
    hostile = {
        "C7": '=HYPERLINK("javascript:alert(1)","x")',
        "A9": "<script>alert(1)</script>",
        "B9": "@SUM(1)",
    }
    response, _ = annotation_world(personas, [("debt.xlsx", make_xlsx(hostile))])
    ref = refs(response)["xlsx"]
    client = client_for(personas.annotator)
    html = fragment(client, personas.project, ref)
    assert 'data-sheet="Debt schedule"' in html
    assert '<th scope="col">D</th>' in html and '<th scope="row">3</th>' in html
    assert '<td data-cell="D3" title="D3">900000</td>' in html
    formula = "=HYPERLINK(&quot;javascript:alert(1)&quot;,&quot;x&quot;)"
    assert f'<td data-cell="C7" title="C7">{formula}</td>' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert '<td data-cell="B9" title="B9">@SUM(1)</td>' in html
    assert 'data-testid="sheet-tabs"' in html and "?sheet=1" in html
    second = fragment(client, personas.project, ref, sheet=1)
    assert 'data-sheet="Notes"' in second and 'data-cell="B2"' in second
    assert "Senior term loan" in second
    assert "has no sheet 6" in fragment(client, personas.project, ref, sheet=5)
    url = f"/p/{personas.project.slug}/files/{ref.sha256}/preview/"
    assert client.get(url, {"sheet": "-1"}).status_code == 400


def test_a_wide_sheet_is_cut_and_says_so(personas):
    import io

    import openpyxl

    book = openpyxl.Workbook()
    for r in range(1, 602):
        book.active.cell(row=r, column=1, value=r)
    book.active.cell(row=1, column=45, value="far")
    out = io.BytesIO()
    book.save(out)
    response, _ = annotation_world(personas, [("wide.xlsx", out.getvalue())])
    html = fragment(client_for(personas.admin), personas.project, refs(response)["xlsx"])
    assert "Columns after AN not shown" in html
    assert "Rows after row 500 not shown (500 at most)" in html
    assert 'data-cell="AN1"' in html and 'data-cell="AO1"' not in html


def test_a_csv_is_one_addressed_sheet(personas):
    data = b"region,revenue\nNorth,<b>120</b>\nSouth,=1+1\n"
    response, _ = annotation_world(personas, [("r.csv", data)])
    html = fragment(client_for(personas.admin), personas.project, refs(response)["csv"])
    assert '<td data-cell="B2" title="B2">&lt;b&gt;120&lt;/b&gt;</td>' in html
    assert '<td data-cell="B3" title="B3">=1+1</td>' in html
    assert 'data-testid="sheet-tabs"' not in html


def test_a_word_document_is_sanitised_html_made_once(personas):
    data = make_docx(
        ['<script>alert("docx")</script><img src=x onerror=alert(2)>'],
        link=("click me", "javascript:alert(3)"),
    )
    response, _ = annotation_world(personas, [("memo.docx", data)])
    ref = refs(response)["docx"]
    html = fragment(client_for(personas.annotator), personas.project, ref)
    shown = html[html.index('data-testid="docx"') :]
    assert "<h4>Investment memo: Harbor Logistics</h4>" in shown
    assert "<strong>buy</strong>" in shown and "<em>7.5x</em>" in shown
    assert "<ul><li>Leverage under 4.5x</li><li>Covenants tested quarterly</li></ul>" in shown
    assert "<td>Leverage</td><td>4.2x</td>" in shown
    assert "&lt;script&gt;" in shown and "<script" not in shown
    assert "<img" not in shown and "&lt;img src=x onerror=alert(2)&gt;" in shown
    assert "click me" in shown and "href" not in shown
    assert default_storage.exists(f"previews/v1/{ref.sha256[:2]}/{ref.sha256}/document.json")


def test_a_deck_is_its_slides_text(personas):
    response, _ = annotation_world(
        personas, [("deck.pptx", make_pptx(["Thesis <script>alert(1)</script>", "Risks"]))]
    )
    html = fragment(client_for(personas.annotator), personas.project, refs(response)["pptx"])
    assert html.count("<h4>Slide") == 2
    assert "Thesis &lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_an_image_shows_inline_at_its_size_and_without_its_metadata(personas):
    png = make_png((300, 200), text={"Comment": "<script>alert('png')</script>"})
    response, assignment = annotation_world(personas, [("chart.png", png)])
    ref = refs(response)["png"]
    page = client_for(personas.annotator).get(f"/assignments/{assignment.pk}/")
    html = page.content.decode()
    src = f"/p/{personas.project.slug}/files/{ref.sha256}/"
    assert f'src="{src}"' in html
    assert 'loading="lazy"' in html and 'width="300" height="200"' in html
    assert f'href="{src}?download=1&amp;name=' in html
    served = b"".join(client_for(personas.annotator).get(src).streaming_content)
    assert b"alert" not in served and b"Comment" not in served


def test_every_page_of_an_episode_shows_its_files(personas):
    """The response, score, adjudication and annotation pages all include the previews."""
    response, assignment = annotation_world(
        personas, [("book.pdf", make_pdf(1)), ("debt.xlsx", make_xlsx())]
    )
    files = refs(response)
    for user, url in (
        (personas.annotator, f"/assignments/{assignment.pk}/"),
        (personas.engineer, f"/responses/{response.pk}/"),
    ):
        html = client_for(user).get(url).content.decode()
        for ref in files.values():
            assert f'hx-get="/p/{personas.project.slug}/files/{ref.sha256}/preview/"' in html
        assert html.count('data-testid="file-preview"') == 2


@pytest.mark.parametrize("what", ["preview/", "pages/1.png"])
def test_previews_are_for_members_only(personas, what):
    response, _ = annotation_world(personas, [("book.pdf", make_pdf(1))])
    ref = refs(response)["pdf"]
    url = f"/p/{personas.project.slug}/files/{ref.sha256}/{what}"
    for role, user in personas.by_role().items():
        expected = 404 if role == "outsider" else 200
        assert client_for(user).get(url).status_code == expected, role
    assert Client().get(url).status_code == 302  # to sign in
    # Another project's member cannot reach it through their own project either.
    other = factories.make_project(owner=personas.outsider)
    theirs = f"/p/{other.slug}/files/{ref.sha256}/{what}"
    assert client_for(personas.outsider).get(theirs).status_code == 404
    assert client_for(personas.admin).post(url).status_code == 405


def test_annotators_previews_name_no_model(personas):
    response, assignment = annotation_world(
        personas, [("book.pdf", make_pdf(1)), ("debt.xlsx", make_xlsx()), ("m.docx", make_docx())]
    )
    client = client_for(personas.annotator)
    pages = [client.get(f"/assignments/{assignment.pk}/").content.decode()]
    for ref in refs(response).values():
        pages.append(fragment(client, personas.project, ref))
    assert response.model == "secret-model-x"
    assert not any("secret-model-x" in html for html in pages)


def test_the_annotation_page_queries_do_not_grow_with_pages(personas, django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for n, pages in enumerate((1, 30)):
        _, assignment = annotation_world(
            personas, [("book.pdf", make_pdf(pages))], external_id=f"deal-{n}"
        )
        client = client_for(personas.annotator)
        client.get(f"/assignments/{assignment.pk}/")  # warm
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/assignments/{assignment.pk}/").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


# --- Evidence anchored in a file ----------------------------------------------------------


def criterion_of(assignment):
    return assignment.queue.grader.version.criteria.order_by("position").first()


def save(assignment, **kwargs):
    return annotation_services.verdict_save_draft(
        assignment_id=assignment.pk,
        criterion_id=criterion_of(assignment).pk,
        outcome="met",
        **kwargs,
    )


def test_evidence_anchors_to_a_cell_or_a_page_of_a_file(personas):
    response, assignment = annotation_world(
        personas, [("debt.xlsx", make_xlsx()), ("book.pdf", make_pdf(["Leverage is 4.2x.", "b"]))]
    )
    files = refs(response)
    cell = {"file": files["xlsx"].sha256, "sheet": "Debt schedule", "cell": "D3"}
    verdict = save(assignment, evidence="900000", evidence_anchor=json.dumps(cell))
    verdict.refresh_from_db()
    assert verdict.evidence_anchor == cell
    assert verdict.evidence_step == 1  # the message carrying the workbook
    names = evidence.file_names(response.episode)
    assert evidence.anchor_label(verdict.evidence_anchor, names) == (
        "debt.xlsx › Debt schedule › D3"
    )
    page = {"file": files["pdf"].sha256, "page": 2, "region": [0.1, 0.2, 0.5, 0.25]}
    verdict = save(assignment, evidence="Leverage is 4.2x", evidence_anchor=page)
    assert Verdict.objects.get(pk=verdict.pk).evidence_anchor == page
    # Quoting text again drops the anchor.
    verdict = save(assignment, evidence="Here they are", evidence_step=1)
    assert Verdict.objects.get(pk=verdict.pk).evidence_anchor is None


@pytest.mark.parametrize(
    ("anchor", "says"),
    [
        ("{not json", "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        ({"file": "abc", "page": 1}, "sha256"),
        ({"file": "0" * 64, "page": 1}, "does not carry"),
        ({"file": "PDF", "page": 3}, "has 2 page(s)"),
        ({"file": "PDF", "page": 0}, "whole number from 1"),
        ({"file": "PDF", "page": True}, "whole number from 1"),
        ({"file": "PDF", "page": 1, "region": [0.5, 0, 0.6, 1]}, "fractions of the page"),
        ({"file": "PDF", "sheet": "Debt schedule", "cell": "A1"}, "has no cells"),
        ({"file": "XLSX", "sheet": "Nope", "cell": "A1"}, "has no sheet 'Nope'"),
        ({"file": "XLSX", "sheet": "Debt schedule", "cell": "b7"}, "address, as B7"),
        ({"file": "XLSX", "sheet": "Debt schedule", "cell": "ZZZZ1"}, "address, as B7"),
        ({"file": "XLSX", "page": 1}, "has no pages"),
        ({"file": "XLSX", "sheet": "Debt schedule", "cell": "A1", "page": 1}, "not both"),
        ({"file": "XLSX", "script": "x"}, "Unknown anchor keys: script"),
        ({"file": "XLSX"}, "Point at a page"),
        ("x" * 3000, "too long"),
    ],
)
def test_a_bad_anchor_is_refused_saying_why(personas, anchor, says):
    from django.core.exceptions import ValidationError

    response, assignment = annotation_world(
        personas, [("debt.xlsx", make_xlsx()), ("book.pdf", make_pdf(["a", "b"]))]
    )
    files = refs(response)
    if isinstance(anchor, dict):
        anchor = {
            k: {"PDF": files["pdf"].sha256, "XLSX": files["xlsx"].sha256}.get(v, v)
            if k == "file"
            else v
            for k, v in anchor.items()
        }
    with pytest.raises(ValidationError) as caught:
        save(assignment, evidence="", evidence_anchor=anchor)
    assert says in str(caught.value.message_dict["evidence_anchor"])
    assert not Verdict.objects.filter(assignment=assignment).exists()


def test_a_quote_with_an_anchor_must_be_what_the_file_shows_there(personas):
    from django.core.exceptions import ValidationError

    response, assignment = annotation_world(personas, [("debt.xlsx", make_xlsx())])
    cell = {"file": refs(response)["xlsx"].sha256, "sheet": "Debt schedule", "cell": "D3"}
    with pytest.raises(ValidationError, match="not what cell D3 holds"):
        save(assignment, evidence="1050000", evidence_anchor=cell)


def test_the_draft_door_takes_an_anchor_and_answers_errors_as_json(personas):
    response, assignment = annotation_world(personas, [("debt.xlsx", make_xlsx())])
    sha = refs(response)["xlsx"].sha256
    client = client_for(personas.annotator)
    url = f"/assignments/{assignment.pk}/draft/"
    post = {"criterion": criterion_of(assignment).pk, "outcome": "met", "evidence": ""}
    bad = client.post(
        url,
        {**post, "evidence_anchor": '{"file": "' + sha + '", "sheet": "X", "cell": "A1"}'},
        HTTP_ACCEPT="application/json",
    )
    assert bad.status_code == 400
    assert "has no sheet 'X'" in bad.json()["error"]
    good = client.post(
        url,
        {
            **post,
            "evidence_anchor": json.dumps({"file": sha, "sheet": "Debt schedule", "cell": "A1"}),
        },
        HTTP_ACCEPT="application/json",
    )
    assert good.status_code == 200, good.content
    page = client.get(f"/assignments/{assignment.pk}/").content.decode()
    assert "Evidence at debt.xlsx › Debt schedule › A1" in page


def test_a_step_verdicts_anchor_must_be_in_its_step(personas):
    """A file carried by another message is not that step's evidence."""
    from django.core.exceptions import ValidationError

    from rubrics import services as rubric_services
    from rubrics.models import Criterion

    p = personas
    task = factories.make_task(p.project, "steps")
    rubric = rubric_services.rubric_create(
        project=p.project,
        task=task,
        title="Steps",
        user=p.admin,
        criteria=[rubric_services.CriterionInput(text="Each step is sound", points=1)],
    )
    draft = rubric.versions.get()
    Criterion.objects.filter(version=draft).update(scope="step", step_rule="all")
    grader = rubric_services.version_publish(version=draft, user=p.admin)
    first = [{"role": "user", "content": "Draft it."}, {"role": "assistant", "content": "Soon."}]
    response = response_with_files(p.project, task, [("debt.xlsx", make_xlsx())], before=first)
    # Steps #2 and #4; only #4 carries the workbook.
    queue = factories.make_queue(p.project, grader, [p.annotator], p.admin, overlap=1)
    assignment = annotation_services.assignment_claim(queue=queue, user=p.annotator)
    sha = refs(response)["xlsx"].sha256
    anchor = {"file": sha, "sheet": "Debt schedule", "cell": "A1"}
    verdict = save(assignment, step=3, evidence="Year", evidence_anchor=anchor)
    assert (verdict.step, verdict.evidence_step) == (3, 3)
    with pytest.raises(ValidationError, match="not carry there"):
        save(assignment, step=1, evidence="", evidence_anchor=anchor)


def test_the_api_takes_an_anchor_and_says_what_is_wrong(personas):
    from tests.test_api import api_client

    response, assignment = annotation_world(personas, [("book.pdf", make_pdf(["a", "b"]))])
    sha = refs(response)["pdf"].sha256
    client = api_client(personas.annotator)
    url = f"/api/assignments/{assignment.pk}/verdicts/"
    body = {"criterion": criterion_of(assignment).pk, "outcome": "unmet"}
    bad = client.put(url, {**body, "evidence_anchor": {"file": sha, "page": 9}}, format="json")
    assert bad.status_code == 400
    assert "has 2 page(s); there is no page 9" in json.dumps(bad.json())
    good = client.put(url, {**body, "evidence_anchor": {"file": sha, "page": 2}}, format="json")
    assert good.status_code == 200, good.content
    assert good.json()["evidence_anchor"] == {"file": sha, "page": 2}
    assert good.json()["evidence_step"] == 1


@pytest.fixture
def storage_opens(monkeypatch):
    """The names Django's storage opens from here on (the storage itself still does the work)."""
    default_storage.exists("warm-up")  # the lazy default storage is made
    storage_class = type(default_storage._wrapped)
    original = storage_class.open
    opened: list[str] = []

    def counting(self, name, mode="rb"):
        opened.append(name)
        return original(self, name, mode)

    monkeypatch.setattr(storage_class, "open", counting)
    return opened


def vision_pages(ref: store.FileRef) -> list[store.FileRef]:
    """The pages a judge that sees images is sent of `ref`, as a prompt build takes them."""
    from annotation.content import render

    _lines, attached, _tally = render.files_for_judge([ref], sight=render.Sight(images=True))
    return [attachment.ref for attachment in attached[0]]


def test_a_prompt_build_names_pdf_pages_by_the_hashes_the_render_kept(personas, storage_opens):
    response, _ = annotation_world(personas, [("book.pdf", make_pdf(3))])
    ref = refs(response)["pdf"]
    before = preview.renders
    first = vision_pages(ref)
    assert preview.renders - before == 3
    # Each page is named by the hash of its PNG, kept in storage under it.
    for number, page in enumerate(first, 1):
        with default_storage.open(preview.page_path(ref.sha256, number), "rb") as handle:
            png = handle.read()
        assert page.sha256 == hashlib.sha256(png).hexdigest() and page.size == len(png)
        assert store.read(page.sha256) == png
        assert page.name == f"book.pdf page {number}"
    storage_opens.clear()
    # A second build reads the manifest alone: no page is read again, or hashed.
    assert vision_pages(ref) == first
    assert storage_opens == [f"previews/v1/{ref.sha256[:2]}/{ref.sha256}/pages.json"]
    assert preview.renders - before == 3


def test_a_manifest_kept_without_page_hashes_is_hashed_once_not_rendered_again(
    personas, storage_opens
):
    response, _ = annotation_world(personas, [("book.pdf", make_pdf(2))])
    ref = refs(response)["pdf"]
    pages = preview.pdf_pages(ref)
    # As manifests were written before they held the pages' hashes.
    manifest = f"previews/v1/{ref.sha256[:2]}/{ref.sha256}/pages.json"
    default_storage.delete(manifest)
    old = {"total": pages.total, "sizes": pages.sizes, "cut": pages.cut}
    default_storage.save(manifest, ContentFile(json.dumps(old).encode()))
    before = preview.renders
    storage_opens.clear()
    first = vision_pages(ref)
    assert [p.sha256 for p in first] == [sha for sha, _ in pages.pngs]
    assert {preview.page_path(ref.sha256, n) for n in (1, 2)} <= set(storage_opens)
    storage_opens.clear()
    assert vision_pages(ref) == first
    assert storage_opens == [manifest]
    assert preview.renders == before
