"""HealthBench files whose prompts carry images and files: a row's image_url and file parts
(base64 data: URIs, or sha256: of a file the project holds) are stored through the one
reader of parts (rubrics.files.parts), once per project, by content; a bad part is refused
naming the line and the field, and nothing of the import is written; the HealthBench exports
(the project's and a suite version's) write each file back inline, so the file imports again
into any project, and into its own as the same files."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from rubrics.files import store
from rubrics.models import Rubric, StoredFile, Suite, SuiteVersion, Task
from tests import factories
from tests.file_fixtures import data_uri, make_pdf, make_xlsx

pytestmark = pytest.mark.django_db

PDF = make_pdf(["Discharge summary.", "Potassium 5.9 mmol/L."])
XLSX = make_xlsx()
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def photo(size=(48, 32)) -> bytes:
    """An RGB PNG of a busy pattern: Assay re-encodes it as a JPEG (a photograph), whose
    bytes a second re-encoding changes (a flat colour would come back the same)."""
    from PIL import Image

    image = Image.new("RGB", size)
    image.putdata(
        [((x * 37 + y * 11) % 256, (x * y * 7) % 256, (x * 5 + y * 53) % 256)
         for y in range(size[1]) for x in range(size[0])]
    )  # fmt: skip
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def image_part(url: str, name: str = "rash.png") -> dict:
    return {"type": "image_url", "image_url": {"url": url}, "file": {"filename": name}}


def file_part(data: str, name: str) -> dict:
    return {"type": "file", "file": {"file_data": data, "filename": name}}


def row(prompt_id: str, *parts: dict, text: str = "What do these show?") -> dict:
    return {
        "prompt": [{"role": "user", "content": [{"type": "text", "text": text}, *parts]}],
        "prompt_id": prompt_id,
        "rubrics": [
            {"criterion": "Names the raised potassium", "points": 5, "tags": ["axis:accuracy"]},
            {"criterion": "Says to wait and see", "points": -4, "tags": []},
        ],
        "example_tags": ["theme:files"],
    }


def rows() -> list[dict]:
    """A plain text task, a task with a photo, a PDF and a workbook, and one with the same
    photo again under another name."""
    return [
        {
            "prompt": [{"role": "user", "content": "My knee hurts after running."}],
            "prompt_id": "knee",
            "rubrics": [{"criterion": "Advises rest", "points": 2, "tags": []}],
        },
        row(
            "labs",
            image_part(data_uri(photo(), "image/png")),
            file_part(data_uri(PDF, "application/pdf"), "discharge.pdf"),
            file_part(data_uri(XLSX, XLSX_MIME), "labs.xlsx"),
        ),
        row("rash-again", image_part(data_uri(photo(), "image/png"), "rash-2.png")),
    ]


def write(path, lines: list[dict]) -> str:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def import_rubrics(project, path, **options) -> str:
    out = io.StringIO()
    call_command(
        "import_rubrics", path, format="healthbench", project=project.slug, stdout=out, **options
    )
    return out.getvalue()


def test_a_prompts_image_pdf_and_workbook_are_stored_once_and_named_by_hash(personas, tmp_path):
    project = personas.project
    said = import_rubrics(
        project, write(tmp_path / "hb.jsonl", rows()), publish=True, suite="Clinic files"
    )
    assert "froze version 1" in said
    labs = Task.objects.get(project=project, external_id="labs")
    text, image, pdf, workbook = labs.messages[0]["content"]
    assert text == {"type": "text", "text": "What do these show?"}
    # The photo re-encoded (a JPEG, metadata dropped), the documents byte for byte.
    assert image["type"] == "image_url" and image["file"]["kind"] == "jpeg"
    assert image["image_url"]["url"] == f"sha256:{image['file']['sha256']}"
    assert image["file"]["filename"] == "rash.png"
    assert pdf == {
        "type": "file",
        "file": {
            "sha256": hashlib.sha256(PDF).hexdigest(),
            "filename": "discharge.pdf",
            "kind": "pdf",
            "size": len(PDF),
        },
    }
    assert workbook["file"]["sha256"] == hashlib.sha256(XLSX).hexdigest()
    assert workbook["file"]["kind"] == "xlsx"
    assert store.read(pdf["file"]["sha256"]) == PDF
    assert store.read(workbook["file"]["sha256"]) == XLSX
    # The same photo on another line is the same file, under that line's name.
    again = Task.objects.get(project=project, external_id="rash-again")
    (again_image,) = again.files
    assert again_image.sha256 == image["file"]["sha256"]
    assert again_image.name == "rash-2.png"
    held = set(StoredFile.objects.filter(project=project).values_list("sha256", flat=True))
    assert held == {image["file"]["sha256"], pdf["file"]["sha256"], workbook["file"]["sha256"]}
    assert [ref.kind for ref in labs.files] == ["jpeg", "pdf", "xlsx"]
    assert labs.prompt_text == "What do these show?"
    # The plain task is as before, and the suite pins all three.
    assert Task.objects.get(external_id="knee").messages == rows()[0]["prompt"]
    version = SuiteVersion.objects.get(suite__name="Clinic files")
    assert set(version.manifest) == {"knee", "labs", "rash-again"}


def test_the_import_page_takes_a_file_with_images_and_files(client, personas):
    client.force_login(personas.author)
    upload = io.BytesIO("".join(json.dumps(r) + "\n" for r in rows()).encode())
    upload.name = "hb-files.jsonl"
    reply = client.post(
        f"/p/{personas.project.slug}/rubrics/import/",
        {"format": "healthbench", "file": upload, "publish": "on"},
    )
    assert reply.status_code == 302
    assert Task.objects.get(external_id="labs").files[1].kind == "pdf"
    assert StoredFile.objects.filter(project=personas.project).count() == 3
    # A bad part is shown with its line and field, and nothing of that file is written.
    bad = [row("svg", file_part(data_uri(b"<svg onload=alert(1)></svg>"), "x.svg"))]
    upload = io.BytesIO("".join(json.dumps(r) + "\n" for r in bad).encode())
    upload.name = "bad.jsonl"
    reply = client.post(
        f"/p/{personas.project.slug}/rubrics/import/", {"format": "healthbench", "file": upload}
    )
    body = reply.content.decode()
    assert reply.status_code == 200 and "line 1: prompt[0].content[1].file" in body
    assert "is an SVG image" in body and "Nothing was imported" in body
    assert not Task.objects.filter(external_id="svg").exists()
    assert StoredFile.objects.filter(project=personas.project).count() == 3


BIG = b"%PDF-1.4\n" + b"0" * 4096


@pytest.mark.parametrize(
    ("part", "field", "said"),
    [
        (file_part(data_uri(b"<svg><script>alert(1)</script></svg>", "image/svg+xml"),
         "chart.svg"), "file", "SVG"),
        (file_part(data_uri(b"<html><body>hi</body></html>", "text/html"), "page.html"),
         "file", "page.html"),
        (file_part("data:application/pdf;base64,not*base64", "notes.pdf"), "file",
         "not valid base64"),
        (file_part(data_uri(BIG, "application/pdf"), "huge.pdf"), "file",
         "ASSAY_FILE_MAX_BYTES"),
        (image_part(data_uri(PDF, "application/pdf"), "scan.png"), "image_url.url",
         "not an image"),
        (image_part("https://example.com/x.png"), "image_url.url", "does not fetch"),
        (image_part(f"sha256:{'ab' * 32}"), "image_url.url", "no file with hash"),
        (file_part(data_uri(PDF, "application/pdf"), "memo.pdf") | {"cache_control": {}},
         "cache_control", "Not kept"),
        ({"type": "image_url", "image_url": {"url": data_uri(photo(), "image/png"),
                                             "detail": "high"}},
         "image_url.detail", "Not kept"),
        ({"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}}, "type",
         "unknown part type"),
    ],
    ids=["svg", "html", "bad-base64", "too-large", "pdf-as-image", "url", "hash-not-held",
         "unknown-key", "image-detail", "unknown-kind"],
)  # fmt: skip
def test_a_bad_part_names_its_line_and_field_and_nothing_is_written(
    personas, tmp_path, settings, part, field, said
):
    settings.FILE_MAX_BYTES = 2048
    project = personas.project
    lines = rows()
    # Line 2 stores its photo, PDF and workbook before line 4 is read: all must go again.
    lines[1]["prompt"][0]["content"][2] = file_part(data_uri(PDF[:2000]), "discharge.pdf")
    lines[1]["prompt"][0]["content"][3] = file_part(data_uri(b"a,b\n1,2\n"), "labs.csv")
    lines.append(row("bad", part))
    path = write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(CommandError) as refused:
        import_rubrics(project, path, publish=True, suite="S")
    message = str(refused.value)
    assert message.startswith(f"{path}: line 4: prompt[0].content[1].{field}: "), message
    assert said in message, message
    assert "Nothing was imported" in message
    assert not Task.objects.exists() and not Rubric.objects.exists()
    assert not StoredFile.objects.exists() and not Suite.objects.exists()


def test_text_parts_must_be_written_back_as_they_were_given(personas, tmp_path):
    lines = rows()
    lines[1]["prompt"][0]["content"][0] = "a bare string"
    with pytest.raises(CommandError, match=r"line 2: prompt\[0\]\.content\[0\]: A text part"):
        import_rubrics(personas.project, write(tmp_path / "hb.jsonl", lines))
    assert not StoredFile.objects.exists()


def test_the_rows_files_count_toward_the_prompts_limit(personas, tmp_path):
    from rubrics.files.parts import MAX_TASK_FILES

    parts = [
        file_part(data_uri(b"n,value\n" + str(n).encode() + b",1\n"), f"{n}.csv")
        for n in range(MAX_TASK_FILES + 1)
    ]
    with pytest.raises(CommandError, match=r"line 1: prompt\[0\]\.content: a prompt carries"):
        import_rubrics(personas.project, write(tmp_path / "hb.jsonl", [row("many", *parts)]))
    assert not StoredFile.objects.exists()


# --- Exports write the files back inline -------------------------------------------------------


def decoded(uri: str) -> bytes:
    assert uri.startswith("data:")
    return base64.b64decode(uri.split(",", 1)[1])


def export_suite(personas, tmp_path, name: str) -> list[dict]:
    path = tmp_path / f"{name}.jsonl"
    call_command(
        "export_dataset",
        "--project",
        personas.project.slug,
        "--format",
        "healthbench-jsonl",
        "--suite",
        name,
        "--output",
        str(path),
        stderr=io.StringIO(),
    )
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_suite_export_writes_the_files_inline_and_imports_back(personas, tmp_path):
    project = personas.project
    sent = rows()
    import_rubrics(project, write(tmp_path / "hb.jsonl", sent), publish=True, suite="Files")
    labs = Task.objects.get(project=project, external_id="labs")
    image, pdf, workbook = labs.files
    exported = {r["prompt_id"]: r for r in export_suite(personas, tmp_path, "Files")}
    assert set(exported) == {"knee", "labs", "rash-again"}
    assert exported["knee"] == sent[0]
    line = exported["labs"]
    assert line["rubrics"] == sent[1]["rubrics"] and line["example_tags"] == ["theme:files"]
    text, image_out, pdf_out, workbook_out = line["prompt"][0]["content"]
    assert text == sent[1]["prompt"][0]["content"][0]
    # OpenAI's shape, each file inline: the documents as sent, the photo as Assay stored it.
    assert set(image_out) == {"type", "image_url", "file"}
    assert image_out["file"] == {"filename": "rash.png"}
    assert image_out["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert decoded(image_out["image_url"]["url"]) == store.read(image.sha256)
    assert pdf_out == file_part(data_uri(PDF, "application/pdf"), "discharge.pdf")
    assert workbook_out == file_part(data_uri(XLSX, XLSX_MIME), "labs.xlsx")
    # The project's export (the rubrics page and export_rubrics) writes the same lines.
    out = tmp_path / "project.jsonl"
    call_command("export_rubrics", format="healthbench", project=project.slug, output=str(out))
    assert {json.loads(x)["prompt_id"]: json.loads(x) for x in out.read_text().splitlines()} == (
        exported
    )

    # Read back into the same suite: the same files (the photo keeps its hash, though a
    # second re-encoding would change its bytes), so the prompts are unchanged and so is
    # the suite.
    held = set(StoredFile.objects.values_list("pk", "sha256"))
    said = import_rubrics(
        project, write(tmp_path / "again.jsonl", list(exported.values())), suite="Files"
    )
    assert "unchanged, still version 1" in said
    assert set(StoredFile.objects.values_list("pk", "sha256")) == held
    labs.refresh_from_db()
    assert labs.files == [image, pdf, workbook]

    # Into another project: the same prompts, the documents by the same hash.
    other = factories.make_project(owner=personas.admin, name="Other clinic")
    import_rubrics(other, write(tmp_path / "copy.jsonl", list(exported.values())), publish=True)
    copy = Task.objects.get(project=other, external_id="labs")
    copied = copy.files
    assert [(r.kind, r.name) for r in copied] == [(r.kind, r.name) for r in labs.files]
    assert [r.sha256 for r in copied[1:]] == [pdf.sha256, workbook.sha256]
    assert StoredFile.objects.filter(project=other).count() == 3


def test_an_export_names_a_prompt_file_the_storage_lost(personas, tmp_path, client):
    project = personas.project
    import_rubrics(project, write(tmp_path / "hb.jsonl", rows()), publish=True)
    pdf = Task.objects.get(external_id="labs").files[1]
    default_storage.delete(store.path_of(pdf.sha256))
    with pytest.raises(CommandError) as refused:
        call_command("export_rubrics", format="healthbench", project=project.slug)
    assert "prompt_id labs: prompt[0].content[2]: 'discharge.pdf'" in str(refused.value)
    assert "gone from storage" in str(refused.value)
    client.force_login(personas.author)
    reply = client.get(f"/p/{project.slug}/rubrics/export/?format=healthbench")
    assert reply.status_code == 404
