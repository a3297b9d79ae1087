"""What a judge (and a page) can read of a file, within limits that are documented here and
stated in the result, so the prompt can say what was cut:

* **PDF** (pypdf): the text of at most PDF_MAX_PAGES pages; for judges that see images,
  at most PDF_RENDER_PAGES pages rendered to PNG by pypdfium2 (PDFium: no script in a PDF
  runs), at PDF_RENDER_DPI and re-encoded like any image.
* **DOCX** (python-docx): paragraphs and tables, in document order.
* **XLSX** (openpyxl, read-only, `data_only`: the values Excel computed and saved, never a
  formula evaluated here): each sheet as rows of cells named by address (``B3=1250000``), at
  most MAX_CELLS non-empty cells and MAX_SHEETS sheets.
* **CSV**: as XLSX, one sheet, addressed the same way (A1 is the header's first cell).
* **PPTX** (python-pptx): the text of each slide, its notes after it.

Every text stops at MAX_CHARS. A file the library cannot read is FileRefused naming it.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field

from rubrics.files import images
from rubrics.files.sniff import FileRefused, sniff

PDF_MAX_PAGES = 50
PDF_RENDER_PAGES = 20
PDF_RENDER_DPI = 100
PDF_SECONDS = 20  # a PDF whose text takes longer is cut where the clock ran out
MAX_CELLS = 10_000
MAX_SHEETS = 20
MAX_CHARS = 100_000


@dataclass(frozen=True)
class Sheet:
    name: str
    rows: list[list[tuple[str, str]]]  # each row: (address, shown value) of non-empty cells


@dataclass
class Converted:
    kind: str
    text: str = ""
    cut: list[str] = field(default_factory=list)  # what the limits left out, in words
    pages: int = 0  # a PDF's or deck's count, as the file declares it
    sheets: list[Sheet] = field(default_factory=list)

    @property
    def note(self) -> str:
        return "; ".join(self.cut)


def convert(data: bytes, *, name: str = "file") -> Converted:
    """The file's text (and sheets), by the kind its bytes say it is."""
    kind = sniff(data, name=name).kind
    handler = {
        "pdf": pdf_text,
        "docx": docx_text,
        "xlsx": xlsx_tables,
        "csv": csv_table,
        "pptx": pptx_text,
    }.get(kind)
    if handler is None:
        return Converted(kind=kind)
    out = handler(data, name=name)
    if len(out.text) > MAX_CHARS:
        out.cut.append(f"text after {MAX_CHARS:,} characters ({len(out.text):,} in all)")
        out.text = out.text[:MAX_CHARS]
    return out


def pdf_text(data: bytes, *, name: str = "file.pdf") -> Converted:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise FileRefused(f"'{name}' is an encrypted PDF; send it without a password.")
        total = len(reader.pages)
        out = Converted(kind="pdf", pages=total)
        texts = []
        deadline = time.monotonic() + PDF_SECONDS
        for number, page in enumerate(reader.pages[:PDF_MAX_PAGES], 1):
            if time.monotonic() > deadline:
                out.cut.append(f"pages {number}-{total} (text extraction ran out of time)")
                break
            texts.append(f"[page {number}]\n{(page.extract_text() or '').strip()}")
    except FileRefused:
        raise
    except (PdfReadError, OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise FileRefused(f"'{name}' is not a readable PDF ({type(exc).__name__}).") from None
    if total > PDF_MAX_PAGES:
        out.cut.append(f"pages {PDF_MAX_PAGES + 1}-{total} (at most {PDF_MAX_PAGES} are read)")
    out.text = "\n\n".join(texts)
    return out


def pdf_page_pngs(data: bytes, *, name: str = "file.pdf", limit: int = PDF_RENDER_PAGES):
    """The PDF's page count, then each of its first `limit` pages rendered by PDFium to PNG at
    PDF_RENDER_DPI, one at a time (so a caller can stop at a deadline). PDFium runs no script
    a PDF carries."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise FileRefused(f"'{name}' is not a PDF PDFium can render ({exc}).") from None
    try:
        total = len(pdf)
        yield total
        for index in range(min(total, limit)):
            page = pdf[index]
            bitmap = page.render(scale=PDF_RENDER_DPI / 72)
            buffer = io.BytesIO()
            bitmap.to_pil().save(buffer, format="PNG")
            page.close()
            yield buffer.getvalue()
    finally:
        pdf.close()


def pdf_pages(data: bytes, *, name: str = "file.pdf", limit: int = PDF_RENDER_PAGES):
    """At most `limit` pages rendered to re-encoded PNG or JPEG, and what was left out."""
    renders = pdf_page_pngs(data, name=name, limit=limit)
    total = next(renders)
    rendered = [
        images.reencode(png, name=f"{name} page {number}") for number, png in enumerate(renders, 1)
    ]
    cut = [f"pages {limit + 1}-{total} not rendered (at most {limit})"] if total > limit else []
    return rendered, cut


def docx_text(data: bytes, *, name: str = "file.docx") -> Converted:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = []
        for item in document.iter_inner_content():
            if isinstance(item, Paragraph):
                if item.text.strip():
                    blocks.append(item.text)
            elif isinstance(item, Table):
                for row in item.rows:
                    blocks.append(" | ".join(cell.text.strip() for cell in row.cells))
    except (KeyError, ValueError, OSError) as exc:
        raise FileRefused(f"'{name}' is not a readable Word document ({exc}).") from None
    return Converted(kind="docx", text="\n".join(blocks))


def _shown(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _table_text(sheets: list[Sheet]) -> str:
    parts = []
    for sheet in sheets:
        parts.append(f"## Sheet '{sheet.name}'")
        parts.extend("; ".join(f"{a}={v}" for a, v in row) for row in sheet.rows)
    return "\n".join(parts)


def xlsx_tables(data: bytes, *, name: str = "file.xlsx") -> Converted:
    import openpyxl
    from openpyxl.utils import get_column_letter

    from rubrics import uploads

    try:
        uploads.check_xlsx(data, name=name)
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except uploads.UploadRefused as exc:
        raise FileRefused(str(exc)) from None
    except (KeyError, ValueError, OSError) as exc:
        raise FileRefused(f"'{name}' is not a readable workbook ({exc}).") from None
    out = Converted(kind="xlsx")
    cells = 0
    try:
        names = book.sheetnames
        if len(names) > MAX_SHEETS:
            out.cut.append(f"sheets after the first {MAX_SHEETS} ({len(names)} in all)")
        for title in names[:MAX_SHEETS]:
            rows = []
            for r, row in enumerate(book[title].iter_rows(values_only=True), 1):
                kept = [
                    (f"{get_column_letter(c)}{r}", _shown(v))
                    for c, v in enumerate(row, 1)
                    if v is not None and str(v) != ""
                ]
                if not kept:
                    continue
                if cells + len(kept) > MAX_CELLS:
                    out.cut.append(f"cells after {MAX_CELLS:,} (from sheet '{title}' row {r})")
                    break
                cells += len(kept)
                rows.append(kept)
            out.sheets.append(Sheet(title, rows))
            if out.cut and "cells" in out.cut[-1]:
                break
    finally:
        book.close()
    out.text = _table_text(out.sheets)
    return out


def csv_table(data: bytes, *, name: str = "file.csv") -> Converted:
    from openpyxl.utils import get_column_letter

    out = Converted(kind="csv")
    rows = []
    cells = 0
    text = data.decode("utf-8-sig")
    try:
        for r, row in enumerate(csv.reader(io.StringIO(text)), 1):
            kept = [(f"{get_column_letter(c)}{r}", v) for c, v in enumerate(row, 1) if v != ""]
            if cells + len(kept) > MAX_CELLS:
                out.cut.append(f"cells after {MAX_CELLS:,} (from row {r})")
                break
            cells += len(kept)
            if kept:
                rows.append(kept)
    except csv.Error as exc:
        raise FileRefused(f"'{name}' is not readable CSV ({exc}).") from None
    out.sheets = [Sheet(name, rows)]
    out.text = _table_text(out.sheets)
    return out


def pptx_text(data: bytes, *, name: str = "file.pptx") -> Converted:
    from pptx import Presentation

    try:
        deck = Presentation(io.BytesIO(data))
        slides = []
        for number, slide in enumerate(deck.slides, 1):
            lines = [f"[slide {number}]"]
            for shape in slide.shapes:
                if shape.has_text_frame and shape.text_frame.text.strip():
                    lines.append(shape.text_frame.text.strip())
                if getattr(shape, "has_table", False) and shape.has_table:
                    for row in shape.table.rows:
                        lines.append(" | ".join(c.text.strip() for c in row.cells))
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame.text.strip():
                lines.append("notes: " + slide.notes_slide.notes_text_frame.text.strip())
            slides.append("\n".join(lines))
    except (KeyError, ValueError, OSError) as exc:
        raise FileRefused(f"'{name}' is not a readable PowerPoint deck ({exc}).") from None
    return Converted(kind="pptx", text="\n\n".join(slides), pages=len(slides))
