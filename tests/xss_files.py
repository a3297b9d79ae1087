"""File-borne script-injection payloads (the corpus of tests/xss_payloads.py, carried by
files), each made with the library that makes such files: every payload in each document's
text, and the file-only tricks: a PDF's /OpenAction JavaScript, a DOCX hyperlink to
`javascript:`, XLSX formulas and a sheet named with markup, a PNG text chunk holding a script
(dropped by the re-encode), and an SVG with a script (refused at import)."""

from __future__ import annotations

import csv
import io

from tests.file_fixtures import make_docx, make_pdf, make_png, make_pptx
from tests.xss_payloads import PAYLOADS

# Numbers after the corpus's, for the file-only payloads.
PDF_JS = 101
DOCX_LINK = 102
XLSX_FORMULA = 103
SHEET_NAME = 104
PNG_TEXT = 105
SVG_SCRIPT = 106

SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" data-xss="106">'
    b"<script>alert(106)</script><circle r='4'/></svg>"
)


def hostile_pdf() -> bytes:
    # fpdf2's core fonts are Latin-1: the corpus is ASCII.
    return make_pdf(
        ["\n".join(p for _, p in PAYLOADS)],
        javascript=f"app.alert({PDF_JS}); alert({PDF_JS});",
    )


def hostile_docx() -> bytes:
    return make_docx(
        [p for _, p in PAYLOADS], link=("open the memo", f"javascript:alert({DOCX_LINK})")
    )


def hostile_xlsx() -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Debt schedule"
    sheet.append(["Year", "Closing"])
    for row, (_, payload) in enumerate(PAYLOADS, 2):
        sheet.cell(row=row, column=1, value=payload).data_type = "s"
    formula = f'=HYPERLINK("javascript:alert({XLSX_FORMULA})","click")'
    sheet.cell(row=2, column=2, value=formula).data_type = "s"
    sheet.cell(row=3, column=2, value=f"=1+1<img src=x onerror=alert({XLSX_FORMULA})>")
    sheet.cell(row=3, column=2).data_type = "s"
    # A sheet's name is shown in its tab and in an attribute.
    book.create_sheet(f'"><svg onload=alert({SHEET_NAME})>')["A1"] = "second sheet"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def hostile_csv() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["n", "payload"])
    for n, payload in PAYLOADS:
        writer.writerow([n, payload])
    writer.writerow(["dde", "=cmd|' /C calc'!A0"])
    return out.getvalue().encode()


def hostile_pptx() -> bytes:
    return make_pptx([p for _, p in PAYLOADS[:12]] + ["\n".join(p for _, p in PAYLOADS[12:])])


def hostile_png() -> bytes:
    return make_png(
        (120, 80),
        text={"Comment": f"<script>alert({PNG_TEXT})</script>", "Title": "<svg onload=alert(1)>"},
    )


def hostile_files() -> list[tuple[str, bytes]]:
    """(name, bytes) of every previewable kind, each carrying the corpus."""
    return [
        ("deal-book.pdf", hostile_pdf()),
        ("memo.docx", hostile_docx()),
        ("schedule.xlsx", hostile_xlsx()),
        ("rows.csv", hostile_csv()),
        ("deck.pptx", hostile_pptx()),
        ("chart.png", hostile_png()),
    ]
