"""Files made with their own libraries, and a response whose episode carries them, for the
preview tests (tests/test_file_previews.py, tests/test_file_previews_browser.py) and the
annotation benchmark."""

from __future__ import annotations

import base64
import io

from annotation.content.episode import Episode
from annotation.content.intake import ProjectIntake
from annotation.models import Response
from tests import factories


def make_pdf(pages: list[str] | int, *, javascript: str = "") -> bytes:
    """A PDF of the given page texts (or that many numbered pages), made by fpdf2; with
    `javascript`, pypdf adds it as the document's /OpenAction."""
    from fpdf import FPDF

    texts = (
        [f"Page {n} of the deal book." for n in range(1, pages + 1)]
        if isinstance(pages, int)
        else pages
    )
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in texts:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    data = bytes(pdf.output())
    if javascript:
        from pypdf import PdfWriter
        from pypdf.actions import JavaScript

        writer = PdfWriter(clone_from=io.BytesIO(data))
        writer.add_open_action(JavaScript(javascript))
        out = io.BytesIO()
        writer.write(out)
        data = out.getvalue()
    return data


def make_docx(paragraphs=(), *, link: tuple[str, str] | None = None) -> bytes:
    import docx
    from docx.opc.constants import RELATIONSHIP_TYPE
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    document = docx.Document()
    document.add_heading("Investment memo: Harbor Logistics", level=1)
    p = document.add_paragraph("We recommend a ")
    p.add_run("buy").bold = True
    p.add_run(" at ")
    p.add_run("7.5x").italic = True
    p.add_run(" EBITDA.")
    document.add_paragraph("Leverage under 4.5x", style="List Bullet")
    document.add_paragraph("Covenants tested quarterly", style="List Bullet")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Metric", "Value"
    table.cell(1, 0).text, table.cell(1, 1).text = "Leverage", "4.2x"
    for text in paragraphs:
        document.add_paragraph(text)
    if link:
        text, url = link
        paragraph = document.add_paragraph("See ")
        rel = paragraph.part.relate_to(url, RELATIONSHIP_TYPE.HYPERLINK, is_external=True)
        hyperlink = OxmlElement("w:hyperlink")
        hyperlink.set(qn("r:id"), rel)
        run = OxmlElement("w:r")
        t = OxmlElement("w:t")
        t.text = text
        run.append(t)
        hyperlink.append(run)
        paragraph._p.append(hyperlink)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_xlsx(extra: dict[str, str] | None = None) -> bytes:
    """A debt schedule; `extra` cells (address -> text) are written as text, even those that
    start with '=' (a formula string Excel would show, never one evaluated here)."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Debt schedule"
    sheet.append(["Year", "Opening", "Repayment", "Closing"])
    sheet.append([2027, 1_200_000, 150_000, 1_050_000])
    sheet.append([2028, 1_050_000, 150_000, 900_000])
    for address, text in (extra or {}).items():
        sheet[address] = text
        sheet[address].data_type = "s"
    book.create_sheet("Notes")["B2"] = "Senior term loan"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def make_pptx(texts=("Market leader in cold chain",)) -> bytes:
    from pptx import Presentation

    deck = Presentation()
    for number, body in enumerate(texts, 1):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = f"Slide title {number}"
        slide.placeholders[1].text = body
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def make_png(size=(64, 48), text: dict[str, str] | None = None) -> bytes:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGBA", size, (20, 120, 200, 255)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def data_uri(data: bytes, mime: str = "application/octet-stream") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def file_part(name: str, data: bytes) -> dict:
    if name.endswith(".png"):
        return {"type": "image_url", "image_url": {"url": data_uri(data, "image/png")}}
    return {"type": "file", "file": {"filename": name, "file_data": data_uri(data)}}


def response_with_files(
    project, task, files: list[tuple[str, bytes]], *, model="secret-model-x", before=()
):
    """A response to `task` whose last assistant message carries `files` (after the messages
    `before`), stored for `project` through its intake, as an import would."""
    value = [
        *before,
        {"role": "user", "content": "Send the deliverables."},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Here they are."}]
            + [file_part(name, data) for name, data in files],
        },
    ]
    episode = Episode.parse(value, files=ProjectIntake(project))
    return Response.objects.create(
        task=task, model=model, text=episode.final_text, content=episode.stored()
    )


def annotation_world(personas, files: list[tuple[str, bytes]], *, external_id: str = "deal"):
    """A published rubric, a response carrying `files`, and a queue whose annotator holds the
    item: (response, assignment)."""
    from annotation import services as annotation_services

    p = personas
    task = factories.make_task(p.project, external_id, prompt="Build the debt schedule.")
    grader = factories.make_published_rubric(
        p.project, task, [("Closing balance is right", 2), ("Memo states leverage", 1)], p.admin
    )
    response = response_with_files(p.project, task, files)
    queue = factories.make_queue(p.project, grader, [p.annotator], p.admin, overlap=1)
    assignment = annotation_services.assignment_claim(queue=queue, user=p.annotator)
    return response, assignment
