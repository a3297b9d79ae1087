"""Tasks whose prompt carries images and files: JSONL import with data: URI parts, refusals
that name the line and the field with nothing written, the task editor's upload, and the
rubric editor showing the task's and the reference's files (members only)."""

from __future__ import annotations

import base64
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from rubrics import services
from rubrics.models import StoredFile, Task
from rubrics.task_import import tasks_import
from tests import factories

pytestmark = pytest.mark.django_db


def png(color=(200, 30, 30, 255)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (40, 30), color).save(out, format="PNG")
    return out.getvalue()


def uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def line(external_id: str, part: dict) -> str:
    message = {"role": "user", "content": [{"type": "text", "text": "Read this chart."}, part]}
    return json.dumps({"external_id": external_id, "messages": [message]})


def image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}, "file": {"filename": "chart.png"}}


def test_a_task_line_with_an_image_part_is_stored_by_hash(personas):
    result = tasks_import(project=personas.project, lines=[line("t1", image(uri(png())))])
    assert result.ok, result.errors
    task = Task.objects.get(external_id="t1")
    (ref,) = task.files
    assert (ref.kind, ref.name) == ("png", "chart.png")
    part = task.messages[0]["content"][1]
    assert part["image_url"]["url"] == f"sha256:{ref.sha256}"
    assert StoredFile.objects.filter(project=personas.project, sha256=ref.sha256).exists()
    assert task.prompt_text == "Read this chart."
    # The same line again is already present (the stored shape reads back as itself).
    again = tasks_import(project=personas.project, lines=[line("t1", image(uri(png())))])
    assert again.ok and again.already_present == 1


SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.mark.parametrize(
    ("part", "said"),
    [
        (image(uri(SVG, "image/svg+xml")), "SVG"),
        (image("https://example.com/chart.png"), "does not fetch files from URLs"),
        (image("data:image/png;base64,@@not base64@@"), "not valid base64"),
        (image(uri(b"x" * 2048)), "MB"),
        ({"type": "file", "file": {"file_data": uri(b"<html><script>x</script>", "text/html")}},
         "HTML"),
    ],
    ids=["svg", "url", "bad-base64", "too-big", "html"],
)  # fmt: skip
def test_refused_parts_name_the_line_and_field_and_nothing_is_written(
    personas, settings, part, said
):
    settings.FILE_MAX_BYTES = 1024
    good = line("fine", image(uri(png((0, 0, 255, 255)))))
    result = tasks_import(project=personas.project, lines=[good, line("bad", part)])
    assert not result.ok
    (error,) = result.errors
    assert error.startswith("line 2, field 'messages[0].content[1].")
    assert said in error
    assert not Task.objects.exists()
    assert not StoredFile.objects.exists()  # line 1's image is rolled back with the rest


def test_the_editor_shows_the_task_and_reference_files_and_keeps_them(client, personas):
    project = personas.project
    task = factories.make_task(project, "chart")
    client.force_login(personas.author)
    edit = reverse("task_edit", args=[project.slug, "chart"])
    sent = client.post(
        edit,
        {
            "title": "Chart",
            "tags": "",
            "context": "",
            "role": ["user"],
            "content": ["What does the chart show?"],
            "attach": SimpleUploadedFile("bars.png", png(), content_type="image/png"),
        },
    )
    assert sent.status_code == 302
    task.refresh_from_db()
    (ref,) = task.files
    services.reference_create(
        task=task,
        body="See the sheet.",
        file=SimpleUploadedFile("answer.pdf", b"%PDF-1.4\n%demo\n" + bytes(64)),
        user=personas.author,
    )
    rubric = services.rubric_create(project=project, task=task, title="Chart", user=personas.author)
    page = client.get(reverse("rubric", args=[rubric.pk])).content.decode()
    assert 'data-testid="task-files"' in page and f"/files/{ref.sha256}/" in page
    assert 'data-testid="reference-files"' in page and "answer.pdf" in page and "pdf" in page
    # Saving the text again keeps the file (the row carries it); an SVG upload is refused.
    form = client.get(reverse("task", args=[project.slug, "chart"])).content.decode()
    assert 'name="files"' in form and 'data-testid="message-files"' in form
    files = json.dumps([task.messages[0]["content"][1]])
    client.post(
        edit,
        {"title": "Chart", "role": ["user"], "content": ["New words."], "files": [files]},
    )
    task.refresh_from_db()
    assert task.prompt_text == "New words." and task.files == [ref]
    refused = client.post(
        edit,
        {
            "title": "Chart",
            "role": ["user"],
            "content": ["x"],
            "attach": SimpleUploadedFile("x.svg", SVG, content_type="image/svg+xml"),
        },
    )
    assert refused.status_code == 400 and "SVG" in refused.content.decode()
    # A forged hash the project does not hold is refused, naming the field.
    forged = json.dumps([{"type": "file", "file": {"sha256": "ab" * 32}}])
    bad = client.post(edit, {"title": "C", "role": ["user"], "content": ["y"], "files": [forged]})
    assert bad.status_code == 400 and "messages[0].content[1].file" in bad.content.decode()
    # Every member sees the files beside the rubric (annotators too, as the rubric and the
    # reference download today); outsiders get 404 for the page and the file.
    for user in (personas.annotator, personas.reviewer, personas.engineer):
        client.force_login(user)
        assert client.get(reverse("rubric", args=[rubric.pk])).status_code == 200
        assert client.get(f"/p/{project.slug}/files/{ref.sha256}/").status_code == 200
    client.force_login(personas.outsider)
    assert client.get(reverse("rubric", args=[rubric.pk])).status_code == 404
    assert client.get(f"/p/{project.slug}/files/{ref.sha256}/").status_code == 404
