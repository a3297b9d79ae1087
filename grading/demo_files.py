"""The files of the demo's deliverable tasks, made when the demo loads (never shipped as
binaries): a debt schedule workbook (openpyxl; every cell holds its computed value, so a
reader that does not evaluate formulas, and Assay's converter, reads the numbers), a short
credit memo (python-docx) and a bar chart (Pillow). The borrower and figures are invented."""

from __future__ import annotations

import io

LOAN = 40_000_000
RATE = 0.065
REPAYMENT = 8_000_000
YEARS = (2026, 2027, 2028, 2029, 2030)
# The demo's wrong cell: one model takes 2028's interest on the closing balance.
WRONG_YEAR = 2028


def debt_schedule(*, wrong_cell: bool = False) -> list[tuple[int, float, float, float, float]]:
    """(year, opening, interest, repayment, closing) rows."""
    rows = []
    opening = float(LOAN)
    for year in YEARS:
        closing = opening - REPAYMENT
        base = closing if (wrong_cell and year == WRONG_YEAR) else opening
        rows.append((year, opening, round(base * RATE, 2), float(REPAYMENT), closing))
        opening = closing
    return rows


def debt_schedule_xlsx(*, wrong_cell: bool = False) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Debt schedule"
    sheet.append(["Year", "Opening balance", "Interest (6.5%)", "Repayment", "Closing balance"])
    rows = debt_schedule(wrong_cell=wrong_cell)
    for row in rows:
        sheet.append(list(row))
    sheet.append(["Total", None, sum(r[2] for r in rows), sum(r[3] for r in rows), None])
    for column in "ABCDE":
        sheet.column_dimensions[column].width = 18
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def memo_docx(title: str, paragraphs: list[str]) -> bytes:
    import docx

    document = docx.Document()
    document.add_heading(title, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


CHART_BARS = (("North", 42), ("South", 27), ("East", 65), ("West", 38))


def chart_png() -> bytes:
    """A bar chart of invented unit counts per region, with labels the answer must read."""
    from PIL import Image, ImageDraw

    width, height, base = 640, 400, 340
    # With an alpha channel, so re-encoding keeps it a PNG (sharp text), not a JPEG.
    image = Image.new("RGBA", (width, height), (255, 255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.text((20, 12), "Units shipped per region, Q3 (invented data)", fill="black")
    draw.line((60, base, width - 20, base), fill="black", width=2)
    for i, (label, value) in enumerate(CHART_BARS):
        left = 90 + i * 130
        top = base - value * 4
        draw.rectangle((left, top, left + 80, base), fill=(52, 101, 164))
        draw.text((left + 28, top - 16), str(value), fill="black")
        draw.text((left + 22, base + 8), label, fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
