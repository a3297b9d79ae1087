"""Judging responses and tasks that carry images and files: a document's converted text in
the response fence (budgets and cuts stated), images sent to judges that see them and named to
judges that do not, the simulator's rules for both, cache keys that follow file contents, the
run estimate's images and its warning when a judge cannot see what a run needs.

Every file is made here with the library that writes it (openpyxl, python-docx, fpdf2,
Pillow), stored by `rubrics.files.store` through a response's content
(`Episode.parse(..., files=ProjectIntake(project))`)."""

from __future__ import annotations

import base64
import io

import pytest

from annotation.content import render
from annotation.content.episode import Episode
from annotation.content.intake import ProjectIntake
from grading import engine, services
from grading.judges import prompts
from rubrics.files import store
from tests import factories
from tests.test_api import api_client

# --- Files, made with the real libraries -------------------------------------------------


def xlsx(balance: int = 1250000) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Debt"
    sheet.append(["Year", "Balance", "Note"])
    sheet.append([2025, balance, "Covenant headroom 1.8x"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def docx(*paragraphs: str) -> bytes:
    import docx as python_docx

    document = python_docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pdf(*pages: str) -> bytes:
    from fpdf import FPDF

    doc = FPDF()
    doc.set_font("Helvetica", size=14)
    for text in pages:
        doc.add_page()
        doc.cell(text=text)
    return bytes(doc.output())


def png(colour: tuple[int, int, int]) -> bytes:
    """A chart-like picture: a white canvas with one bar of `colour`."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (200, 120), (255, 255, 255))
    ImageDraw.Draw(image).rectangle((40, 20, 160, 110), fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


RED, BLUE = (220, 20, 20), (20, 40, 220)


def uri(data: bytes, mime: str = "application/octet-stream") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def file_part(data: bytes, name: str) -> dict:
    return {"type": "file", "file": {"file_data": uri(data), "filename": name}}


def image_part(data: bytes, name: str) -> dict:
    return {
        "type": "image_url",
        "image_url": {"url": uri(data, "image/png")},
        "file": {"filename": name},
    }


def deliverable(
    project, *parts: dict, text: str = "The schedule and memo are attached."
) -> Episode:
    """A response whose one assistant message is `text` and `parts`, its files stored."""
    return Episode.parse(
        [
            {"role": "user", "content": "Build the debt schedule."},
            {"role": "assistant", "content": [{"type": "text", "text": text}, *parts]},
        ],
        files=ProjectIntake(project),
    )


# Worked by the simulator's rules (grading/judges/simulator.py): key words of 5+ letters,
# met when half are found in the fenced text, which now holds the files' converted text;
# a visual criterion needs an image part and, for a colour it names, an image of that colour.
CRITERIA = [
    ("States the covenant headroom", 3),  # covenant, headroom: only in the xlsx -> met
    ("Proposes refinancing", 2),  # proposes, refinancing: only in the docx -> met
    ("Discusses dividends", 1),  # nowhere -> unmet
    ("The chart is red", 2),  # visual: met only when a red image reaches the judge
]


def make_grader(project, user, criteria=CRITERIA, task=None):
    task = task or factories.make_task(project, prompt="Build the debt schedule.")
    return factories.make_published_rubric(project, task, criteria, user)


def grade(grader, judge, response, messages=None, cache=None, mode="per_criterion"):
    return engine.grade_items(
        grader.spec,
        grader_hash=grader.hash,
        judges=[services.judge_ref(judge)],
        messages=grader.version.rubric.task.messages if messages is None else messages,
        response=response,
        items=[(c["id"], judge.pk, 0) for c in grader.spec["criteria"]],
        mode=mode,
        cache_lookup=None if cache is None else (lambda keys: cache),
    )


def outcomes(grader, graded) -> list[str]:
    by_id = {g.criterion_id: g.outcome for g in graded if g.step is None}
    return [by_id[c["id"]] for c in grader.spec["criteria"]]


def user_text(messages: list[dict]) -> str:
    content = messages[1]["content"]
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if p["type"] == "text")


def image_parts(messages: list[dict]) -> list[dict]:
    content = messages[1]["content"]
    return [p for p in content if p["type"] == "image_url"] if isinstance(content, list) else []


def vision_judge(project, url, name="vision"):
    return services.judge_create(
        project=project, name=name, base_url=url, model="vision-model", accepts_images=True
    )


# --- Rendering: converted text, budgets, cuts --------------------------------------------


@pytest.mark.django_db
def test_a_files_converted_text_is_in_the_fence_under_a_header_naming_it(personas):
    episode = deliverable(
        personas.project,
        file_part(xlsx(), "debt.xlsx"),
        file_part(docx("We propose refinancing the term loan."), "memo.docx"),
    )
    rendered = render.for_judge_outcome(episode)
    xlsx_ref, docx_ref = [ref for _i, ref in episode.files()]
    text = rendered.text
    assert text.startswith("The schedule and memo are attached.\n\n")
    assert f"[file: debt.xlsx (xlsx, sha256 {xlsx_ref.sha256[:16]})]" in text
    assert "--- text of debt.xlsx, as Assay converted it ---" in text
    # Cells named by address, every line of a file prefixed so none reads as a message.
    assert "| ## Sheet 'Debt'" in text
    assert "| A2=2025; B2=1250000; C2=Covenant headroom 1.8x" in text
    assert "--- end of debt.xlsx ---" in text
    assert "| We propose refinancing the term loan." in text
    assert text.index("debt.xlsx") < text.index("memo.docx")
    assert rendered.note == ""  # nothing cut, nothing unseen
    assert rendered.attachments == ()  # a judge of text only is sent nothing beside


@pytest.mark.django_db
def test_the_per_file_and_per_prompt_budgets_cut_and_say_so(personas):
    long = "refinancing " * 1_200  # 14,400 characters
    parts = [file_part(docx(f"Memo {i}: " + long), f"memo{i}.docx") for i in range(4)]
    episode = deliverable(personas.project, *parts)
    rendered = render.for_judge_outcome(episode)
    # The latest three get FILE_CHARS each (36,000 = FILES_CHARS), the first none.
    for i in (1, 2, 3):
        assert f"--- text of memo{i}.docx" in rendered.text
    assert "memo0.docx" in rendered.text and "--- text of memo0.docx" not in rendered.text
    assert "(its text is not shown: the prompt's file text went to later files)" in rendered.text
    assert rendered.text.count("characters cut: a file's text is shown up to 12,000") == 3
    assert rendered.files.text_chars == render.FILES_CHARS
    note = rendered.note
    assert "the text of 3 files was cut where marked" in note
    assert "the text of 1 earlier file is not shown" in note


@pytest.mark.django_db
def test_an_unreadable_or_lost_file_is_named_and_never_breaks_grading(personas, sim):
    # A workbook no other test makes: never converted before its bytes are lost.
    episode = deliverable(personas.project, file_part(xlsx(4_242_424), "debt.xlsx"))
    ((_i, ref),) = episode.files()
    from django.core.files.storage import default_storage

    default_storage.delete(store.path_of(ref.sha256))  # lost before it was ever converted
    store._converted.cache_clear()
    rendered = render.for_judge_outcome(episode)
    assert "(its text could not be read: missing from storage)" in rendered.text
    assert "1 file could not be read" in rendered.note
    grader = make_grader(personas.project, personas.admin)
    judge = factories.make_judge(personas.project, sim.url)
    out = grade(grader, judge, episode)
    assert "error" not in outcomes(grader, out.graded)


# --- The simulator's verdicts, predicted -------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["per_criterion", "batched"])
def test_a_judge_of_text_reads_files_and_is_told_of_images_it_cannot_see(personas, sim, mode):
    episode = deliverable(
        personas.project,
        file_part(xlsx(), "debt.xlsx"),
        file_part(docx("We propose refinancing the term loan."), "memo.docx"),
        image_part(png(RED), "chart.png"),
    )
    grader = make_grader(personas.project, personas.admin)
    judge = factories.make_judge(personas.project, sim.url)
    out = grade(grader, judge, episode, mode=mode)
    # The files' text decides the first two; the chart is not seen, so not met.
    assert outcomes(grader, out.graded) == ["met", "met", "unmet", "unmet"]
    chart = [g for g in out.graded if g.criterion_id == grader.spec["criteria"][3]["id"]][0]
    assert "no image reached the judge" in chart.explanation
    # The text alone (no files) meets neither: the files are what the judge read.
    sim.reset()
    text_only = grade(grader, judge, "The schedule and memo are attached.", mode=mode)
    assert outcomes(grader, text_only.graded) == ["unmet", "unmet", "unmet", "unmet"]
    # What the judge was told: the image's name and size, and that it cannot see it.
    sim.reset()
    grade(grader, judge, episode, mode=mode)
    for messages in sim.received:
        assert isinstance(messages[1]["content"], str)  # no parts: it cannot take them
        text = messages[1]["content"]
        assert "[image: chart.png (jpeg, sha256 " in text
        assert "not shown: you cannot see images" in text
        assert "# Images and files" in text
        assert "1 image was there that you cannot see (chart.png, " in text


@pytest.mark.django_db
def test_a_vision_judge_is_sent_images_and_pdf_pages_and_reads_their_colour(personas, sim):
    red = deliverable(
        personas.project,
        image_part(png(RED), "chart.png"),
        file_part(pdf("Page one: refinancing.", "Page two."), "deck.pdf"),
    )
    grader = make_grader(personas.project, personas.admin)
    judge = vision_judge(personas.project, sim.url)
    out = grade(grader, judge, red)
    assert outcomes(grader, out.graded) == ["unmet", "met", "unmet", "met"]
    # Each request: its text, then for each attachment a label and the image as a data: URI.
    for messages in sim.received:
        parts = messages[1]["content"]
        assert isinstance(parts, list) and parts[0]["type"] == "text"
        images = image_parts(messages)
        assert len(images) == 3  # the chart, and the PDF's two pages
        assert all(p["image_url"]["url"].startswith("data:image/") for p in images)
        labels = [p["text"] for p in parts[1:] if p["type"] == "text"]
        assert labels[0].startswith("Attached from the response: [image: chart.png (jpeg, ")
        assert labels[1].startswith("Attached from the response: page 1 of deck.pdf")
        assert "(attached after the prompt)" in parts[0]["text"]
        assert "(its first 2 pages are attached after the prompt as images)" in parts[0]["text"]
        assert "| [page 1]" in parts[0]["text"]  # and the PDF's text in the fence
    # A blue chart: the colour is read from the image, so "red" is not met.
    blue = deliverable(personas.project, image_part(png(BLUE), "chart.png"))
    sim.reset()
    out = grade(grader, judge, blue)
    assert outcomes(grader, out.graded)[3] == "unmet"
    # The call's page keeps the request with each data: URI shortened to its length.
    kept = out.calls[0].request
    assert "data:image/jpeg;base64,[" in kept and "characters]" in kept
    assert base64.b64encode(png(BLUE))[:200].decode() not in kept


@pytest.mark.django_db
def test_images_in_the_tasks_own_messages(personas, sim):
    chart = store.put(personas.project, png(RED), name="task-chart.png")
    task = factories.make_task(personas.project, prompt="Read the chart.")
    # The stored shape of an image part (annotation.content.episode.Part.as_json).
    task.messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What colour is the chart?"},
                {
                    "type": "image_url",
                    "image_url": {"url": f"sha256:{chart.sha256}"},
                    "file": chart.as_json(),
                },
            ],
        }
    ]
    task.save()
    grader = make_grader(personas.project, personas.admin, [("The chart is red", 1)], task=task)
    blind = factories.make_judge(personas.project, sim.url)
    out = grade(grader, blind, "It is red.")
    assert outcomes(grader, out.graded) == ["unmet"]
    (messages,) = sim.received
    text = messages[1]["content"]
    assert "[user]\nWhat colour is the chart?\n[image: task-chart.png (jpeg, sha256 " in text
    assert "The task: 1 image was there that you cannot see (task-chart.png" in text
    sim.reset()
    seeing = vision_judge(personas.project, sim.url)
    out = grade(grader, seeing, "It is red.")
    assert outcomes(grader, out.graded) == ["met"]
    (messages,) = sim.received
    assert len(image_parts(messages)) == 1
    labels = [p["text"] for p in messages[1]["content"][1:] if p["type"] == "text"]
    assert labels == [
        f"Attached from the task: [image: task-chart.png (jpeg, sha256 {chart.sha256[:16]})]"
    ]


# --- Cache keys follow file contents ------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("seeing", [False, True])
def test_same_file_one_call_changed_bytes_a_new_call(personas, sim, seeing):
    grader = make_grader(
        personas.project,
        personas.admin,
        [("States the covenant headroom", 1), ("The chart is red", 1)],
    )
    judge = (vision_judge if seeing else factories.make_judge)(personas.project, sim.url)

    books = {balance: xlsx(balance) for balance in (1250000, 1300000)}  # each made once

    def response(balance, colour):
        return deliverable(
            personas.project,
            file_part(books[balance], "debt.xlsx"),
            image_part(png(colour), "chart.png"),
        )

    first = grade(grader, judge, response(1250000, RED))
    assert sim.stats.requests == 2
    cache = dict(first.to_cache)
    # The same files again (in another response): answered from the cache, no call.
    sim.reset()
    again = grade(grader, judge, response(1250000, RED), cache=cache)
    assert sim.stats.requests == 0 and all(g.cached for g in again.graded)
    # A changed cell: the workbook's hash changes, so both keys do (one view, one prompt).
    sim.reset()
    grade(grader, judge, response(1300000, RED), cache=cache)
    assert sim.stats.requests == 2
    # A changed image alone: on the vision path it is sent beside the text, and its label
    # (its hash) is in the key; a judge of text reads its hash in the file line.
    sim.reset()
    out = grade(grader, judge, response(1250000, BLUE), cache=cache)
    assert sim.stats.requests == 2
    assert outcomes(grader, out.graded) == ["met", "unmet"]


@pytest.mark.django_db(transaction=True)
def test_a_run_grades_the_same_file_once_and_a_changed_file_again(personas, sim, celery_worker):
    from annotation.models import Response, Verdict
    from grading.models import GradingRun, JudgeCall
    from tests.conftest import wait_for

    project, admin = personas.project, personas.admin
    grader = make_grader(project, admin)
    task = grader.version.rubric.task
    judge = vision_judge(project, sim.url)

    # Office files carry the time they were written (zip entries, document properties): each
    # is made once, so "the same file" is the same bytes whenever the clock ticks.
    memo = docx("We propose refinancing the term loan.")
    books = {balance: xlsx(balance) for balance in (1250000, 1300000)}

    def add(model, balance):
        episode = deliverable(
            project,
            file_part(books[balance], "debt.xlsx"),
            file_part(memo, "memo.docx"),
            image_part(png(RED), "chart.png"),
        )
        return Response.objects.create(
            task=task, model=model, text=episode.final_text, content=episode.stored()
        )

    def run_over(response):
        run = services.run_create(
            project=project,
            grader=grader,
            judge=judge,
            user=admin,
            responses=Response.objects.filter(pk=response.pk),
        )
        wait_for(
            lambda: GradingRun.objects.get(pk=run.pk).status == "completed",
            timeout=120,
            what="the run to complete",
        )
        return run

    first = run_over(add("a", 1250000))
    assert JudgeCall.objects.filter(run=first).count() == sim.stats.requests == 4
    verdicts = {v.criterion_id: v.outcome for v in Verdict.objects.filter(run=first, step=None)}
    assert [verdicts[c["id"]] for c in grader.spec["criteria"]] == ["met", "met", "unmet", "met"]
    # Another response with the same files: every verdict from the cache, no call.
    sim.reset()
    second = run_over(add("b", 1250000))
    assert sim.stats.requests == 0 and JudgeCall.objects.filter(run=second).count() == 0
    # A workbook with another balance: graded again.
    sim.reset()
    run_over(add("c", 1300000))
    assert sim.stats.requests == 4


# --- The estimate, and its warning -------------------------------------------------------


@pytest.mark.django_db
def test_the_estimate_counts_file_text_and_images(personas):
    from annotation.models import Response

    project, admin = personas.project, personas.admin
    grader = make_grader(project, admin, [("States the covenant headroom", 1)])
    task = grader.version.rubric.task
    plain = Response.objects.create(task=task, model="m", text="The schedule is attached.")
    episode = deliverable(
        project, file_part(docx("x " * 3000), "memo.docx"), image_part(png(RED), "chart.png")
    )
    filed = Response.objects.create(
        task=task, model="n", text=episode.final_text, content=episode.stored()
    )
    blind = factories.make_judge(project, "http://127.0.0.1:9/v1")
    seeing = vision_judge(project, "http://127.0.0.1:9/v1")

    def estimate(judge, model):
        return services.run_create_estimate(
            project=project, judge=judge, grader=grader, models=[model]
        )

    base = estimate(blind, plain.model)
    with_files = estimate(blind, filed.model)
    # The memo's 6,000 characters are about 1,500 tokens more.
    assert with_files["input_tokens"] - base["input_tokens"] >= 1_500
    assert with_files["images"] == 0 == base["images"]
    vision = estimate(seeing, filed.model)
    assert vision["images"] == 1
    assert vision["input_tokens"] - with_files["input_tokens"] >= prompts.IMAGE_TOKENS - 100
    # What the estimate counted is what planned_prompts renders.
    [(one, prompt)] = engine.planned_prompts(
        grader.spec,
        messages=task.messages,
        response=filed.episode,
        mode="per_criterion",
        sight=render.Sight(images=True),
    )
    assert prompts.prompt_size(prompt)[1] == 1


@pytest.mark.django_db
def test_a_run_warns_when_its_judge_cannot_see_the_images_it_needs(personas, client):
    from annotation.models import Response

    project, admin = personas.project, personas.admin
    grader = make_grader(project, admin, [("States the covenant headroom", 1)])
    task = grader.version.rubric.task
    episode = deliverable(project, image_part(png(RED), "chart.png"))
    Response.objects.create(task=task, model="m", text=episode.final_text, content=episode.stored())
    blind = factories.make_judge(project, "http://127.0.0.1:9/v1")
    seeing = vision_judge(project, "http://127.0.0.1:9/v1")

    estimate = services.run_create_estimate(project=project, judge=blind, grader=grader)
    [warning] = estimate["warnings"]
    assert warning["code"] == "judge_cannot_see_images" and warning["judge"] == blind.name
    assert "but 1 response carries images:" in warning["message"]
    assert (
        services.run_create_estimate(project=project, judge=seeing, grader=grader)["warnings"] == []
    )
    # A panel: only the judge that cannot see is named.
    panel = services.run_create_estimate(
        project=project, judge=seeing, panel=[blind], grader=grader
    )
    assert [w["judge"] for w in panel["warnings"]] == [blind.name]

    # Criteria about a chart, with text responses only, warn as well.
    text_task = factories.make_task(project, prompt="Describe the trend.")
    charted = make_grader(
        project, admin, [("Describes the chart's trend", 1), ("Is short", 1)], task=text_task
    )
    Response.objects.create(task=text_task, model="m", text="Up.")
    [warning] = services.run_create_estimate(project=project, judge=blind, grader=charted)[
        "warnings"
    ]
    assert "criteria #1 ask about an image, chart" in warning["message"]
    plain = make_grader(
        project, admin, [("Is short", 1)], task=factories.make_task(project, prompt="Hi")
    )
    Response.objects.create(task=plain.version.rubric.task, model="m", text="Hi.")
    assert (
        services.run_create_estimate(project=project, judge=blind, grader=plain)["warnings"] == []
    )

    # The run form's estimate shows it; the API's run carries it in its estimate.
    client.force_login(admin)
    page = client.post(
        f"/p/{project.slug}/runs/",
        {
            "grader": grader.hash,
            "judge": blind.pk,
            "mode": "per_criterion",
            "samples": 1,
            "estimate": "1",
        },
    )
    assert page.status_code == 200
    assert b'data-testid="estimate-warning"' in page.content
    assert f"Judge &#x27;{blind.name}&#x27; cannot see images".encode() in page.content
    made = api_client(admin).post(
        f"/api/projects/{project.slug}/runs/",
        {"grader": grader.hash, "judge": blind.pk, "use_cache": False},
        format="json",
    )
    assert made.status_code == 201, made.content
    assert made.json()["estimate"]["warnings"][0]["code"] == "judge_cannot_see_images"


# --- The judge's settings ----------------------------------------------------------------


@pytest.mark.django_db
def test_a_judge_says_what_it_reads_in_the_api_and_on_its_page(personas, client):
    project = personas.project
    client.force_login(personas.admin)
    api = api_client(personas.admin)
    made = api.post(
        f"/api/projects/{project.slug}/judges/",
        {
            "name": "gpt-vision",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "accepts_images": True,
        },
        format="json",
    )
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["accepts_images"] is True and body["accepts_files"] is False
    changed = api.patch(
        f"/api/judges/{body['id']}/",
        {"accepts_files": True, "accepts_images": False},
        format="json",
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["accepts_files"] is True and changed.json()["accepts_images"] is False
    judge = services.judge_settings(project.judges.get(name="gpt-vision"))
    assert judge.accepts_files and not judge.accepts_images
    page = client.get(f"/p/{project.slug}/judges/")
    assert (
        b'text \xc2\xb7 <span class="muted"' in page.content and b" \xc2\xb7 files" in page.content
    )
    # The form takes them too.
    client.post(
        f"/p/{project.slug}/judges/",
        {
            "name": "form-judge",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "max_concurrency": 8,
            "requests_per_minute": 0,
            "tokens_per_minute": 0,
            "temperature": 0,
            "accepts_images": "on",
        },
    )
    assert project.judges.get(name="form-judge").accepts_images
