"""Importing responses that carry files: bundles (.zip, .tar, .tar.gz) of real PNG, PDF, XLSX
and DOCX files made here with their own libraries, through the command, the API, the page and
a background job; every refusal names the line, the part and the file, and leaves nothing."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from annotation import services
from annotation.content.episode import Episode
from annotation.models import ImportJob, Response
from rubrics.files import store
from rubrics.files.bundle import Bundle, BundleRefused
from rubrics.files.sniff import FileRefused
from rubrics.models import StoredFile
from tests import factories
from tests.conftest import wait_for
from tests.test_api import api_client

# --- Real files ------------------------------------------------------------------------------


def png(color=(200, 30, 30, 255), size=(40, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGBA", size, color).save(out, format="PNG")
    return out.getvalue()


def pdf(pages: int = 2, text: str = "Debt schedule") -> bytes:
    from fpdf import FPDF

    doc = FPDF()
    doc.set_font("helvetica", size=12)
    for n in range(pages):
        doc.add_page()
        doc.cell(text=f"{text} page {n + 1}")
    return bytes(doc.output())


def xlsx(value: float = 1250000) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Schedule"
    sheet["A1"], sheet["B1"] = "Tranche", "Amount"
    sheet["A2"], sheet["B2"] = "Senior", value
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def docx(text: str = "Investment memo: we recommend the deal.") -> bytes:
    import docx as python_docx

    document = python_docx.Document()
    document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


FILES = {
    "out/chart.png": png(),
    "out/memo.pdf": pdf(),
    "out/schedule.xlsx": xlsx(),
    "out/memo.docx": docx(),
}


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def tar_of(members: dict[str, bytes], mode: str = "w", extra=()) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in extra:
            archive.addfile(info)
    return out.getvalue()


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def episode_row(model: str = "m1", paths=("out/chart.png", "out/memo.pdf"), **extra) -> dict:
    parts = [{"type": "text", "text": "Here is the schedule."}]
    for path in paths:
        if path.endswith(".png"):
            parts.append({"type": "image_url", "image_url": {"url": path}})
        else:
            parts.append({"type": "file", "file": {"path": path}})
    return {
        "task_id": "t1",
        "model": model,
        "messages": [
            {"role": "user", "content": "Build the debt schedule."},
            {"role": "assistant", "content": parts},
        ],
        **extra,
    }


def convenience_row(model: str = "m2", files=("out/schedule.xlsx", "./out/memo.docx")) -> dict:
    return {"task_id": "t1", "model": model, "response": "Memo and schedule.", "files": files}


def expected_sha(data: bytes) -> str:
    """The hash the file is stored under: images are re-encoded first."""
    prepared, *_ = store.prepare(data, name="x")
    return hashlib.sha256(prepared).hexdigest()


def run_import(project, data: bytes, name: str, bundle: bytes | None = None, bundle_name=""):
    return services.responses_import_file(
        project=project,
        upload=io.BytesIO(data),
        filename=name,
        bundle=io.BytesIO(bundle) if bundle is not None else None,
        bundle_name=bundle_name or "files.zip",
    )


@pytest.fixture
def project(personas):
    factories.make_task(personas.project, "t1")
    return personas.project


def assert_imported_with_files(project):
    """The two rows of every happy path: file parts with the stored bytes' hashes."""
    first = Response.objects.get(task__project=project, model="m1")
    episode = Episode.load(first.content, first.text)
    refs = [ref for _, ref in episode.files()]
    assert [r.kind for r in refs] == ["png", "pdf"]
    assert refs[0].sha256 == expected_sha(FILES["out/chart.png"])
    assert refs[1].sha256 == hashlib.sha256(FILES["out/memo.pdf"]).hexdigest()
    for ref in refs:
        assert hashlib.sha256(store.read(ref.sha256)).hexdigest() == ref.sha256
        assert StoredFile.objects.filter(project=project, sha256=ref.sha256).exists()
    assert first.content["messages"][1]["content"][1]["type"] == "image_url"
    second = Response.objects.get(task__project=project, model="m2")
    assert second.text == "Memo and schedule."
    parts = second.content["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "file", "file"]
    assert [p["file"]["kind"] for p in parts[1:]] == ["xlsx", "docx"]
    assert parts[2]["file"]["filename"] == "memo.docx"
    assert parts[1]["file"]["sha256"] == hashlib.sha256(FILES["out/schedule.xlsx"]).hexdigest()
    return refs


# --- Bundles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_a_bundle_of_each_kind_holds_the_responses_and_their_files(project, kind):
    members = {"responses.jsonl": jsonl([episode_row(), convenience_row()]), **FILES}
    data = zip_of(members) if kind == "zip" else tar_of(members, "w:gz" if "gz" in kind else "w")
    result = run_import(project, data, f"outputs.{kind}")
    assert result.ok, [str(e) for e in result.errors]
    assert result.created == 2
    assert_imported_with_files(project)


def test_a_jsonl_with_a_bundle_beside_it(project):
    result = run_import(
        project, jsonl([episode_row(), convenience_row()]), "rows.jsonl", bundle=zip_of(FILES)
    )
    assert result.ok, [str(e) for e in result.errors]
    assert_imported_with_files(project)
    # Shared files are stored once: the project holds four, whatever the rows repeat.
    assert StoredFile.objects.filter(project=project).count() == 4


def test_data_uris_need_no_bundle(project):
    uri = "data:image/png;base64," + base64.b64encode(png((0, 0, 255, 255))).decode()
    row = {"task_id": "t1", "model": "m1", "response": "See chart.", "files": [uri]}
    row2 = {
        "task_id": "t1",
        "model": "m2",
        "messages": [
            {
                "role": "assistant",
                "content": [{"type": "image_url", "image_url": {"url": uri}}],
            }
        ],
    }
    result = run_import(project, jsonl([row, row2]), "rows.jsonl")
    assert result.ok, [str(e) for e in result.errors]
    sha = expected_sha(png((0, 0, 255, 255)))
    for model in ("m1", "m2"):
        stored = Response.objects.get(model=model)
        assert [r.sha256 for _, r in Episode.load(stored.content, stored.text).files()] == [sha]


def test_a_responses_parquet_in_a_bundle(project):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    table = pa.table(
        {
            "task_id": ["t1"],
            "model": ["m2"],
            "response": ["Memo and schedule."],
            "files": [["out/schedule.xlsx", "out/memo.docx"]],
        }
    )
    pq.write_table(table, out)
    result = run_import(project, zip_of({"rows.parquet": out.getvalue(), **FILES}), "b.zip")
    assert result.ok, [str(e) for e in result.errors]
    stored = Response.objects.get(model="m2")
    assert [r.kind for _, r in Episode.load(stored.content).files()] == ["xlsx", "docx"]


def test_bundle_paths_are_normalised_and_case_sensitive(project):
    with Bundle(io.BytesIO(zip_of({"out/Memo.docx": FILES["out/memo.docx"]})), name="b.zip") as b:
        assert b.read("./out/Memo.docx") == b.read("out\\Memo.docx") == b.read("out//Memo.docx")
        with pytest.raises(FileRefused) as missing:
            b.read("out/memo.docx")
    assert "no file 'out/memo.docx'" in str(missing.value)
    assert "'out/Memo.docx'" in str(missing.value)  # the close name


# --- Refusals: nothing is imported -------------------------------------------------------------


def assert_nothing_imported(project):
    assert not Response.objects.filter(task__project=project).exists()
    assert not StoredFile.objects.filter(project=project).exists()


def refused(project, rows, bundle_members, name="b.zip"):
    members = {"responses.jsonl": jsonl(rows), **bundle_members}
    result = run_import(project, zip_of(members), name)
    assert not result.ok
    assert_nothing_imported(project)
    return [str(e) for e in result.errors]


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
)
HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 200


@pytest.mark.parametrize(
    ("path", "data", "says"),
    [
        ("out/evil.svg", SVG, "SVG image"),
        ("out/page.html", HTML, "HTML page"),
        ("out/setup.exe", EXE, "binary"),
    ],
)
def test_a_mistyped_file_names_line_part_and_file(project, path, data, says):
    rows = [episode_row(), episode_row("m3", paths=("out/chart.png", path))]
    errors = refused(project, rows, {**FILES, path: data})
    assert len(errors) == 1
    assert errors[0].startswith("line 2, field 'messages[1].content[2].file':")
    assert path.rsplit("/", 1)[-1] in errors[0] and says in errors[0]


def test_a_missing_file_names_line_part_file_and_close_names(project):
    rows = [convenience_row(files=["out/schedule.xlsx", "out/memo.docs"])]
    errors = refused(project, rows, FILES)
    assert errors == [
        "line 1, field 'files[1]': no file 'out/memo.docs' in the bundle 'b.zip' "
        "(close names: 'out/memo.docx', 'out/memo.pdf')."
    ]


def test_an_oversized_file_is_refused(project, settings):
    settings.FILE_MAX_BYTES = 500
    assert len(FILES["out/memo.pdf"]) > 500
    errors = refused(project, [episode_row(paths=("out/memo.pdf",))], FILES)
    assert errors[0].startswith("line 1, field 'messages[1].content[1].file': 'out/memo.pdf'")
    assert "ASSAY_FILE_MAX_BYTES" in errors[0]


@pytest.mark.parametrize("path", ["../secret.pdf", "/etc/passwd", "out/../../x.pdf", "C:\\x.pdf"])
def test_a_path_escaping_the_bundle_is_refused(project, path):
    errors = refused(project, [convenience_row(files=[path])], FILES)
    assert errors[0].startswith("line 1, field 'files[0]':")
    assert "leaves the bundle" in errors[0] or "absolute path" in errors[0]


def test_paths_without_a_bundle_are_refused(project):
    result = run_import(project, jsonl([convenience_row()]), "rows.jsonl")
    assert [str(e) for e in result.errors] == [
        "line 1, field 'files[0]': 'schedule.xlsx' names a file in a bundle, but no bundle "
        "(.zip or .tar) came with these files: send each as a data: URI"
    ]
    assert_nothing_imported(project)


def test_one_bad_row_among_good_ones_leaves_no_stored_file_rows(project):
    rows = [episode_row(), convenience_row(), convenience_row("m4", files=["out/nope.xlsx"])]
    errors = refused(project, rows, FILES)
    assert errors[0].startswith("line 3, field 'files[0]': no file 'out/nope.xlsx'")


def tar_member(name: str, type_: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (tar_member("out/link.pdf", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (tar_member("out/hard.pdf", tarfile.LNKTYPE, "out/memo.pdf"), "hard link"),
        (tar_member("out/dev", tarfile.CHRTYPE), "device"),
    ],
)
def test_a_tar_with_links_or_devices_is_refused_whole(project, extra, says):
    data = tar_of({"responses.jsonl": jsonl([episode_row()]), **FILES}, extra=[extra])
    result = run_import(project, data, "b.tar")
    assert result.errors[0].field == "bundle" and says in result.errors[0].message
    assert_nothing_imported(project)


@pytest.mark.parametrize("name", ["../up.pdf", "/abs.pdf"])
def test_an_archive_member_outside_the_bundle_is_refused_whole(project, name):
    for data in (tar_of({name: b"x"}), zip_of({name: b"x"})):
        with pytest.raises(BundleRefused) as refusal:
            Bundle(io.BytesIO(data), name="b")
        assert "leaves the bundle" in str(refusal.value) or "absolute" in str(refusal.value)


def test_bundle_limits(project, settings):
    settings.BUNDLE_MAX_MEMBERS = 3
    with pytest.raises(BundleRefused, match="ASSAY_BUNDLE_MAX_MEMBERS"):
        Bundle(io.BytesIO(zip_of(FILES)), name="b.zip")
    with pytest.raises(BundleRefused, match="ASSAY_BUNDLE_MAX_MEMBERS"):
        Bundle(io.BytesIO(tar_of(FILES)), name="b.tar")
    settings.BUNDLE_MAX_MEMBERS = 100
    settings.BUNDLE_MAX_UNPACKED_BYTES = 10_000
    with pytest.raises(BundleRefused, match="ASSAY_BUNDLE_MAX_UNPACKED_BYTES") as too_big:
        Bundle(io.BytesIO(tar_of(FILES)), name="b.tar")
    assert too_big.value.status == 413
    with pytest.raises(BundleRefused, match="ASSAY_BUNDLE_MAX_UNPACKED_BYTES"):
        Bundle(io.BytesIO(zip_of(FILES)), name="b.zip")


def test_zip_and_gzip_bombs_are_refused(project):
    bomb = zip_of({"zeros.csv": b"0" * (30 * 1024 * 1024)})
    with pytest.raises(BundleRefused, match="zip bomb"):
        Bundle(io.BytesIO(bomb), name="bomb.zip")
    gz = tar_of({"zeros.csv": b"0" * (30 * 1024 * 1024)}, mode="w:gz")
    with pytest.raises(BundleRefused, match="gzip bomb"):
        Bundle(io.BytesIO(gz), name="bomb.tgz")
    result = run_import(project, jsonl([episode_row()]), "rows.jsonl", bundle=bomb)
    assert result.errors[0].field == "bundle" and "zip bomb" in result.errors[0].message
    assert_nothing_imported(project)


def test_not_a_bundle_and_a_bundle_without_responses(project):
    result = run_import(project, jsonl([episode_row()]), "rows.jsonl", bundle=b"just text")
    assert "is not a bundle" in result.errors[0].message
    result = run_import(project, zip_of(FILES), "files.zip")
    assert "no responses file in it" in result.errors[0].message
    assert_nothing_imported(project)


# --- Doors: command, API, page, background job -----------------------------------------------


def test_the_command_takes_a_bundle_or_a_file_beside_one(project, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(jsonl([episode_row(), convenience_row()]))
    bundle = tmp_path / "files.tar.gz"
    bundle.write_bytes(tar_of(FILES, mode="w:gz"))
    out = io.StringIO()
    call_command(
        "import_responses",
        str(rows),
        "--project",
        project.slug,
        "--bundle",
        str(bundle),
        stdout=out,
    )
    assert "Imported 2 responses" in out.getvalue()
    assert_imported_with_files(project)
    both = tmp_path / "both.zip"
    both.write_bytes(zip_of({"responses.jsonl": jsonl([episode_row("m9")]), **FILES}))
    call_command("import_responses", str(both), "--project", project.slug, stdout=out)
    assert Response.objects.filter(model="m9").exists()


def test_the_command_reports_a_refused_file_and_imports_nothing(project, tmp_path):
    both = tmp_path / "both.zip"
    both.write_bytes(zip_of({"responses.jsonl": jsonl([convenience_row()]), "x.svg": SVG}))
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_responses", str(both), "--project", project.slug, stderr=err)
    assert "line 1, field 'files[0]': no file 'out/schedule.xlsx'" in err.getvalue()
    assert_nothing_imported(project)


def test_the_api_takes_a_bundle_and_files_are_served_to_members_only(project, personas, client):
    api = api_client(personas.engineer)
    reply = api.post(
        f"/api/projects/{project.slug}/responses/import/",
        {
            "file": SimpleUploadedFile("rows.jsonl", jsonl([episode_row(), convenience_row()])),
            "bundle": SimpleUploadedFile("files.zip", zip_of(FILES)),
        },
        format="multipart",
    )
    assert reply.status_code == 201, reply.content
    refs = assert_imported_with_files(project)
    url = f"/p/{project.slug}/files/{refs[0].sha256}/"
    client.force_login(personas.annotator)
    shown = client.get(url)
    assert shown.status_code == 200
    assert b"".join(shown.streaming_content) == store.read(refs[0].sha256)
    client.force_login(personas.outsider)
    assert client.get(url).status_code == 404


def test_the_api_refusal_names_the_part(project, personas):
    reply = api_client(personas.engineer).post(
        f"/api/projects/{project.slug}/responses/import/",
        {
            "file": SimpleUploadedFile(
                "b.zip", zip_of({"responses.jsonl": jsonl([episode_row()]), "out/chart.png": SVG})
            )
        },
        format="multipart",
    )
    assert reply.status_code == 400
    error = reply.json()["errors"][0]
    assert error["line"] == 1 and error["field"] == "messages[1].content[1].image_url.url"
    assert "chart.png" in error["message"] and "SVG" in error["message"]
    assert_nothing_imported(project)


def test_the_page_takes_a_bundle_beside_the_rows(project, personas, client):
    client.force_login(personas.engineer)
    page = client.post(
        f"/p/{project.slug}/responses/",
        {
            "file": SimpleUploadedFile("rows.jsonl", jsonl([episode_row(), convenience_row()])),
            "bundle": SimpleUploadedFile("files.tar", tar_of(FILES)),
        },
    )
    assert page.status_code == 200
    assert b"Imported 2 responses" in page.content
    assert_imported_with_files(project)
    assert b'name="bundle"' in client.get(f"/p/{project.slug}/responses/").content


def test_the_page_shows_a_refused_file(project, personas, client):
    client.force_login(personas.engineer)
    page = client.post(
        f"/p/{project.slug}/responses/",
        {
            "file": SimpleUploadedFile("rows.jsonl", jsonl([convenience_row(files=["x.exe"])])),
            "bundle": SimpleUploadedFile("files.zip", zip_of({"x.exe": EXE})),
        },
    )
    assert b"Nothing was imported" in page.content and b"x.exe" in page.content
    assert_nothing_imported(project)


@pytest.mark.django_db(transaction=True)
def test_a_background_job_keeps_the_bundle_for_its_worker(personas, celery_worker):
    from django.core.files.storage import default_storage

    project = personas.project
    factories.make_task(project, "t1")
    reply = api_client(personas.engineer).post(
        f"/api/projects/{project.slug}/imports/",
        {
            "file": SimpleUploadedFile("rows.jsonl", jsonl([episode_row(), convenience_row()])),
            "bundle": SimpleUploadedFile("files.zip", zip_of(FILES)),
        },
        format="multipart",
    )
    assert reply.status_code == 202, reply.content
    job = ImportJob.objects.get()
    assert job.bundle and default_storage.exists(job.bundle)
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).status == "done", what="the import")
    job.refresh_from_db()
    assert job.created == 2, job.errors
    assert_imported_with_files(project)
    assert not default_storage.exists(job.bundle) and not default_storage.exists(job.file)
