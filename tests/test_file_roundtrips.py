"""Images and files that go out and come back: the JSON API's task create and update take
image and file parts (data: URIs, sha256: refs of held files) through the one reader
(rubrics.files.parts), task exports write the stored parts shape and the task import reads it
back (or names the hash a project does not hold), a responses bundle goes through the real
bundle import into another project, and try-it renders the judge prompt for the chosen judge's
sight (a vision judge sees the task's chart, a blind one does not)."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest

from rubrics.files import store
from rubrics.models import StoredFile, Task
from tests import factories
from tests.file_fixtures import make_pdf
from tests.test_api import api_client

pytestmark = pytest.mark.django_db


def png(color=(220, 20, 20), size=(48, 32)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_part(url: str, name: str = "revenue-chart.png") -> dict:
    return {"type": "image_url", "image_url": {"url": url}, "file": {"filename": name}}


def pdf_part(data: str, name: str = "deal-book.pdf") -> dict:
    return {"type": "file", "file": {"file_data": data, "filename": name}}


def prompt(*parts, text: str = "Read the chart and the deal book.") -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}, *parts]}]


PDF = make_pdf(["Harbor Logistics deal book.", "Leverage 4.2x."])


# --- The JSON API's task create and update ---------------------------------------------------


def test_the_api_creates_and_updates_a_task_with_a_png_and_a_pdf(personas):
    project = personas.project
    client = api_client(personas.author)
    url = f"/api/projects/{project.slug}/tasks/"
    sent = prompt(image_part(uri(png(), "image/png")), pdf_part(uri(PDF, "application/pdf")))
    reply = client.post(url, {"external_id": "deal", "messages": sent}, format="json")
    assert reply.status_code == 201, reply.data
    text, image, pdf = reply.data["messages"][0]["content"]
    assert text == {"type": "text", "text": "Read the chart and the deal book."}
    # Stored by hash: the image re-encoded (metadata dropped), the PDF byte for byte.
    assert pdf["file"]["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert (pdf["file"]["kind"], pdf["file"]["filename"]) == ("pdf", "deal-book.pdf")
    assert image["image_url"]["url"] == f"sha256:{image['file']['sha256']}"
    assert image["file"]["kind"] in ("png", "jpeg", "webp")
    assert image["file"]["filename"].startswith("revenue-chart")
    assert store.read(pdf["file"]["sha256"]) == PDF
    held = set(StoredFile.objects.filter(project=project).values_list("sha256", flat=True))
    assert held == {image["file"]["sha256"], pdf["file"]["sha256"]}
    task = Task.objects.get(project=project, external_id="deal")
    assert [r.sha256 for r in task.files] == [image["file"]["sha256"], pdf["file"]["sha256"]]
    assert client.get(f"{url}deal/").data["messages"] == reply.data["messages"]

    # Update: the stored parts read back as themselves (sha256: refs of held files), and a new
    # text beside them changes only the text.
    stored = reply.data["messages"][0]["content"][1:]
    again = prompt(*stored, text="Read the chart, then the deal book.")
    reply = client.patch(f"{url}deal/", {"messages": again}, format="json")
    assert reply.status_code == 200, reply.data
    assert reply.data["messages"][0]["content"][1:] == stored
    task.refresh_from_db()
    assert task.prompt_text == "Read the chart, then the deal book."
    # A file part may name the held file by file.sha256 alone.
    by_hash = {"type": "file", "file": {"sha256": pdf["file"]["sha256"]}}
    reply = client.patch(f"{url}deal/", {"messages": prompt(by_hash)}, format="json")
    assert reply.status_code == 200, reply.data
    # (A file is held by hash, not name: a part without a filename is named by its hash.)
    assert reply.data["messages"][0]["content"][1]["file"]["kind"] == "pdf"
    assert StoredFile.objects.filter(project=project).count() == 2


ABSENT = "ab" * 32


@pytest.mark.parametrize(
    ("part", "field", "said"),
    [
        (image_part("https://example.com/chart.png"), "image_url.url", "does not fetch"),
        (image_part(f"sha256:{ABSENT}"), "image_url.url", f"no file with hash {ABSENT}"),
        ({"type": "file", "file": {"sha256": ABSENT}}, "file", f"no file with hash {ABSENT}"),
        (image_part(uri(PDF, "application/pdf")), "image_url.url", "not an image"),
        (pdf_part("data:application/pdf;base64,@@"), "file", "not valid base64"),
        (image_part(uri(b"<svg><script>1</script></svg>", "image/svg+xml")), "image_url.url",
         "SVG"),
        ({"type": "video", "video": {}}, "type", "unknown part type"),
    ],
    ids=["url", "image-hash-not-held", "file-hash-not-held", "pdf-as-image", "bad-base64",
         "svg", "unknown-type"],
)  # fmt: skip
@pytest.mark.parametrize("verb", ["post", "patch"])
def test_a_bad_part_is_a_400_naming_its_field_and_nothing_is_written(
    personas, part, field, said, verb
):
    project = personas.project
    client = api_client(personas.author)
    url = f"/api/projects/{project.slug}/tasks/"
    if verb == "patch":
        factories.make_task(project, "deal", prompt="Read it.")
        call = client.patch
        url, body = f"{url}deal/", {}
    else:
        call, body = client.post, {"external_id": "deal"}
    # The first part is good: it is stored as it is read, and must not outlive the refusal.
    sent = prompt(image_part(uri(png((20, 200, 20)), "image/png")), part)
    reply = call(url, {**body, "messages": sent}, format="json")
    assert reply.status_code == 400, reply.data
    assert list(reply.data) == [f"messages[0].content[2].{field}"]
    assert said in str(reply.data[f"messages[0].content[2].{field}"][0])
    assert not StoredFile.objects.exists()
    if verb == "patch":
        assert Task.objects.get(external_id="deal").messages == [
            {"role": "user", "content": "Read it."}
        ]
    else:
        assert not Task.objects.exists()


def test_a_task_of_an_annotator_or_an_outsider_stores_no_file(personas):
    sent = prompt(image_part(uri(png(), "image/png")))
    url = f"/api/projects/{personas.project.slug}/tasks/"
    for user, code in ((personas.annotator, 403), (personas.outsider, 404)):
        reply = api_client(user).post(url, {"external_id": "x", "messages": sent}, format="json")
        assert reply.status_code == code
    assert not StoredFile.objects.exists()


# --- Task exports write the stored parts; the task import reads them back --------------------


@pytest.fixture
def chart_task(personas):
    """A task of the project whose prompt carries a chart and a PDF, with a published grader."""
    from rubrics import services

    task = services.task_create(
        project=personas.project,
        external_id="chart",
        title="Chart",
        messages=prompt(image_part(uri(png(), "image/png")), pdf_part(uri(PDF, "application/pdf"))),
    )
    factories.make_published_rubric(
        personas.project, task, [("Reads the chart", 1)], personas.author
    )
    return task


def exported(fmt: str, project) -> bytes:
    from grading.datasets import formats

    out = io.BytesIO()
    rows, digest = formats.write(fmt, out, project=project)
    assert rows == 1
    assert digest == hashlib.sha256(out.getvalue()).hexdigest()
    return out.getvalue()


def test_task_exports_write_the_stored_parts_by_hash(chart_task, personas, tmp_path):
    import pyarrow.parquet as pq

    image, pdf = chart_task.files
    stored = chart_task.messages
    # JSON exports: the stored shape, byte for byte what the task holds. (A HealthBench file
    # has no bundle: it carries the files inline, tests/test_healthbench_files.py.)
    for fmt in ("tasks-jsonl", "openai-rft"):
        (line,) = exported(fmt, personas.project).splitlines()
        assert json.loads(line)["messages"] == stored, fmt
    # verl: a prompt message is text (its text, then a line naming each file, never a Python
    # repr of the parts), and extra_info.files names each file whole.
    path = tmp_path / "verl.parquet"
    path.write_bytes(exported("verl-parquet", personas.project))
    (row,) = pq.read_table(path).to_pylist()
    (message,) = row["prompt"]
    content = message["content"]
    assert content.startswith("Read the chart and the deal book.\n[image: revenue-chart")
    assert f"sha256 {image.sha256[:16]}" in content and f"sha256 {pdf.sha256[:16]}" in content
    assert "{'type'" not in content and "data:" not in content
    assert row["extra_info"]["files"] == [
        {"message": 0, **image.as_json()},
        {"message": 0, **pdf.as_json()},
    ]


def test_exported_tasks_import_into_a_project_that_holds_their_files(chart_task, personas):
    from rubrics.task_import import tasks_import

    data = exported("tasks-jsonl", personas.project)
    image, pdf = chart_task.files
    other = factories.make_project(name="Holds the files")
    # The other project holds the same files (the same bytes, stored as any upload is).
    assert store.put(other, png(), name="chart.png", image=True).sha256 == image.sha256
    assert store.put(other, PDF, name="book.pdf").sha256 == pdf.sha256
    result = tasks_import(project=other, lines=data.decode().splitlines())
    assert result.ok, result.errors
    assert result.created == 1
    back = Task.objects.get(project=other, external_id="chart")
    assert back.messages == chart_task.messages  # names, kinds, sizes and hashes
    assert back.files == chart_task.files
    # Read again, the same line is already present.
    again = tasks_import(project=other, lines=data.decode().splitlines())
    assert again.ok and again.already_present == 1


def test_an_import_of_files_the_project_does_not_hold_names_the_missing_hash(chart_task, personas):
    from rubrics.task_import import tasks_import

    data = exported("tasks-jsonl", personas.project)
    image, pdf = chart_task.files
    other = factories.make_project(name="Holds nothing")
    result = tasks_import(project=other, lines=data.decode().splitlines())
    assert not result.ok
    (error,) = result.errors
    assert error.startswith("line 1, field 'messages[0].content[1].image_url.url'")
    assert f"no file with hash {image.sha256} in this project" in error
    assert not Task.objects.filter(project=other).exists()
    assert not StoredFile.objects.filter(project=other).exists()
    # Holding the image only, the import names the PDF next.
    store.put(other, png(), name="chart.png", image=True)
    result = tasks_import(project=other, lines=data.decode().splitlines())
    (error,) = result.errors
    assert error.startswith("line 1, field 'messages[0].content[2].file'")
    assert pdf.sha256 in error
    assert not Task.objects.filter(project=other).exists()


# --- A responses bundle through the real bundle import ---------------------------------------


def xlsx() -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Debt"
    sheet.append(["Year", "Opening", "Interest", "Closing"])
    for year in range(2025, 2030):
        sheet.append([year, 1000, 50, 950])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def answer(*parts, text: str = "Summary memorandum attached.") -> dict:
    return {
        "messages": [
            {"role": "user", "content": "Build the debt schedule and chart revenue."},
            {"role": "assistant", "content": [{"type": "text", "text": text}, *parts]},
        ],
        "final_state": {"schedule": "done"},
    }


def test_a_responses_bundle_imports_into_another_project_with_its_files(personas, tmp_path):
    from django.core.management import call_command

    from annotation import services as annotation_services
    from annotation.content.episode import Episode
    from annotation.content.intake import ProjectIntake
    from annotation.models import Response

    project = personas.project
    task = factories.make_task(project, "bank", prompt="Build the debt schedule.")
    intake = ProjectIntake(project)
    workbook = xlsx()
    episodes = [
        answer(
            image_part(uri(png(), "image/png"), "quarterly-revenue.png"),
            {"type": "file", "file": {"file_data": uri(workbook, "application/zip"),
                                      "filename": "schedule.xlsx"}},
            pdf_part(uri(PDF, "application/pdf")),
        ),
        answer(image_part(uri(png(), "image/png"), "again.png"), text="The chart again."),
    ]  # fmt: skip
    for i, raw in enumerate(episodes):
        episode = Episode.parse(raw, files=intake)
        Response.objects.create(
            task=task, model="m", sample_index=i, text=episode.final_text, content=episode.stored()
        )
    Response.objects.create(task=task, model="m", sample_index=2, text="Just text.")
    path = tmp_path / "bank.zip"
    path.write_bytes(exported_bundle(project))

    def same_responses(other) -> None:
        mine = Response.objects.filter(task=task).order_by("sample_index")
        theirs = Response.objects.filter(task__project=other).order_by("sample_index")
        assert len(theirs) == len(mine) == 3
        for a, b in zip(mine, theirs, strict=True):
            assert (b.task.external_id, b.model, b.sample_index, b.text) == (
                "bank",
                a.model,
                a.sample_index,
                a.text,
            )
            assert b.content == a.content  # the stored parts: hashes, names, kinds, sizes
            assert Episode.load(b.content, b.text) == Episode.load(a.content, a.text)
        refs = {ref for r in mine if r.content for _, ref in r.episode.files()}
        assert len(refs) == 4  # the chart twice (two names), the workbook, the PDF
        (chart,) = {ref.sha256 for ref in refs if ref.is_image}
        hashes = {ref.sha256 for ref in refs}
        assert hashes == {
            chart,
            hashlib.sha256(workbook).hexdigest(),
            hashlib.sha256(PDF).hexdigest(),
        }
        held = StoredFile.objects.filter(project=other)
        assert set(held.values_list("sha256", flat=True)) == hashes
        for sha in hashes:
            assert store.read(sha)  # the bytes are in storage

    # The command, as an operator runs it.
    other = factories.make_project(name="Bundle back")
    factories.make_task(other, "bank", prompt="Build the debt schedule.")
    call_command("import_responses", str(path), project=other.slug)
    same_responses(other)

    # The service the page and the API call, into a third project: the same.
    third = factories.make_project(name="Bundle back again")
    factories.make_task(third, "bank", prompt="Build the debt schedule.")
    with path.open("rb") as upload:
        result = annotation_services.responses_import_file(
            project=third, upload=upload, filename=path.name
        )
    assert result.ok, result.errors
    assert result.created == 3
    same_responses(third)
    # Imported again, every row is already there.
    with path.open("rb") as upload:
        again = annotation_services.responses_import_file(
            project=third, upload=upload, filename=path.name
        )
    assert again.ok and again.already_present == 3 and again.created == 0


def exported_bundle(project) -> bytes:
    from grading.datasets import formats

    out = io.BytesIO()
    rows, _ = formats.write("responses-bundle", out, project=project)
    assert rows == 3
    return out.getvalue()


# --- Try-it renders the judge prompt for the chosen judge's sight ----------------------------


@pytest.fixture
def chart_draft(personas):
    """A draft whose task's prompt carries a mostly red chart, and a criterion about it (the
    simulator's colour rule: met for a judge sent a red chart, unmet for one sent no image)."""
    from rubrics import services

    task = services.task_create(
        project=personas.project,
        external_id="red-chart",
        title="Red chart",
        messages=prompt(image_part(uri(png((220, 30, 30)), "image/png")), text="Describe it."),
    )
    return services.rubric_create(
        project=personas.project,
        task=task,
        title="Chart reading",
        user=personas.author,
        criteria=[services.clean_criterion("States that the chart is red", 1)],
    )


def try_it(client, rubric, **data):
    from django.urls import reverse

    return client.post(reverse("rubric_try", kwargs={"pk": rubric.pk}), data)


def test_try_it_sends_a_vision_judge_the_tasks_image_and_a_blind_one_a_line(
    client, personas, sim, chart_draft
):
    from grading import services as grading_services

    vision = grading_services.judge_create(
        project=personas.project,
        name="vision",
        base_url=sim.url,
        model="judge-model",
        accepts_images=True,
    )
    blind = factories.make_judge(personas.project, sim.url, name="blind")
    client.force_login(personas.author)
    said = "The chart is red: revenue fell."

    reply = try_it(client, chart_draft, action="grade", judge=vision.pk, response=said)
    body = reply.content.decode()
    assert reply.status_code == 200 and 'role="alert"' not in body, body
    assert '<td class="met">met' in body, body
    (sent,) = sim.received
    user = sent[-1]["content"]
    assert [p["type"] for p in user if p["type"] == "image_url"] == ["image_url"]

    sim.reset()
    reply = try_it(client, chart_draft, action="grade", judge=blind.pk, response=said)
    body = reply.content.decode()
    assert '<td class="unmet">unmet' in body, body
    assert "no image reached the judge" in body
    (sent,) = sim.received
    assert isinstance(sent[-1]["content"], str)
    assert "[image: revenue-chart" in sent[-1]["content"]

    # The preview is the prompt that judge is sent: the vision judge's has the image part
    # (shown as the file it is, linked to the project's file view), the blind one's a line.
    (chart,) = Task.objects.get(external_id="red-chart").files
    link = f"/p/{personas.project.slug}/files/{chart.sha256}/"
    seen = try_it(client, chart_draft, action="preview", judge=vision.pk, response=said)
    page = seen.content.decode()
    assert 'data-testid="prompt-image"' in page and link in page, page
    assert "{&#x27;type&#x27;" not in page and "data:image" not in page
    unseen = try_it(client, chart_draft, action="preview", judge=blind.pk, response=said)
    page = unseen.content.decode()
    assert 'data-testid="prompt-image"' not in page
    assert "[image: revenue-chart" in page
    assert sim.stats.requests == 1  # since the reset; previews call no judge
