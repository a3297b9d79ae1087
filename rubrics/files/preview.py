"""Previews of stored files on pages (score and verdict pages, try-it, adjudication, the
annotation page), safe to show inline because nothing of the file's own reaches the browser
but pixels we drew and text we escaped:

* **images**: the re-encoded stored copy (`rubrics.files.images`), scaled by CSS.
* **PDF**: pages rendered to PNG by PDFium in a child process (`render_pdf`) bounded by
  PDF_RENDER_SECONDS and PDF_RENDER_MEMORY, at most convert.PDF_RENDER_PAGES pages at
  convert.PDF_RENDER_DPI. Each page is rendered once and kept in storage
  (``previews/v1/ab/abcdef…/page-1.png``, and by its own hash like any file, for vision
  judges), with ``pages.json`` saying how many there are, each page's size and hash, and
  what was left out; a PDF's scripts never leave the server, since only PNGs do.
* **XLSX, CSV**: a table per sheet from the stored conversion (`store.converted`: the values
  Excel saved, never a formula evaluated), every cell named by its address; at most
  SHEET_ROWS rows and SHEET_COLUMNS columns a sheet. A value that reads like a formula
  (``=``, ``+``, ``-``, ``@``) is text like any other.
* **DOCX**: HTML we build from python-docx (paragraphs, headings, lists, tables, bold,
  italic, underline), every text escaped, hyperlinks shown as text with their address as a
  title (never followed), then cleaned by nh3 with a short allowlist; kept in storage.
* **PPTX**: the text of each slide, its tables and notes.

What a limit left out is stated (`cut`), and pages show it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nh3
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils.html import escape

from rubrics.files import convert
from rubrics.files.sniff import FileRefused
from rubrics.files.store import FileRef, converted, path_of, read

# Bump when a preview changes what it shows: stored previews of the old version are made again.
PREVIEW_VERSION = 1
PDF_RENDER_SECONDS = convert.PDF_SECONDS  # the renderer is killed after this; its pages kept
PDF_RENDER_MEMORY = 1536 * 1024 * 1024  # the renderer's address space, in bytes
SHEET_ROWS = 500
SHEET_COLUMNS = 40
DOCX_BLOCKS = 5_000
ADDRESS = re.compile(r"^([A-Z]{1,3})([1-9][0-9]{0,6})$")

# Pages of PDFs this process has rendered. Tests read it: a page already in storage is never
# rendered again.
renders = 0


def _folder(sha256: str) -> str:
    return f"previews/v{PREVIEW_VERSION}/{sha256[:2]}/{sha256}"


def page_path(sha256: str, number: int) -> str:
    return f"{_folder(sha256)}/page-{number}.png"


def image_sizes(sha256s) -> dict[str, tuple[int, int]]:
    """(width, height) of stored images by hash, in one query, for the attributes of their
    <img> (a page does not jump as they load)."""
    from rubrics.models import StoredFile

    wanted = set(sha256s)
    if not wanted:
        return {}
    rows = StoredFile.objects.filter(sha256__in=wanted, width__isnull=False)
    return {sha: (w, h) for sha, w, h in rows.values_list("sha256", "width", "height")}


# --- PDF ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PdfPages:
    total: int  # as the file declares it
    sizes: list[tuple[int, int]]  # (width, height) in pixels of each page rendered, in order
    cut: list[str] = field(default_factory=list)
    # (sha256, bytes) of each page's PNG, in order: what a vision judge is sent names a page
    # by its hash, taken here once rather than by reading and hashing it on every prompt.
    pngs: list[tuple[str, int]] = field(default_factory=list)

    @property
    def pages(self) -> list[dict]:
        return [{"number": n, "width": w, "height": h} for n, (w, h) in enumerate(self.sizes, 1)]


def pdf_pages(ref: FileRef) -> PdfPages:
    """The rendered pages of a stored PDF: read from storage, or rendered once (under a lock
    on the file's rows, so two requests never render the same PDF) and stored."""
    manifest = f"{_folder(ref.sha256)}/pages.json"
    found = _read_manifest(manifest)
    if found is not None and _hashed(found):
        return found
    from rubrics.models import StoredFile

    with transaction.atomic():
        list(StoredFile.objects.select_for_update().filter(sha256=ref.sha256).values_list("pk"))
        found = _read_manifest(manifest)
        if found is not None and _hashed(found):
            return found
        if found is not None:
            # Kept before manifests held the pages' hashes: hashed once now, not re-rendered.
            rendered = PdfPages(found.total, found.sizes, found.cut, _page_hashes(ref, found))
            default_storage.delete(manifest)
        else:
            rendered = _render(ref)
        default_storage.save(manifest, ContentFile(json.dumps(asdict(rendered)).encode()))
    return rendered


def _hashed(pages: PdfPages) -> bool:
    return len(pages.pngs) == len(pages.sizes)


def _read_manifest(path: str) -> PdfPages | None:
    try:
        with default_storage.open(path, "rb") as handle:
            raw = json.loads(handle.read())
        pngs = [(str(sha), int(size)) for sha, size in raw.get("pngs", [])]
        return PdfPages(raw["total"], [tuple(s) for s in raw["sizes"]], raw["cut"], pngs)
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def _keep_page(png: bytes) -> tuple[str, int]:
    """A page's PNG kept by its own hash (`store.path_of`), as a judge's attachment names it."""
    sha = hashlib.sha256(png).hexdigest()
    if not default_storage.exists(path_of(sha)):
        default_storage.save(path_of(sha), ContentFile(png))
    return sha, len(png)


def _page_hashes(ref: FileRef, pages: PdfPages) -> list[tuple[str, int]]:
    out = []
    for number in range(1, len(pages.sizes) + 1):
        with default_storage.open(page_path(ref.sha256, number), "rb") as handle:
            out.append(_keep_page(handle.read()))
    return out


def _render(ref: FileRef) -> PdfPages:
    """Render the PDF's pages in a bounded child process and store each one."""
    global renders
    from PIL import Image

    limit = convert.PDF_RENDER_PAGES
    work = Path(tempfile.mkdtemp(prefix="assay-pdf-"))
    try:
        started = time.monotonic()
        timed_out = False
        try:
            done = subprocess.run(  # noqa: S603 - our own module, fixed arguments
                [
                    sys.executable,
                    "-m",
                    "rubrics.files.render_pdf",
                    str(work),
                    str(limit),
                    str(PDF_RENDER_MEMORY),
                ],
                input=read(ref.sha256),
                capture_output=True,
                timeout=PDF_RENDER_SECONDS,
                check=False,
                cwd=Path(__file__).resolve().parents[2],
            )
            failed = done.returncode != 0
        except subprocess.TimeoutExpired:
            timed_out, failed = True, False
        if (work / "error").exists():
            raise FileRefused((work / "error").read_text()[:500])
        if not (work / "total").exists():
            why = f"within {PDF_RENDER_SECONDS:g} s" if timed_out else "(the renderer stopped)"
            raise FileRefused(f"'{ref.name}' could not be rendered {why}.")
        total = int((work / "total").read_text())
        sizes, pngs = [], []
        for number in range(1, min(total, limit) + 1):
            page = work / f"page-{number}.png"
            if not page.exists():
                break
            png = page.read_bytes()
            with Image.open(io.BytesIO(png)) as image:
                if image.format != "PNG":
                    break
                sizes.append(image.size)
            path = page_path(ref.sha256, number)
            if not default_storage.exists(path):
                default_storage.save(path, ContentFile(png))
            pngs.append(_keep_page(png))
            renders += 1
        cut = []
        shown = len(sizes)
        if shown < min(total, limit):
            why = (
                f"rendering ran out of time after {time.monotonic() - started:.0f} s"
                if timed_out
                else "the renderer failed"
                if failed
                else "the renderer stopped"
            )
            cut.append(f"pages {shown + 1}-{total} not rendered ({why})")
        elif total > limit:
            cut.append(f"pages {limit + 1}-{total} not rendered (at most {limit})")
        return PdfPages(total, sizes, cut, pngs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def page_file(ref: FileRef, number: int):
    """An open handle on page `number` (from 1) of a stored PDF, rendering the PDF first if
    it never was; FileNotFoundError for a page that is not rendered."""
    if number < 1 or number > convert.PDF_RENDER_PAGES:
        raise FileNotFoundError(number)
    try:
        return default_storage.open(page_path(ref.sha256, number), "rb")
    except FileNotFoundError:
        pass
    if number > len(pdf_pages(ref).sizes):
        raise FileNotFoundError(number)
    return default_storage.open(page_path(ref.sha256, number), "rb")


def page_refs(ref: FileRef, *, limit: int) -> tuple[list[FileRef], list[str]]:
    """The first `limit` pages of a stored PDF as images a vision judge is sent: the same
    bounded, once-only render the previews show (`pdf_pages`), each page kept by its own hash
    like any file (`store.path_of`), so prompts and cache keys name pages by content. The
    hashes are the manifest's: building a prompt reads no page (the bytes are read only when
    the prompt is sent). Returns the pages (named "<name> page N") and what the render left
    out, in words; FileRefused when the PDF cannot be rendered."""
    rendered = pdf_pages(ref)
    pages = [
        FileRef(sha, "png", f"{ref.name} page {number}", size)
        for number, (sha, size) in enumerate(rendered.pngs[:limit], 1)
    ]
    return pages, rendered.cut


# --- Sheets ---------------------------------------------------------------------------------


def column_number(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def column_letters(n: int) -> str:
    out = ""
    while n:
        n, rest = divmod(n - 1, 26)
        out = chr(65 + rest) + out
    return out


@dataclass(frozen=True)
class SheetTable:
    name: str
    columns: list[str]  # letters, A first
    rows: list[tuple[int, list[tuple[str, str]]]]  # (row number, [(address, value)] per column)
    cut: list[str]


def sheet_names(ref: FileRef) -> list[str]:
    return [s.name for s in converted(ref).sheets]


def sheet_table(ref: FileRef, index: int = 0) -> SheetTable:
    """Sheet `index` of a stored XLSX or CSV as a grid: columns A.. as far as a value goes
    (at most SHEET_COLUMNS), each row that holds a value (at most SHEET_ROWS) with its number,
    every cell with its address; IndexError for a sheet there is not."""
    result = converted(ref)
    sheet = result.sheets[index]
    width = 0
    cells: list[tuple[int, dict[int, str]]] = []
    for row in sheet.rows:
        by_column: dict[int, str] = {}
        number = 0
        for address, value in row:
            match = ADDRESS.match(address)
            if not match:
                continue
            column = column_number(match[1])
            number = int(match[2])
            by_column[column] = value
            width = max(width, column)
        if by_column:
            cells.append((number, by_column))
    cut = []
    if width > SHEET_COLUMNS:
        cut.append(f"columns after {column_letters(SHEET_COLUMNS)} not shown")
        width = SHEET_COLUMNS
    if len(cells) > SHEET_ROWS:
        cut.append(f"rows after row {cells[SHEET_ROWS - 1][0]} not shown ({SHEET_ROWS} at most)")
        cells = cells[:SHEET_ROWS]
    if index == 0:
        cut = [*result.cut, *cut]
    columns = [column_letters(c) for c in range(1, width + 1)]
    rows = [
        (number, [(f"{columns[c - 1]}{number}", values.get(c, "")) for c in range(1, width + 1)])
        for number, values in cells
    ]
    return SheetTable(sheet.name, columns, rows, cut)


# --- Word and PowerPoint: HTML and text, made once and kept ------------------------------------

DOCX_TAGS = {
    "p",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "li",
    "strong",
    "em",
    "u",
    "span",
    "table",
    "tbody",
    "tr",
    "td",
}


def docx_html(ref: FileRef) -> tuple[str, list[str]]:
    """A stored Word document as sanitised HTML, and what was cut; made once and kept."""
    path = f"{_folder(ref.sha256)}/document.json"
    try:
        with default_storage.open(path, "rb") as handle:
            raw = json.loads(handle.read())
        return raw["html"], raw["cut"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        pass
    html, cut = build_docx_html(read(ref.sha256), name=ref.name)
    if not default_storage.exists(path):
        default_storage.save(path, ContentFile(json.dumps({"html": html, "cut": cut}).encode()))
    return html, cut


def _runs_html(paragraph) -> str:
    from docx.text.hyperlink import Hyperlink
    from docx.text.run import Run

    def run_html(run) -> str:
        text = escape(run.text)
        if not text:
            return ""
        if run.bold:
            text = f"<strong>{text}</strong>"
        if run.italic:
            text = f"<em>{text}</em>"
        if run.underline:
            text = f"<u>{text}</u>"
        return text

    out = []
    for item in paragraph.iter_inner_content():
        if isinstance(item, Run):
            out.append(run_html(item))
        elif isinstance(item, Hyperlink):
            inner = "".join(run_html(r) for r in item.runs)
            address = escape(item.address or "")
            out.append(f'<span class="docx-link" title="{address}">{inner}</span>')
    return "".join(out)


def build_docx_html(data: bytes, *, name: str = "file.docx") -> tuple[str, list[str]]:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    from rubrics import uploads

    blocks: list[str] = []
    cut: list[str] = []
    chars = 0
    open_list = ""
    try:
        uploads.check_zip(data, name=name)
        document = docx.Document(io.BytesIO(data))
        for item in document.iter_inner_content():
            if len(blocks) >= DOCX_BLOCKS or chars > convert.MAX_CHARS:
                cut.append(f"the rest of the document (after {chars:,} characters)")
                break
            if isinstance(item, Paragraph):
                style = (item.style.name if item.style is not None else "") or ""
                inner = _runs_html(item)
                chars += len(item.text)
                kind = "ol" if style.startswith("List Number") else ""
                kind = "ul" if style.startswith("List") and not kind else kind
                if open_list and kind != open_list:
                    blocks.append(f"</{open_list}>")
                    open_list = ""
                if kind:
                    if not open_list:
                        blocks.append(f"<{kind}>")
                        open_list = kind
                    blocks.append(f"<li>{inner}</li>")
                    continue
                if not item.text.strip():
                    continue
                level = style.removeprefix("Heading ")
                if style == "Title":
                    blocks.append(f"<h3>{inner}</h3>")
                elif level != style and level.isdigit():
                    blocks.append(f"<h{min(int(level) + 3, 6)}>{inner}</h{min(int(level) + 3, 6)}>")
                else:
                    blocks.append(f"<p>{inner}</p>")
            elif isinstance(item, Table):
                if open_list:
                    blocks.append(f"</{open_list}>")
                    open_list = ""
                rows = []
                for row in item.rows:
                    cells = "".join(f"<td>{escape(cell.text.strip())}</td>" for cell in row.cells)
                    chars += sum(len(cell.text) for cell in row.cells)
                    rows.append(f"<tr>{cells}</tr>")
                blocks.append(f'<table class="docx-table"><tbody>{"".join(rows)}</tbody></table>')
        if open_list:
            blocks.append(f"</{open_list}>")
    except uploads.UploadRefused as exc:
        raise FileRefused("; ".join(exc.messages)) from None
    except (KeyError, ValueError, OSError) as exc:
        raise FileRefused(f"'{name}' is not a readable Word document ({exc}).") from None
    html = nh3.clean(
        "".join(blocks),
        tags=DOCX_TAGS,
        attributes={"span": {"class", "title"}, "table": {"class"}},
        url_schemes=set(),
    )
    return html, cut


@dataclass(frozen=True)
class Slide:
    number: int
    texts: list[str]
    tables: list[list[list[str]]]
    notes: str


def pptx_slides(ref: FileRef) -> tuple[list[Slide], list[str]]:
    """The text of each slide of a stored deck (its tables, its notes), and what was cut;
    made once and kept."""
    path = f"{_folder(ref.sha256)}/slides.json"
    try:
        with default_storage.open(path, "rb") as handle:
            raw = json.loads(handle.read())
        return [Slide(**s) for s in raw["slides"]], raw["cut"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        pass
    slides, cut = read_slides(read(ref.sha256), name=ref.name)
    if not default_storage.exists(path):
        body = {"slides": [asdict(s) for s in slides], "cut": cut}
        default_storage.save(path, ContentFile(json.dumps(body).encode()))
    return slides, cut


def read_slides(data: bytes, *, name: str = "file.pptx") -> tuple[list[Slide], list[str]]:
    from pptx import Presentation

    from rubrics import uploads

    slides: list[Slide] = []
    cut: list[str] = []
    chars = 0
    try:
        uploads.check_zip(data, name=name)
        deck = Presentation(io.BytesIO(data))
        for number, slide in enumerate(deck.slides, 1):
            if chars > convert.MAX_CHARS:
                cut.append(f"slides {number}-{len(deck.slides)} (after {chars:,} characters)")
                break
            texts, tables = [], []
            for shape in slide.shapes:
                if shape.has_text_frame and shape.text_frame.text.strip():
                    texts.append(shape.text_frame.text.strip())
                if getattr(shape, "has_table", False) and shape.has_table:
                    tables.append([[c.text.strip() for c in row.cells] for row in shape.table.rows])
            notes = ""
            if slide.has_notes_slide:
                notes = slide.notes_slide.notes_text_frame.text.strip()
            chars += sum(map(len, texts)) + len(notes)
            slides.append(Slide(number, texts, tables, notes))
    except uploads.UploadRefused as exc:
        raise FileRefused("; ".join(exc.messages)) from None
    except (KeyError, ValueError, OSError) as exc:
        raise FileRefused(f"'{name}' is not a readable PowerPoint deck ({exc}).") from None
    return slides, cut


# --- One door for pages -----------------------------------------------------------------------


def describe(ref: FileRef, *, sheet: int = 0) -> dict:
    """What the preview fragment shows of a stored document (rubrics/_file_preview.html#body):
    the kind and what to draw, or an `error` saying why the file cannot be shown."""
    out: dict = {"ref": ref, "kind": ref.kind, "cut": []}
    try:
        if ref.kind == "pdf":
            pages = pdf_pages(ref)
            out.update(pages=pages.pages, total=pages.total, cut=pages.cut)
        elif ref.kind in ("xlsx", "csv"):
            names = sheet_names(ref)
            if not names:
                out.update(sheets=[], table=None)
                return out
            if not 0 <= sheet < len(names):
                raise FileRefused(f"'{ref.name}' has no sheet {sheet + 1}.")
            table = sheet_table(ref, sheet)
            out.update(sheets=list(enumerate(names)), sheet=sheet, table=table, cut=table.cut)
        elif ref.kind == "docx":
            html, cut = docx_html(ref)
            out.update(html=html, cut=cut)
        elif ref.kind == "pptx":
            slides, cut = pptx_slides(ref)
            out.update(slides=slides, cut=cut)
    except FileRefused as exc:
        out["error"] = str(exc)
    except FileNotFoundError:
        out["error"] = f"'{ref.name}' is missing from storage."
    return out
