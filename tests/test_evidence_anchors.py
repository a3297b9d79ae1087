"""Evidence anchored in a file (issue 17): a step criterion's evidence at a sheet's cell, a PDF
page or a region of an image in its own step (or its tool results); a reviewer's gold anchored
the same way (service, form and API); refusals that name the field; anchors shown in words,
with the file's name, where people's verdicts are read, and never to another annotator."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from annotation import services as annotation_services
from annotation.content import evidence
from annotation.models import Adjudication, Verdict
from rubrics import services as rubric_services
from rubrics.files import convert
from rubrics.models import AuditEvent, Criterion, Role
from tests import factories
from tests.file_fixtures import data_uri, file_part, make_pdf, make_png, make_xlsx
from tests.test_api import api_client

pytestmark = pytest.mark.django_db


def step_world(personas, *, overlap=1, annotators=None, pdf=("Leverage is 4.2x.", "Two")):
    """A step criterion over an episode of two steps: #2 sends a workbook and calls a tool
    whose result (#3) carries a PDF; #5 sends a chart. Returns (response, grader, criterion,
    files by kind)."""
    from annotation.content.episode import Episode
    from annotation.content.intake import ProjectIntake
    from annotation.models import Response

    p = personas
    task = factories.make_task(p.project, "deal", prompt="Build the debt schedule.")
    rubric = rubric_services.rubric_create(
        project=p.project,
        task=task,
        title="Steps",
        user=p.admin,
        criteria=[rubric_services.CriterionInput(text="Each step shows its work", points=1)],
    )
    draft = rubric.versions.get()
    Criterion.objects.filter(version=draft).update(scope="step", step_rule="all")
    grader = rubric_services.version_publish(version=draft, user=p.admin)
    value = [
        {"role": "user", "content": "Send the schedule and the deal book."},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "The schedule; fetching the book."},
                file_part("debt.xlsx", make_xlsx()),
            ],
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "fetch", "arguments": '{"doc": "book"}'},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "c1",
            "name": "fetch",
            "content": [
                {"type": "text", "text": "book"},
                file_part("book.pdf", make_pdf(list(pdf))),
            ],
        },
        {"role": "user", "content": "And the chart?"},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Here."}, chart_part()],
        },
    ]
    episode = Episode.parse(value, files=ProjectIntake(p.project))
    response = Response.objects.create(
        task=task, model="secret-model-x", text=episode.final_text, content=episode.stored()
    )
    criterion = grader.version.criteria.get()
    files = {ref.kind: ref for _, ref in episode.files()}
    factories.make_queue(p.project, grader, annotators or [p.annotator], p.admin, overlap=overlap)
    return response, grader, criterion, files


def chart_part() -> dict:
    """A PNG sent as a named file part (an image_url part has no name)."""
    return {"type": "file", "file": {"filename": "chart.png", "file_data": data_uri(make_png())}}


def claim(grader, user):
    return annotation_services.assignment_claim(queue=grader.queues.get(), user=user)


def save_step(assignment, criterion, step, anchor, evidence_text=""):
    return annotation_services.verdict_save_draft(
        assignment_id=assignment.pk,
        criterion_id=criterion.pk,
        outcome="met",
        step=step,
        evidence=evidence_text,
        evidence_anchor=anchor,
    )


# --- A step's evidence -----------------------------------------------------------------------


def test_a_steps_evidence_anchors_to_a_cell_its_tool_results_page_and_an_images_region(personas):
    response, grader, criterion, files = step_world(personas)
    assignment = claim(grader, personas.annotator)
    cell = {"file": files["xlsx"].sha256, "sheet": "Debt schedule", "cell": "D3"}
    verdict = save_step(assignment, criterion, 1, cell, "900000")
    verdict.refresh_from_db()
    assert (verdict.step, verdict.evidence_step, verdict.evidence_anchor) == (1, 1, cell)
    # The book came back from the step's tool call: it is that step's evidence too.
    page = {"file": files["pdf"].sha256, "page": 1, "region": [0.1, 0.1, 0.5, 0.2]}
    verdict = save_step(assignment, criterion, 1, json.dumps(page), "Leverage")
    assert Verdict.objects.get(pk=verdict.pk).evidence_anchor == page
    region = {"file": files["png"].sha256, "region": [0.25, 0.5, 0.5, 0.5]}
    verdict = save_step(assignment, criterion, 4, region)
    verdict.refresh_from_db()
    assert (verdict.step, verdict.evidence_anchor) == (4, region)
    names = evidence.file_names(response.episode)
    assert evidence.anchor_label(cell, names) == "debt.xlsx › Debt schedule › D3"
    assert evidence.anchor_label(region, names) == (
        "chart.png › region 25%–75% across, 50%–100% down"
    )
    assert evidence.anchor_label(page, names) == (
        "book.pdf › page 1 › region 10%–60% across, 10%–30% down"
    )


def test_the_step_draft_door_takes_the_anchor_the_page_sends(personas):
    """The page's script posts a step's anchor as a form field, as the whole-response one."""
    _, grader, criterion, files = step_world(personas)
    assignment = claim(grader, personas.annotator)
    client = Client()
    client.force_login(personas.annotator)
    url = f"/assignments/{assignment.pk}/draft/"
    post = {"criterion": criterion.pk, "outcome": "met", "step": 4, "evidence": ""}
    region = {"file": files["png"].sha256, "region": [0, 0, 0.2, 0.2]}
    answer = client.post(
        url, {**post, "evidence_anchor": json.dumps(region)}, HTTP_ACCEPT="application/json"
    )
    assert answer.status_code == 200, answer.content
    assert Verdict.objects.get(assignment=assignment, step=4).evidence_anchor == region
    # Reopened, the step's cell carries its anchor and the anchor in words.
    html = client.get(f"/assignments/{assignment.pk}/").content.decode()
    assert json.dumps("chart.png › region 0%–20% across, 0%–20% down") in html  # json_script
    wrong = {"file": files["xlsx"].sha256, "sheet": "Debt schedule", "cell": "A1"}
    answer = client.post(
        url, {**post, "evidence_anchor": json.dumps(wrong)}, HTTP_ACCEPT="application/json"
    )
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("evidence_anchor: ")
    assert "does not carry there" in answer.json()["error"]


# Each refusal names the field and says what is wrong; nothing is written.
REFUSALS = [
    (
        "page beyond the rendered",
        {"file": "PDF", "page": 3},
        "shows 2 rendered page(s) of 3; there is no page 3",
    ),
    ("sheet that does not exist", {"file": "XLSX", "sheet": "Summary", "cell": "A1"}, "no sheet"),
    ("region outside [0, 1]", {"file": "PNG", "region": [0.5, 0.5, 0.7, 0.2]}, "fractions"),
    ("negative region", {"file": "PNG", "region": [-0.1, 0, 0.2, 0.2]}, "fractions"),
    ("empty region", {"file": "PNG", "region": [0.1, 0.1, 0, 0.2]}, "fractions"),
    ("file not in the message", {"file": "PNG", "region": [0, 0, 0.5, 0.5]}, "not carry there"),
    ("unknown file", {"file": "f" * 64, "region": [0, 0, 0.5, 0.5]}, "not carry there"),
]


def _resolved(anchor: dict, files) -> dict:
    shas = {"PDF": files["pdf"].sha256, "XLSX": files["xlsx"].sha256, "PNG": files["png"].sha256}
    return {**anchor, "file": shas.get(anchor["file"], anchor["file"])}


@pytest.fixture
def three_page_pdf_two_rendered(monkeypatch):
    """The preview renders at most two pages (convert.PDF_RENDER_PAGES, the documented
    limit, made small so the test renders little)."""
    monkeypatch.setattr(convert, "PDF_RENDER_PAGES", 2)


@pytest.mark.parametrize(("case", "anchor", "says"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_bad_step_anchor_is_refused_naming_the_field(
    personas, case, anchor, says, three_page_pdf_two_rendered
):
    # A unique three-page PDF, so no other test's render of it is read from storage.
    _, grader, criterion, files = step_world(personas, pdf=[f"Anchors: {case}", "two", "three"])
    assignment = claim(grader, personas.annotator)
    with pytest.raises(ValidationError) as caught:
        save_step(assignment, criterion, 1, _resolved(anchor, files))
    assert list(caught.value.message_dict) == ["evidence_anchor"]
    assert says in caught.value.message_dict["evidence_anchor"][0]
    assert not Verdict.objects.filter(assignment=assignment).exists()


def test_the_api_saves_a_steps_anchor_and_names_the_field_it_refuses(personas):
    _, grader, criterion, files = step_world(personas)
    assignment = claim(grader, personas.annotator)
    client = api_client(personas.annotator)
    url = f"/api/assignments/{assignment.pk}/verdicts/"
    body = {"criterion": criterion.pk, "outcome": "met", "step": 1}
    bad = client.put(
        url,
        {**body, "evidence_anchor": {"file": files["xlsx"].sha256, "sheet": "Nope", "cell": "A1"}},
        format="json",
    )
    assert bad.status_code == 400
    assert "has no sheet 'Nope'" in json.dumps(bad.json()["evidence_anchor"])
    cell = {"file": files["xlsx"].sha256, "sheet": "Notes", "cell": "B2"}
    good = client.put(url, {**body, "evidence_anchor": cell}, format="json")
    assert good.status_code == 200, good.content
    assert good.json()["evidence_anchor"] == cell
    assert good.json()["step"] == 1


# --- Gold ------------------------------------------------------------------------------------


def test_gold_carries_an_anchor_checked_as_a_verdicts(personas):
    response, grader, criterion, files = step_world(personas)
    cell = {"file": files["xlsx"].sha256, "sheet": "Debt schedule", "cell": "D3"}
    gold = annotation_services.gold_decide(
        response=response,
        criterion=criterion,
        outcome="met",
        note="",
        user=personas.reviewer,
        step=1,
        evidence_anchor=json.dumps(cell),
    )
    assert Adjudication.objects.get(pk=gold.pk).evidence_anchor == cell
    event = AuditEvent.objects.filter(target_type="adjudication", target_id=gold.pk).get()
    assert event.details["evidence_anchor"] == cell
    # At step #5, the workbook of step #2 is not that step's.
    with pytest.raises(ValidationError) as caught:
        annotation_services.gold_decide(
            response=response,
            criterion=criterion,
            outcome="met",
            note="",
            user=personas.reviewer,
            step=4,
            evidence_anchor=cell,
        )
    assert "does not carry there" in caught.value.message_dict["evidence_anchor"][0]
    for anchor, says in [
        ({**cell, "sheet": "Summary"}, "no sheet 'Summary'"),
        ({"file": files["png"].sha256, "region": [0.9, 0, 0.2, 1]}, "fractions"),
        ({"file": files["pdf"].sha256, "page": 7}, "there is no page 7"),
    ]:
        with pytest.raises(ValidationError) as caught:
            annotation_services.gold_decide(
                response=response,
                criterion=criterion,
                outcome="met",
                note="",
                user=personas.reviewer,
                step=1,
                evidence_anchor=anchor,
            )
        assert says in caught.value.message_dict["evidence_anchor"][0]
    assert Adjudication.objects.count() == 1  # nothing half-written


def test_the_gold_api_takes_and_lists_an_anchor(personas):
    response, grader, criterion, files = step_world(personas)
    client = api_client(personas.reviewer)
    url = f"/api/versions/{grader.version_id}/gold/"
    body = {"response": response.pk, "criterion": criterion.pk, "outcome": "unmet", "step": 4}
    region = {"file": files["png"].sha256, "region": [0.1, 0.2, 0.3, 0.4]}
    bad = client.post(
        url, {**body, "evidence_anchor": {**region, "region": [0, 0, 1.5, 1]}}, format="json"
    )
    assert bad.status_code == 400
    assert "evidence_anchor" in bad.json()
    made = client.post(url, {**body, "evidence_anchor": region}, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["evidence_anchor"] == region
    listed = client.get(url).json()["results"]
    assert listed[0]["evidence_anchor"] == region
    plain = client.post(url, {**body, "outcome": "met"}, format="json")
    assert plain.status_code == 201 and plain.json()["evidence_anchor"] is None


def test_the_adjudication_form_records_an_anchor_and_shows_every_one(personas):
    p = personas
    second = factories.add_member(p.project, Role.ANNOTATOR, username="second-annotator")
    response, grader, criterion, files = step_world(
        personas, overlap=2, annotators=[p.annotator, second]
    )
    cell = {"file": files["xlsx"].sha256, "sheet": "Debt schedule", "cell": "D3"}
    region = {"file": files["png"].sha256, "region": [0.25, 0.5, 0.5, 0.5]}
    first = claim(grader, p.annotator)
    save_step(first, criterion, 1, cell, "900000")
    save_step(first, criterion, 4, region)
    annotation_services.assignment_submit(assignment_id=first.pk)

    # Blind: the other annotator's page holds none of the first one's anchors.
    other = claim(grader, second)
    annotator = Client()
    annotator.force_login(second)
    html = annotator.get(f"/assignments/{other.pk}/").content.decode()
    assert "Debt schedule › D3" not in html and "region 25%" not in html
    url = f"/versions/{grader.version_id}/adjudicate/{response.pk}/{criterion.pk}/"
    assert annotator.get(url).status_code == 403

    reviewer = Client()
    reviewer.force_login(p.reviewer)
    html = reviewer.get(url).content.decode()
    assert "Evidence at debt.xlsx › Debt schedule › D3" in html
    assert "Evidence at chart.png › region 25%–75% across, 50%–100% down" in html
    assert html.count('data-anchor="') >= 2
    # At step #2 the side-by-side card names it too.
    html = reviewer.get(url + "?step=1").content.decode()
    assert 'data-testid="verdicts"' in html and "Evidence at debt.xlsx › Debt schedule › D3" in html

    refused = reviewer.post(
        url + "?step=1",
        {"outcome": "met", "evidence_anchor": json.dumps({**cell, "sheet": "Summary"})},
    )
    assert refused.status_code == 200
    assert "evidence_anchor: &#x27;debt.xlsx&#x27; has no sheet &#x27;Summary&#x27;" in (
        refused.content.decode()
    )
    assert not Adjudication.objects.exists()
    answer = reviewer.post(
        url + "?step=1", {"outcome": "met", "next": "0", "evidence_anchor": json.dumps(cell)}
    )
    assert answer.status_code == 302
    assert Adjudication.objects.get().evidence_anchor == cell
    html = reviewer.get(url + "?step=1").content.decode()
    assert 'data-testid="gold-evidence-at"><span data-anchor=' in html
    assert "debt.xlsx › Debt schedule › D3" in html


def test_anchor_label_names_an_unknown_file_by_its_hash():
    assert evidence.anchor_label({"file": "ab" * 32, "page": 2}, {}) == (
        f"file {'ab' * 6} › page 2"
    )
    assert evidence.anchor_label(None, {}) == ""


# --- In Chromium -----------------------------------------------------------------------------


def load_previews(page, documents: int) -> None:
    """Scroll to each preview so htmx loads it, and wait until every document shows."""
    from playwright.sync_api import expect

    figures = page.get_by_test_id("file-preview")
    for i in range(figures.count()):
        figures.nth(i).scroll_into_view_if_needed()
    expect(page.get_by_test_id("file-shown")).to_have_count(documents, timeout=60_000)


def drag_box(page, image, start=(0.25, 0.25), end=(0.75, 0.75)) -> None:
    """Press, move and release the mouse over `image`, from `start` to `end` (fractions)."""
    image.scroll_into_view_if_needed()
    box = image.bounding_box()
    at = lambda f: (box["x"] + f[0] * box["width"], box["y"] + f[1] * box["height"])  # noqa: E731
    page.mouse.move(*at(start))
    page.mouse.down()
    page.mouse.move(*at(end), steps=8)
    page.mouse.up()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_annotator_anchors_step_evidence_and_a_reviewer_sees_it(page, live_server, personas):
    from playwright.sync_api import expect

    from annotation.models import Assignment
    from tests.conftest import wait_for
    from tests.test_browser_run_charts import login

    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    response, grader, criterion, files = step_world(personas)
    assignment = claim(grader, personas.annotator)
    base = live_server.url
    login(page, base, personas.annotator.username)
    page.goto(f"{base}/assignments/{assignment.pk}/")
    crit = page.locator("#criteria li.step-crit")
    detail = crit.locator(".step-detail")
    expect(detail.locator(".step-label")).to_have_text("#2")
    load_previews(page, 2)
    # A cell of the workbook step #2 sends.
    page.locator('[data-kind="xlsx"][data-testid="file-preview"]').scroll_into_view_if_needed()
    page.locator('td[data-cell="D3"]').first.click()
    expect(detail.get_by_test_id("evidence-anchor")).to_have_text(
        "Evidence at debt.xlsx › Debt schedule › D3"
    )
    expect(detail.locator("blockquote.evidence")).to_have_text("900000")
    expect(page.locator('td[data-cell="D3"].anchored')).to_have_count(1)
    page.keyboard.press("1")  # met at #2; on to step #5
    expect(detail.locator(".step-label")).to_have_text("#5")
    expect(page.locator("td.anchored")).to_have_count(0)  # step #5 points at nothing yet
    # A chart in step #2's tool result is not step #5's: refused, nothing picked.
    page.locator('[data-kind="pdf"][data-testid="file-preview"]').scroll_into_view_if_needed()
    page.locator('img.pdf-page[data-page="1"]').click()
    expect(detail.locator(".saved")).to_contain_text("not in step #5")
    expect(detail.get_by_test_id("evidence-anchor")).to_be_hidden()
    # A box dragged on the chart step #5 sends.
    drag_box(page, page.get_by_test_id("file-image"))
    expect(detail.get_by_test_id("evidence-anchor")).to_have_text(
        "Evidence at chart.png › region 25%–75% across, 25%–75% down"
    )
    expect(page.get_by_test_id("region-picked")).to_have_count(1)
    page.keyboard.press("1")

    def saved():
        found = dict(
            Verdict.objects.filter(assignment=assignment).values_list("step", "evidence_anchor")
        )
        return found if len(found) == 2 else None

    found = wait_for(saved, what="both steps saved")
    assert found[1] == {"file": files["xlsx"].sha256, "sheet": "Debt schedule", "cell": "D3"}
    assert found[4]["file"] == files["png"].sha256 and "page" not in found[4]
    x, y, w, h = found[4]["region"]
    assert abs(x - 0.25) < 0.03 and abs(y - 0.25) < 0.03
    assert abs(w - 0.5) < 0.03 and abs(h - 0.5) < 0.03
    page.keyboard.press("Enter")  # submit
    wait_for(
        lambda: Assignment.objects.filter(pk=assignment.pk, status="submitted").exists() or None,
        what="the item submitted",
    )
    page.click("text=Log out")

    # The reviewer sees both anchors beside their steps, outlined in the previews.
    login(page, base, personas.reviewer.username)
    url = f"{base}/versions/{grader.version_id}/adjudicate/{response.pk}/{criterion.pk}/"
    page.goto(url)
    load_previews(page, 2)
    anchors = page.locator(".step-verdicts").get_by_test_id("evidence-anchor")
    expect(anchors).to_have_text(
        [
            "Evidence at debt.xlsx › Debt schedule › D3",
            "Evidence at chart.png › region 25%–75% across, 25%–75% down",
        ]
    )
    page.locator('[data-kind="xlsx"][data-testid="file-preview"]').scroll_into_view_if_needed()
    expect(page.locator('td[data-cell="D3"].anchor-shown')).to_have_count(1)
    expect(page.locator(".anchor-shown")).to_have_count(1)
    shown = page.get_by_test_id("region-shown")
    expect(shown).to_have_count(1)
    image, region = page.get_by_test_id("file-image").bounding_box(), shown.bounding_box()
    assert abs(region["x"] - (image["x"] + 0.25 * image["width"])) < 3
    assert abs(region["width"] - 0.5 * image["width"]) < 3

    # At step #5, the reviewer's gold points at a box of its own on the chart.
    page.goto(url + "?among=all&step=4")
    expect(page.get_by_test_id("verdicts")).to_contain_text(
        "Evidence at chart.png › region 25%–75% across, 25%–75% down"
    )
    expect(page.get_by_test_id("gold-anchor").locator(".anchor-clear")).to_be_hidden()
    load_previews(page, 2)  # no preview arriving later moves the chart under the mouse
    drag_box(page, page.get_by_test_id("file-image").last, (0.5, 0.1), (0.9, 0.5))
    expect(page.get_by_test_id("gold-anchor")).to_contain_text(
        "Evidence at chart.png › region 50%–90% across, 10%–50% down"
    )
    page.keyboard.press("1")
    page.locator("button[name=next][value='0']").click()
    expect(page.locator("text=Gold verdict recorded.")).to_be_visible()
    gold = Adjudication.objects.get()
    assert (gold.step, gold.outcome, gold.evidence_anchor["file"]) == (
        4,
        "met",
        files["png"].sha256,
    )
    assert abs(gold.evidence_anchor["region"][0] - 0.5) < 0.03
    expect(page.get_by_test_id("gold-evidence-at")).to_contain_text("chart.png › region 50%")
    assert not console, console
