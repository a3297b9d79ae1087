"""Files as judges and pages read them (rubrics.files): each kind made by its own
library, sniffed from its bytes, converted within its limits, and refused when hostile."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from rubrics.files import convert, images
from rubrics.files.sniff import FileRefused, safe_name, sniff


def make_pdf(pages: list[str]) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Investment memo: Harbor Logistics", level=1)
    document.add_paragraph("We recommend a buy at an entry multiple of 7.5x EBITDA.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Metric", "Value"
    table.cell(1, 0).text, table.cell(1, 1).text = "Leverage", "4.2x"
    document.add_paragraph("<script>alert(1)</script> stays text.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_xlsx() -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Debt schedule"
    sheet.append(["Year", "Opening", "Repayment", "Closing"])
    sheet.append([2027, 1_200_000, 150_000, 1_050_000])
    sheet.append([2028, 1_050_000, 150_000, "=B3-C3"])
    book.create_sheet("Notes")["A1"] = "Senior term loan"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def make_pptx() -> bytes:
    from pptx import Presentation

    deck = Presentation()
    for title, body in (("Thesis", "Market leader in cold chain"), ("Risks", "Customer churn")):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    deck.slides[1].notes_slide.notes_text_frame.text = "Mention the 2026 renewal."
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def make_png(size=(40, 30), **info) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format="PNG", **info)
    return out.getvalue()


def test_kinds_come_from_the_bytes_not_the_name():
    assert sniff(make_pdf(["x"]), name="memo.docx").kind == "pdf"
    assert sniff(make_docx(), name="a.pdf").kind == "docx"
    assert sniff(make_xlsx()).kind == "xlsx"
    assert sniff(make_pptx()).kind == "pptx"
    assert sniff(make_png()).kind == "png"
    assert sniff(b"year,total\n2027,5\n", name="x.png").kind == "csv"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>x</script>',
         "SVG image, which can carry scripts"),
        (b"<!DOCTYPE html><html><script>alert(1)</script>", "HTML page"),
        (b"\x00\x01\x02binary", "its first bytes are binary"),
        (b"caf\xe9,1\n", "not UTF-8"),
    ],
)  # fmt: skip
def test_hostile_or_unknown_files_are_refused_by_name(data, words):
    with pytest.raises(FileRefused, match=words) as caught:
        sniff(data, name="../../etc/evil.bin")
    assert "'evil.bin'" in str(caught.value)  # the name is shown, never its folders


def test_a_zip_that_is_no_office_file_and_a_zip_bomb_are_refused():
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(FileRefused, match="not a Word, Excel or PowerPoint"):
        sniff(plain.getvalue(), name="x.docx")
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w/>" + " " * 300_000_000)
    with pytest.raises(FileRefused, match="unpacks to|expands"):
        sniff(bomb.getvalue(), name="bomb.docx")


def test_safe_names():
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\Users\\x\\memo<script>.pdf") == "memo_script_.pdf"
    assert safe_name("") == "file"
    assert len(safe_name("a" * 500 + ".xlsx")) == 120 and safe_name("a" * 500 + ".xlsx").endswith(
        ".xlsx"
    )


def test_pdf_text_by_page_and_the_page_limit_is_stated(monkeypatch):
    out = convert.convert(make_pdf(["Net leverage is 4.2x.", "IRR of 21%."]), name="m.pdf")
    assert out.kind == "pdf" and out.pages == 2 and not out.cut
    assert "[page 1]" in out.text and "Net leverage is 4.2x." in out.text
    assert "IRR of 21%." in out.text.split("[page 2]")[1]
    monkeypatch.setattr(convert, "PDF_MAX_PAGES", 1)
    short = convert.convert(make_pdf(["one", "two", "three"]), name="m.pdf")
    assert "two" not in short.text and short.cut == ["pages 2-3 (at most 1 are read)"]


def test_pdf_pages_render_as_reencoded_images_within_the_limit():
    rendered, cut = convert.pdf_pages(make_pdf(["a", "b", "c"]), limit=2)
    assert len(rendered) == 2 and cut == ["pages 3-3 not rendered (at most 2)"]
    page = Image.open(io.BytesIO(rendered[0].data))
    assert page.width == rendered[0].width > 500  # A4 at 100 dpi is 827 px wide
    with pytest.raises(FileRefused, match="not a readable PDF"):
        convert.convert(b"%PDF-1.7\n garbage", name="broken.pdf")


def test_docx_paragraphs_and_tables_in_order():
    out = convert.convert(make_docx(), name="memo.docx")
    lines = out.text.splitlines()
    assert lines[0] == "Investment memo: Harbor Logistics"
    assert "Leverage | 4.2x" in lines
    assert "<script>alert(1)</script> stays text." in lines  # text, for pages to escape


def test_xlsx_cells_by_address_with_saved_values():
    out = convert.convert(make_xlsx(), name="debt.xlsx")
    assert [s.name for s in out.sheets] == ["Debt schedule", "Notes"]
    assert ("B2", "1200000") in out.sheets[0].rows[1]
    # A formula openpyxl wrote has no computed value saved: it is never evaluated here.
    assert all(a != "D3" for a, _ in out.sheets[0].rows[2])
    assert "## Sheet 'Debt schedule'" in out.text and "A4=" not in out.text
    assert "A1=Senior term loan" in out.text


def test_cell_limit_is_stated(monkeypatch):
    monkeypatch.setattr(convert, "MAX_CELLS", 5)
    out = convert.convert(make_xlsx(), name="debt.xlsx")
    assert out.cut == ["cells after 5 (from sheet 'Debt schedule' row 2)"]
    table = convert.convert(b"a,b,c\n1,2,3\n4,5,6\n", name="t.csv")
    assert table.cut == ["cells after 5 (from row 2)"]


def test_csv_is_addressed_like_a_sheet():
    out = convert.convert(b"year,total\n2027,5\n", name="t.csv")
    assert out.sheets[0].rows == [[("A1", "year"), ("B1", "total")], [("A2", "2027"), ("B2", "5")]]


def test_pptx_text_per_slide_with_notes():
    out = convert.convert(make_pptx(), name="deck.pptx")
    assert out.pages == 2
    first, second = out.text.split("\n\n")
    assert first.startswith("[slide 1]") and "Market leader in cold chain" in first
    assert "notes: Mention the 2026 renewal." in second


def test_images_are_reencoded_without_metadata_and_scaled():
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    out = io.BytesIO()
    Image.new("RGB", (4000, 1000), (10, 20, 30)).save(out, format="JPEG", exif=exif.tobytes())
    again = images.reencode(out.getvalue(), name="photo.jpg")
    assert (again.width, again.height) == (2048, 512)
    assert not Image.open(io.BytesIO(again.data)).getexif()
    assert images.reencode(make_png(), name="x.png").mime == "image/jpeg"


def test_decompression_bombs_and_non_images_are_refused():
    big = io.BytesIO()
    Image.new("1", (8000, 8000)).save(big, format="PNG")  # 64 Mpx in a few kB
    assert len(big.getvalue()) < 100_000
    with pytest.raises(FileRefused, match="larger than 40,000,000 pixels"):
        images.reencode(big.getvalue(), name="bomb.png")
    gif = io.BytesIO()
    Image.new("RGB", (4, 4)).save(gif, format="GIF")
    with pytest.raises(FileRefused, match="GIF image; send PNG, JPEG or WebP"):
        images.reencode(gif.getvalue(), name="a.gif")
    with pytest.raises(FileRefused, match="not a readable image"):
        images.reencode(b"\x89PNG\r\n\x1a\nnot really", name="fake.png")
