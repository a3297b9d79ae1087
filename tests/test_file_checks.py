"""Checked criteria over the files a response delivers (rubrics.files.checks): file_present,
xlsx_cell, pdf_max_pages and file_text on real files made by their own libraries (openpyxl,
python-docx, fpdf2, Pillow), stored and carried as message parts the way imports carry them;
graded through the real engine and a Celery worker; validation naming the field; the editor's
plain fields, the words on the pages, lint, the API and a new draft."""

from __future__ import annotations

import base64
import io
import zipfile
from decimal import Decimal

import pytest
from PIL import Image

from annotation.content.episode import Episode
from annotation.content.intake import ProjectIntake
from rubrics import checks, lint, services, wording
from tests import factories

pytestmark = pytest.mark.django_db


# --- Real files -------------------------------------------------------------------------------


def make_xlsx() -> bytes:
    """A workbook whose first sheet is a summary and whose 'Debt' sheet holds the schedule:
    B2:B4 the tranches, B5 a formula openpyxl saved with no computed value, B6 the same
    formula with the value Excel would have saved (1,200,000), B7 a plain value, C2:C4 text."""
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "Summary"
    book.active["A1"] = "See the Debt sheet"
    debt = book.create_sheet("Debt")
    debt.append(["Tranche", "Balance", "Status"])
    debt.append(["Senior A", 500_000, "paid"])
    debt.append(["Senior B", 450_000, " Paid "])
    debt.append(["Mezzanine", 250_000, "PAID"])
    debt["A5"], debt["B5"] = "Total (formula)", "=SUM(B2:B4)"
    debt["A6"], debt["B6"] = "Total (saved)", "=SUM(B2:B4)"
    debt["A7"], debt["B7"] = "Facility", 1_250_000
    out = io.BytesIO()
    book.save(out)
    return with_cached_value(out.getvalue(), "xl/worksheets/sheet2.xml", "B6", "1200000")


def with_cached_value(data: bytes, member: str, cell: str, value: str) -> bytes:
    """The workbook with `value` saved as `cell`'s computed value, as Excel saves one beside
    the formula (openpyxl writes the formula with an empty value)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            body = source.read(item.filename)
            if item.filename == member:
                text = body.decode()
                start = text.index(f'<c r="{cell}"')
                end = text.index("</c>", start)
                assert "<v></v>" in text[start:end] or "<v />" in text[start:end]
                patched = text[start:end].replace("<v></v>", f"<v>{value}</v>")
                body = (
                    text[:start] + patched.replace("<v />", f"<v>{value}</v>") + text[end:]
                ).encode()
            target.writestr(item, body)
    return out.getvalue()


def make_docx(*paragraphs: str) -> bytes:
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_pdf(pages: int) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for n in range(1, pages + 1):
        pdf.add_page()
        pdf.cell(0, 10, f"Credit report page {n}")
    return bytes(pdf.output())


def make_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def broken_xlsx() -> bytes:
    """A zip that sniffs as a workbook (it has xl/workbook.xml) but is not one."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook><not closed")
    return out.getvalue()


def uri(data: bytes, mime: str = "application/octet-stream") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def file_part(data: bytes, name: str) -> dict:
    return {"type": "file", "file": {"file_data": uri(data), "filename": name}}


def episode_with(project, *parts: dict, prompt_parts=(), tool_parts=()) -> Episode:
    """A response whose final assistant turn delivers `parts`; the user's own message may
    carry files too (`prompt_parts`: inputs, never deliverables), and a tool output may
    deliver files (`tool_parts`)."""
    messages: list[dict] = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Build the debt schedule."}, *prompt_parts],
        }
    ]
    if tool_parts:
        messages += [
            {
                "role": "assistant",
                "content": "Rendering the report.",
                "tool_calls": [
                    {
                        "id": "r1",
                        "type": "function",
                        "function": {"name": "render_report", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "r1", "content": list(tool_parts)},
        ]
    messages.append(
        {"role": "assistant", "content": [{"type": "text", "text": "Here are the files."}, *parts]}
    )
    return Episode.parse({"messages": messages}, files=ProjectIntake(project))


@pytest.fixture
def project(personas):
    return personas.project


@pytest.fixture
def delivered(project):
    """The banker's deliverables: the workbook, the memo, a chart; the 3-page report comes
    from a tool; the user's brief (a 1-page PDF) and a CSV of rates are the user's inputs."""
    return episode_with(
        project,
        file_part(make_xlsx(), "debt schedule.xlsx"),
        file_part(make_docx("Investment memo", "EBITDA grew 12% to 4.1m."), "memo.docx"),
        {
            "type": "image_url",
            "image_url": {"url": uri(make_png(), "image/png")},
            "file": {"filename": "chart.png"},
        },
        prompt_parts=[
            file_part(make_pdf(1), "brief.pdf"),
            file_part(b"name,rate\nA,0.05\n", "rates.csv"),
        ],
        tool_parts=[file_part(make_pdf(3), "report.pdf")],
    )


def run(check: dict, episode) -> tuple[bool, str]:
    return checks.evaluate(checks.validate(check), episode.final_text, episode)


# --- file_present -----------------------------------------------------------------------------


def test_file_present_by_kind_name_and_count(delivered):
    assert run({"type": "file_present", "kind": "xlsx"}, delivered) == (
        True,
        "1 XLSX file: debt schedule.xlsx.",
    )
    assert run({"type": "file_present", "kind": "image"}, delivered) == (
        True,
        "1 image: chart.png.",
    )
    assert run({"type": "file_present", "kind": "pdf"}, delivered)[0] is True  # from the tool
    assert run({"type": "file_present", "kind": "any", "min": 4}, delivered) == (
        True,
        "4 files: report.pdf, debt schedule.xlsx, memo.docx, chart.png; at least 4 wanted.",
    )
    assert run({"type": "file_present", "kind": "any", "min": 5}, delivered) == (
        False,
        "4 files (report.pdf, debt schedule.xlsx, memo.docx, chart.png); at least 5 wanted.",
    )
    assert run({"type": "file_present", "kind": "docx", "name": "MEMO*"}, delivered)[0] is True
    assert run({"type": "file_present", "kind": "docx", "name": "deck*"}, delivered) == (
        False,
        "No DOCX file named deck* in the response (its files: report.pdf, debt schedule.xlsx, "
        "memo.docx, chart.png).",
    )


def test_the_users_own_files_are_inputs_not_deliverables(delivered, project):
    # rates.csv came with the user's message: no CSV is delivered.
    assert run({"type": "file_present", "kind": "csv"}, delivered)[0] is False
    plain = episode_with(project, prompt_parts=[file_part(make_pdf(1), "brief.pdf")])
    assert run({"type": "file_present", "kind": "pdf"}, plain) == (
        False,
        "No PDF file in the response: it delivers no files.",
    )


def test_a_plain_text_response_delivers_no_files():
    text = Episode.from_text("The schedule is attached.")
    assert run({"type": "file_present", "kind": "any"}, text) == (
        False,
        "No file in the response: it delivers no files.",
    )
    assert (
        checks.evaluate(checks.validate({"type": "pdf_max_pages", "max": 3}), "x", None)[0] is False
    )


# --- xlsx_cell --------------------------------------------------------------------------------

DEBT = {"type": "xlsx_cell", "sheet": "Debt"}


def test_a_cell_within_a_relative_tolerance_names_file_sheet_and_cell(delivered):
    check = {**DEBT, "cell": "B7", "value": 1_200_000, "tolerance": 0.01, "relative": True}
    assert run(check, delivered) == (
        False,
        "debt schedule.xlsx, sheet 'Debt', B7 = 1,250,000, expected 1,200,000 ± 1%.",
    )
    assert run({**check, "tolerance": 0.05}, delivered) == (
        True,
        "debt schedule.xlsx, sheet 'Debt', B7 = 1,250,000, expected 1,200,000 ± 5%.",
    )
    absolute = {**DEBT, "cell": "$B$7", "value": "1,249,999.5", "tolerance": 0.5}
    assert run(absolute, delivered) == (
        True,
        "debt schedule.xlsx, sheet 'Debt', B7 = 1,250,000, expected 1,249,999.5 ± 0.5.",
    )
    assert run({**absolute, "tolerance": 0.4}, delivered)[0] is False


def test_a_formula_reads_the_value_excel_saved_and_never_is_evaluated(delivered):
    saved = {**DEBT, "cell": "B6", "value": 1_200_000}
    assert run(saved, delivered) == (
        True,
        "debt schedule.xlsx, sheet 'Debt', B6 = 1,200,000, expected 1,200,000.",
    )
    met, why = run({**saved, "cell": "B5"}, delivered)
    assert met is False
    assert why.startswith(
        "debt schedule.xlsx, sheet 'Debt', B5 holds the formula =SUM(B2:B4) with no computed "
        "value saved"
    )
    assert "open and save the file in Excel or LibreOffice" in why
    # In a range, the same: a sum over a formula with no value is unmet, naming it.
    met, why = run({**DEBT, "cell": "B2:B5", "aggregate": "sum", "value": 2_400_000}, delivered)
    assert met is False and "B5 holds the formula =SUM(B2:B4)" in why


def test_text_cells_ignore_case_and_surrounding_spaces(delivered):
    assert run({**DEBT, "cell": "A2", "equals": "senior a"}, delivered) == (
        True,
        "debt schedule.xlsx, sheet 'Debt', A2 = 'Senior A', expected 'senior a'.",
    )
    assert run({**DEBT, "cell": "A2", "equals": "Senior"}, delivered)[0] is False
    every = {**DEBT, "cell": "C2:C4", "aggregate": "every", "equals": "paid"}
    assert run(every, delivered) == (
        True,
        "debt schedule.xlsx, sheet 'Debt', every cell of C2:C4 = 'paid'.",
    )
    assert run({**every, "cell": "C2:C5"}, delivered) == (
        False,
        "debt schedule.xlsx, sheet 'Debt', C5 = empty, expected 'paid' (every cell of C2:C5).",
    )


def test_a_range_sums_or_compares_every_cell(delivered):
    total = {**DEBT, "cell": "B2:B4", "aggregate": "sum", "value": 1_200_000, "tolerance": 0.5}
    assert run(total, delivered) == (
        True,
        "debt schedule.xlsx, sheet 'Debt', sum of B2:B4 = 1,200,000, expected 1,200,000 ± 0.5.",
    )
    # Empty cells are left out of a sum, as in Excel; a text cell is not a number.
    assert run({**total, "cell": "B2:B4"}, delivered)[0] is True
    assert run({**total, "cell": "A2:B4"}, delivered) == (
        False,
        "debt schedule.xlsx, sheet 'Debt', A2 = 'Senior A', not a number, in the sum of A2:B4.",
    )
    every = {**DEBT, "cell": "B2:B4", "aggregate": "every", "value": 500_000}
    assert run(every, delivered) == (
        False,
        "debt schedule.xlsx, sheet 'Debt', B3 = 450,000, expected 500,000 (every cell of B2:B4); "
        "1 more cell differs.",
    )


def test_the_first_sheet_a_missing_sheet_and_an_empty_cell(delivered):
    assert run({"type": "xlsx_cell", "cell": "A1", "equals": "see the debt sheet"}, delivered)[0]
    assert run({**DEBT, "sheet": "debt", "cell": "B7", "value": 1_250_000}, delivered)[0] is True
    assert run({**DEBT, "sheet": "Equity", "cell": "B7", "value": 1}, delivered) == (
        False,
        "debt schedule.xlsx has no sheet 'Equity' (its sheets: 'Summary', 'Debt').",
    )
    assert run({**DEBT, "cell": "Z99", "value": 1}, delivered) == (
        False,
        "debt schedule.xlsx, sheet 'Debt', Z99 = empty, expected 1.",
    )


def test_a_csv_is_one_sheet_addressed_as_a_workbook(project):
    rates = episode_with(project, file_part(b"name,rate\nSenior,0.055\nMezz,0.11\n", "rates.csv"))
    assert run({"type": "xlsx_cell", "sheet": "any", "cell": "B2", "value": 0.055}, rates) == (
        True,
        "rates.csv, B2 = 0.055, expected 0.055.",
    )
    # 0.055 + 0.11 is 0.165 up to floating point: no tolerance needed for that hair.
    summed = {"type": "xlsx_cell", "cell": "B2:B3", "aggregate": "sum", "value": 0.165}
    assert run(summed, rates)[0] is True


def test_no_spreadsheet_and_a_spreadsheet_that_cannot_be_read(project, delivered):
    memo_only = episode_with(project, file_part(make_docx("Memo"), "memo.docx"))
    assert run({"type": "xlsx_cell", "cell": "B7", "value": 1}, memo_only) == (
        False,
        "No spreadsheet (XLSX or CSV) in the response (its files: memo.docx).",
    )
    assert run({"type": "xlsx_cell", "name": "model*", "cell": "B7", "value": 1}, delivered)[1] == (
        "No spreadsheet (XLSX or CSV) named model* in the response (its files: report.pdf, "
        "debt schedule.xlsx, memo.docx, chart.png)."
    )
    broken = episode_with(project, file_part(broken_xlsx(), "broken.xlsx"))
    met, why = run({"type": "xlsx_cell", "cell": "B7", "value": 1}, broken)
    assert met is False and why.startswith("broken.xlsx could not be read")


# --- pdf_max_pages ----------------------------------------------------------------------------


def test_pdf_pages_within_bounds(delivered, project):
    assert run({"type": "pdf_max_pages", "max": 3}, delivered) == (
        True,
        "report.pdf has 3 pages; at most 3 allowed.",
    )
    assert run({"type": "pdf_max_pages", "max": 2}, delivered) == (
        False,
        "report.pdf has 3 pages; at most 2 allowed.",
    )
    assert run({"type": "pdf_max_pages", "max": 10, "min": 4}, delivered) == (
        False,
        "report.pdf has 3 pages; 4 to 10 allowed.",
    )
    none = episode_with(project, file_part(make_docx("x"), "memo.docx"))
    assert run({"type": "pdf_max_pages", "max": 3}, none)[1].startswith("No PDF in the response")
    bad = episode_with(project, file_part(b"%PDF-1.4 not really a pdf", "bad.pdf"))
    met, why = run({"type": "pdf_max_pages", "max": 3}, bad)
    assert met is False and why.startswith(
        "bad.pdf could not be read: 'bad.pdf' is not a readable PDF"
    )


# --- file_text --------------------------------------------------------------------------------


def test_file_text_reuses_the_text_checks_on_the_converted_text(delivered):
    contains = {
        "type": "file_text",
        "kind": "docx",
        "check": {"type": "contains", "value": "ebitda"},
    }
    assert run(contains, delivered) == (True, "'ebitda' found in the text of memo.docx.")
    case = {**contains, "check": {"type": "contains", "value": "ebitda", "case_sensitive": True}}
    assert run(case, delivered) == (False, "'ebitda' not found in the text of memo.docx.")
    number = {"type": "file_text", "kind": "docx", "check": {"type": "number", "value": 4.1}}
    assert run(number, delivered) == (True, "Found 4.1 in the text of memo.docx, within 0 of 4.1.")
    pattern = {
        "type": "file_text",
        "kind": "pdf",
        "check": {"type": "regex", "pattern": r"page \d"},
    }
    assert run(pattern, delivered) == (True, "Pattern matched in the text of report.pdf: 'page 1'.")
    cells = {
        "type": "file_text",
        "kind": "xlsx",
        "check": {"type": "contains", "value": "B7=1250000"},
    }
    assert run(cells, delivered)[0] is True  # a workbook's text names each cell
    absent = {"type": "file_text", "kind": "pptx", "check": {"type": "contains", "value": "x"}}
    assert run(absent, delivered)[1].startswith("No PPTX file in the response")
    # "any": the first document, images aside.
    first = {"type": "file_text", "check": {"type": "not_contains", "value": "guaranteed"}}
    assert run(first, delivered) == (True, "'guaranteed' not found in the text of report.pdf.")


# --- Validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ({"type": "file_present", "kind": "exe"}, "check.kind"),
        ({"type": "file_present", "kind": "xlsx", "min": 0}, "check.min"),
        ({"type": "file_present", "kind": "xlsx", "min": "two"}, "check.min"),
        ({"type": "file_present", "kind": "xlsx", "name": 7}, "check.name"),
        ({"type": "file_present", "kind": "xlsx", "name": "x" * 201}, "check.name"),
        ({"type": "xlsx_cell", "value": 1}, "check.cell"),
        ({"type": "xlsx_cell", "cell": "7B", "value": 1}, "check.cell"),
        ({"type": "xlsx_cell", "cell": "B0", "value": 1}, "check.cell"),
        ({"type": "xlsx_cell", "cell": "XFE1", "value": 1}, "check.cell"),
        ({"type": "xlsx_cell", "cell": "B1048577", "value": 1}, "check.cell"),
        ({"type": "xlsx_cell", "cell": "B10:B2", "aggregate": "sum", "value": 1}, "check.cell"),
        ({"type": "xlsx_cell", "cell": "A1:Z1000", "aggregate": "sum", "value": 1}, "check.cell"),
        ({"type": "xlsx_cell", "cell": "B2:B3", "value": 1}, "check.aggregate"),
        (
            {"type": "xlsx_cell", "cell": "B2:B3", "aggregate": "mean", "value": 1},
            "check.aggregate",
        ),
        ({"type": "xlsx_cell", "cell": "B7"}, "check.value"),
        ({"type": "xlsx_cell", "cell": "B7", "value": 1, "equals": "x"}, "check.value"),
        ({"type": "xlsx_cell", "cell": "B7", "value": "1,5"}, "check.value"),
        ({"type": "xlsx_cell", "cell": "B7", "value": "nan"}, "check.value"),
        ({"type": "xlsx_cell", "cell": "B7", "value": 10**400}, "check.value"),
        ({"type": "xlsx_cell", "cell": "B7", "value": [1]}, "check.value"),
        ({"type": "file_present", "kind": ["xlsx"]}, "check.kind"),
        ({"type": "xlsx_cell", "cell": "B7", "value": 1, "tolerance": -0.1}, "check.tolerance"),
        ({"type": "xlsx_cell", "cell": "B7", "value": 1, "tolerance": "a"}, "check.tolerance"),
        (
            {"type": "xlsx_cell", "cell": "B7", "value": 1, "tolerance": 2, "relative": True},
            "check.tolerance",
        ),
        ({"type": "xlsx_cell", "cell": "B7", "value": 1, "relative": "maybe"}, "check.relative"),
        ({"type": "xlsx_cell", "cell": "B2:B3", "aggregate": "sum", "equals": "x"}, "check.value"),
        ({"type": "xlsx_cell", "cell": "B7", "equals": 5}, "check.equals"),
        ({"type": "xlsx_cell", "cell": "B7", "sheet": 3, "value": 1}, "check.sheet"),
        ({"type": "pdf_max_pages"}, "check.max"),
        ({"type": "pdf_max_pages", "max": 0}, "check.max"),
        ({"type": "pdf_max_pages", "max": 3, "min": 4}, "check.min"),
        ({"type": "file_text", "kind": "docx"}, "check.check"),
        (
            {"type": "file_text", "kind": "png", "check": {"type": "contains", "value": "x"}},
            "check.kind",
        ),
        ({"type": "file_text", "check": {"type": "tool_called", "tool": "x"}}, "check.check.type"),
        ({"type": "file_text", "check": {"type": "file_text"}}, "check.check.type"),
        ({"type": "file_text", "check": {"type": "contains"}}, "check.check.value"),
        (
            {"type": "file_text", "check": {"type": "regex", "pattern": "(?=x)"}},
            "check.check.pattern",
        ),
    ],
)
def test_validation_names_the_field(check, field):
    with pytest.raises(checks.CheckError) as caught:
        checks.validate(check)
    assert caught.value.field == field


def test_validation_normalises():
    assert checks.validate(
        {
            "type": "xlsx_cell",
            "cell": " $b$7 ",
            "value": "1,200,000",
            "tolerance": "0.01",
            "relative": "on",
        }
    ) == {
        "type": "xlsx_cell",
        "cell": "B7",
        "value": 1_200_000.0,
        "tolerance": 0.01,
        "relative": True,
    }
    assert checks.validate(
        {"type": "xlsx_cell", "cell": "b2:c3", "aggregate": "every", "equals": "x"}
    ) == {
        "type": "xlsx_cell",
        "cell": "B2:C3",
        "aggregate": "every",
        "equals": "x",
    }
    assert checks.validate({"type": "file_present", "kind": "JPG"}) == {
        "type": "file_present",
        "kind": "jpeg",
        "min": 1,
    }
    assert checks.validate({"type": "pdf_max_pages", "max": "10", "min": ""}) == {
        "type": "pdf_max_pages",
        "max": 10,
    }


def test_the_service_names_the_field_and_writes_nothing(personas):
    from django.core.exceptions import ValidationError

    task = factories.make_task(personas.project, "deal-1")
    rubric = services.rubric_create(
        project=personas.project, task=task, title="Deal", user=personas.author
    )
    draft = rubric.versions.get()
    with pytest.raises(ValidationError) as caught:
        services.criterion_add(
            version=draft,
            text="Facility is 1.2m",
            points=2,
            kind="checked",
            check_spec={"type": "xlsx_cell", "cell": "B-7", "value": 1},
        )
    assert set(caught.value.message_dict) == {"check.cell"}
    assert "not a cell address" in caught.value.message_dict["check.cell"][0]
    assert not draft.criteria.exists()


# --- Words, lint ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "words"),
    [
        ({"type": "file_present", "kind": "xlsx"}, "the response delivers an XLSX file"),
        (
            {"type": "file_present", "kind": "image", "min": 2, "name": "chart*"},
            "the response delivers at least 2 images named chart*",
        ),
        (
            {**DEBT, "cell": "B7", "value": 1_200_000, "tolerance": 0.01, "relative": True},
            "in the first spreadsheet (XLSX or CSV), sheet 'Debt', B7 is 1,200,000 ± 1%",
        ),
        (
            {
                "type": "xlsx_cell",
                "name": "debt*",
                "cell": "B2:B4",
                "aggregate": "sum",
                "value": 1.2e6,
            },
            "in the spreadsheet named debt*, the sum of B2:B4 is 1,200,000",
        ),
        (
            {"type": "xlsx_cell", "cell": "C2:C4", "aggregate": "every", "equals": "paid"},
            "in the first spreadsheet (XLSX or CSV), every cell of C2:C4 equals 'paid' (ignoring "
            "case and surrounding spaces)",
        ),
        ({"type": "pdf_max_pages", "max": 10}, "the response's first PDF has at most 10 pages"),
        (
            {"type": "pdf_max_pages", "max": 10, "min": 2, "name": "report*"},
            "the PDF named report* has 2 to 10 pages",
        ),
        (
            {"type": "file_text", "kind": "docx", "check": {"type": "contains", "value": "EBITDA"}},
            'the text of the first DOCX file contains "EBITDA"',
        ),
        (
            {"type": "file_text", "check": {"type": "regex", "pattern": "x+", "ignore_case": True}},
            'the text of the response\'s first document matches the pattern "x+" (ignoring case)',
        ),
    ],
)
def test_every_file_check_in_words(check, words):
    assert wording.check_in_words(checks.validate(check)) == words


def test_lint_warns_of_an_exact_computed_number():
    def codes(check):
        item = lint.Item(0, "The facility is 1.2m", 2.0, "checked", check=checks.validate(check))
        return {w.code for w in lint.lint([item])}

    assert "exact_cell_number" in codes({**DEBT, "cell": "B7", "value": 1_200_000})
    assert "exact_cell_number" not in codes({**DEBT, "cell": "B7", "value": 1.2e6, "tolerance": 1})
    assert "exact_cell_number" not in codes({**DEBT, "cell": "A1", "equals": "Total"})


# --- The editor, the API, drafts --------------------------------------------------------------


@pytest.fixture
def draft(personas):
    task = factories.make_task(personas.project, "deal-2")
    rubric = services.rubric_create(
        project=personas.project, task=task, title="Deal", user=personas.author
    )
    return rubric.versions.get()


def post(client, c, data):
    return client.post(f"/criteria/{c.pk}/", data, HTTP_HX_REQUEST="true")


CHECKED = {"kind": "checked", "kind_now": "checked"}


@pytest.mark.parametrize(
    ("fields", "spec"),
    [
        (
            {
                "check_type": "file_present",
                "check_kind": "xlsx",
                "check_name": "debt*",
                "check_min": "",
            },
            {"type": "file_present", "kind": "xlsx", "name": "debt*", "min": 1},
        ),
        (
            {
                "check_type": "xlsx_cell",
                "check_sheet": "Debt",
                "check_cell": "b7",
                "check_value": "1,200,000",
                "check_tolerance": "0.01",
                "check_relative": "on",
                "check_aggregate": "every",
            },
            {**DEBT, "cell": "B7", "value": 1_200_000.0, "tolerance": 0.01, "relative": True},
        ),
        (
            {
                "check_type": "xlsx_cell",
                "check_cell": "C2:C4",
                "check_aggregate": "every",
                "check_value": "paid",
            },
            {"type": "xlsx_cell", "cell": "C2:C4", "aggregate": "every", "equals": "paid"},
        ),
        (
            {"check_type": "pdf_max_pages", "check_max": "10", "check_min": "2"},
            {"type": "pdf_max_pages", "max": 10, "min": 2},
        ),
        (
            {
                "check_type": "file_text",
                "check_kind": "docx",
                "check_text_type": "contains",
                "check_value": "EBITDA",
                "check_case": "on",
            },
            {
                "type": "file_text",
                "kind": "docx",
                "check": {"type": "contains", "value": "EBITDA", "case_sensitive": True},
            },
        ),
    ],
)
def test_file_checks_from_the_editor_fields(client, draft, personas, fields, spec):
    c = services.criterion_add(version=draft, text="Delivers the schedule", points=2)
    client.force_login(personas.author)
    reply = post(client, c, {**CHECKED, **fields})
    assert reply["X-Assay-Saved"] == "1", reply.content.decode()[-2000:]
    c.refresh_from_db()
    assert c.check_spec == spec
    # The page gives the fields back as typed, so the next autosave keeps the check.
    page = client.get(f"/rubrics/{draft.rubric_id}/").content.decode()
    assert f"Checks that {wording.check_in_words(spec)}." in page.replace("&#x27;", "'").replace(
        "&quot;", '"'
    )
    reply = post(client, c, {**CHECKED, **fields})
    c.refresh_from_db()
    assert c.check_spec == spec


def test_the_editor_names_a_bad_cell(client, draft, personas):
    c = services.criterion_add(version=draft, text="Facility", points=2)
    client.force_login(personas.author)
    reply = post(
        client, c, {**CHECKED, "check_type": "xlsx_cell", "check_cell": "B", "check_value": "1"}
    )
    assert reply["X-Assay-Saved"] == "0"
    assert "check.cell" in reply.content.decode()
    c.refresh_from_db()
    assert c.kind == "binary"


FILE_CRITERIA = [
    {
        "text": "Delivers a workbook",
        "points": 1,
        "kind": "checked",
        "check": {"type": "file_present", "kind": "xlsx"},
    },
    {
        "text": "Facility of 1.2m",
        "points": 3,
        "kind": "checked",
        "check": {**DEBT, "cell": "B7", "value": 1_200_000, "tolerance": 0.01, "relative": True},
    },
    {
        "text": "Short report",
        "points": 1,
        "kind": "checked",
        "check": {"type": "pdf_max_pages", "max": 5},
    },
    {
        "text": "Memo names EBITDA",
        "points": 1,
        "kind": "checked",
        "check": {
            "type": "file_text",
            "kind": "docx",
            "check": {"type": "contains", "value": "EBITDA"},
        },
    },
]


def test_the_api_round_trips_file_checks_and_a_new_draft_copies_them(draft, personas):
    from tests.test_api import api_client

    author = api_client(personas.author)
    url = f"/api/rubrics/{draft.rubric_id}/draft/criteria/"
    reply = author.put(url, {"criteria": FILE_CRITERIA}, "json")
    assert reply.status_code == 200, reply.data
    got = author.get(f"/api/rubrics/{draft.rubric_id}/").data
    shown = [r["check"] for r in got["versions"][0]["criteria"]]
    assert shown == [checks.validate(c["check"]) for c in FILE_CRITERIA]
    # What the API gave back goes in again unchanged (another rubric's draft).
    other = services.rubric_create(
        project=personas.project,
        task=factories.make_task(personas.project, "deal-3"),
        title="Deal 3",
        user=personas.author,
    )
    again = [{**c, "check": s} for c, s in zip(FILE_CRITERIA, shown, strict=True)]
    reply = author.put(f"/api/rubrics/{other.pk}/draft/criteria/", {"criteria": again}, "json")
    assert reply.status_code == 200, reply.data
    assert [c.check_spec for c in other.versions.get().criteria.order_by("position")] == shown
    # Bad fields are named by criterion and field.
    bad = [{**FILE_CRITERIA[1], "check": {**DEBT, "cell": "B7", "value": 1, "tolerance": -1}}]
    reply = author.put(url, {"criteria": bad}, "json")
    assert reply.status_code == 400 and set(reply.data) == {"criteria[0].check.tolerance"}
    # Published, then edited as a new draft: the checks are copied as they were.
    grader = services.version_publish(version=draft, user=personas.author)
    new = services.draft_for_edit(rubric=draft.rubric, user=personas.author)
    assert [c.check_spec for c in new.criteria.order_by("position")] == shown
    # The grader page says each check in words.
    from django.test import Client

    engineer = Client()
    engineer.force_login(personas.engineer)
    page = engineer.get(f"/graders/{grader.hash}/").content.decode().replace("&#x27;", "'")
    for c in FILE_CRITERIA:
        assert wording.check_in_words(checks.validate(c["check"])).replace('"', "&quot;") in page


# --- Through the engine and a worker ----------------------------------------------------------


def _publish(project, user, task):
    made = services.rubric_create(
        project=project,
        task=task,
        title="Debt schedule",
        user=user,
        criteria=[
            services.CriterionInput(
                text=c["text"],
                points=Decimal(c["points"]),
                kind="checked",
                check_spec=checks.validate(c["check"]),
            )
            for c in FILE_CRITERIA
        ],
    )
    return services.version_publish(version=made.versions.get(), user=user)


@pytest.mark.django_db(transaction=True)
def test_a_run_grades_file_checks_in_code_with_reasons(personas, sim, celery_worker):
    from annotation.models import Response, Verdict
    from grading import services as grading
    from grading.models import GradingRun, Score
    from tests.conftest import wait_for

    project, admin = personas.project, personas.admin
    task = factories.make_task(project, "debt-1", prompt="Build the debt schedule.")
    grader = _publish(project, admin, task)
    good = episode_with(
        project,
        file_part(make_xlsx(), "debt.xlsx"),
        file_part(make_docx("EBITDA grew 12%."), "memo.docx"),
        tool_parts=[file_part(make_pdf(3), "report.pdf")],
    )
    agent = Response.objects.create(
        task=task, model="agent", text=good.final_text, content=good.stored()
    )
    texter = Response.objects.create(task=task, model="texter", text="The facility is 1.2m.")
    broken = episode_with(project, file_part(broken_xlsx(), "debt.xlsx"))
    hostile = Response.objects.create(
        task=task, model="broken", text=broken.final_text, content=broken.stored()
    )
    judge = factories.make_judge(project, sim.url)
    run = grading.run_create(project=project, grader=grader, judge=judge, user=admin)
    wait_for(
        lambda: GradingRun.objects.get(pk=run.pk).status == "completed",
        timeout=120,
        what="the run to complete",
    )
    number = {c["id"]: n for n, c in enumerate(grader.spec["criteria"], start=1)}

    def verdicts(response):
        rows = Verdict.objects.filter(run=run, response=response)
        return {number[v.criterion_id]: (v.outcome, v.explanation) for v in rows}

    got = verdicts(agent)
    assert {n: o for n, (o, _r) in got.items()} == {1: "met", 2: "unmet", 3: "met", 4: "met"}
    assert got[2][1] == (
        "Checked in code: debt.xlsx, sheet 'Debt', B7 = 1,250,000, expected 1,200,000 ± 1%."
    )
    assert got[3][1] == "Checked in code: report.pdf has 3 pages; at most 5 allowed."
    assert Score.objects.get(run=run, response=agent).raw == pytest.approx(3 / 6)
    plain = verdicts(texter)
    assert {o for o, _r in plain.values()} == {"unmet"}
    assert plain[1][1] == "Checked in code: No XLSX file in the response: it delivers no files."
    bad = verdicts(hostile)
    assert bad[1][0] == "met"  # it is an XLSX file, by its bytes
    assert bad[2][0] == "unmet" and bad[2][1].startswith(
        "Checked in code: debt.xlsx could not be read"
    )
    assert sim.stats.requests == 0  # checked criteria ask no judge
