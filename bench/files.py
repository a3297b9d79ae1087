"""Files: conversion throughput per file type, and the import of 10,000 responses that carry
files from one zip bundle.

Conversion (rubrics.files.convert, no cache): a 10-page PDF, a DOCX memo, an XLSX of 1,000
cells, a CSV of 1,000 cells, a 10-slide PPTX, and the re-encoding of a 1200x800 PNG
(rubrics.files.images), each for about `--seconds`; files/s and MB/s of input.

Import (annotation.services.responses_import_file, the one door): a zip holding
responses.jsonl and the files; each response carries one small XLSX or PNG, most of them
drawn from a shared pool, one in `--unique-every` its own. Seconds, responses/s, the files
stored. Prints one JSON line.
    .venv/bin/python bench/files.py [--responses N] [--seconds S]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
import zipfile

from _django import ROOT, emit, log, peak_rss_mb, setup


def make_pdf(pages: int = 10) -> bytes:
    from fpdf import FPDF

    doc = FPDF()
    doc.set_font("helvetica", size=11)
    for n in range(pages):
        doc.add_page()
        for line in range(40):
            doc.cell(
                text=f"Page {n + 1}, line {line + 1}: leverage falls from 6.0x to 4.0x by year 3.",
                new_x="LMARGIN",
                new_y="NEXT",
            )
    return bytes(doc.output())


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Investment memo", 1)
    for n in range(40):
        document.add_paragraph(f"Paragraph {n + 1}: the senior tranche amortises over 7 years.")
    table = document.add_table(rows=10, cols=4)
    for r, row in enumerate(table.rows):
        for c, cell in enumerate(row.cells):
            cell.text = f"{r}:{c}"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_xlsx(rows: int = 100, cols: int = 10, seed: int = 0) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            sheet.cell(row=r, column=c, value=(r * 31 + c * 7 + seed) % 9973)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def make_csv(rows: int = 100, cols: int = 10) -> bytes:
    lines = [",".join(str((r * 31 + c * 7) % 9973) for c in range(cols)) for r in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def make_pptx(slides: int = 10) -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    for n in range(slides):
        slide = deck.slides.add_slide(deck.slide_layouts[5])
        slide.shapes.title.text = f"Slide {n + 1}: debt schedule"
        box = slide.shapes.add_textbox(Inches(1), Inches(2), Inches(8), Inches(3))
        box.text_frame.text = "Senior 1,250,000; mezzanine 400,000; equity 900,000."
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def make_png(width: int = 1200, height: int = 800, seed: int = 0, alpha: bool = True) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGBA" if alpha else "RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    rng = random.Random(seed)
    for i in range(24):
        top = rng.randint(50, height - 60)
        x = 40 + i * (width - 80) // 24
        draw.rectangle((x, top, x + (width - 80) // 30, height - 40), fill=(30, 90, 160))
    draw.text((40, 10), f"chart {seed}", fill=(0, 0, 0))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def throughput(label: str, data: bytes, work, seconds: float) -> dict:
    work()  # warm: imports, caches
    count, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        work()
        count += 1
    elapsed = time.monotonic() - started
    figures = {
        "bytes": len(data),
        "files_per_s": round(count / elapsed, 1),
        "mb_per_s": round(count * len(data) / elapsed / 1e6, 2),
    }
    log(f"{label}: {figures}")
    return figures


def conversions(seconds: float) -> dict:
    from rubrics.files import convert, images

    samples = {
        "pdf_10_pages": (make_pdf(), "deal.pdf"),
        "docx": (make_docx(), "memo.docx"),
        "xlsx_1000_cells": (make_xlsx(), "schedule.xlsx"),
        "csv_1000_cells": (make_csv(), "schedule.csv"),
        "pptx_10_slides": (make_pptx(), "deck.pptx"),
    }
    out = {}
    for label, (data, name) in samples.items():
        out[label] = throughput(
            label, data, lambda d=data, n=name: convert.convert(d, name=n), seconds
        )
    png = make_png()
    out["png_reencode_1200x800"] = throughput(
        "png", png, lambda: images.reencode(png, name="chart.png"), seconds
    )
    return out


def make_bundle(path, responses: int, tasks: int, pool: int, unique_every: int) -> dict:
    """A zip of responses.jsonl and the files: a shared pool of `pool` XLSX and `pool` PNG
    files, and one unique file per `unique_every` responses."""
    rng = random.Random(11)
    files: dict[str, bytes] = {}
    for i in range(pool):
        files[f"shared/schedule-{i}.xlsx"] = make_xlsx(rows=10, cols=5, seed=i)
        files[f"shared/chart-{i}.png"] = make_png(320, 200, seed=i)
    lines = []
    for n in range(responses):
        if n % unique_every == 0:
            name = f"unique/r{n}." + ("xlsx" if n % 2 else "png")
            files[name] = (
                make_xlsx(rows=10, cols=5, seed=10_000 + n)
                if name.endswith("xlsx")
                else make_png(320, 200, seed=10_000 + n)
            )
        else:
            name = f"shared/{rng.choice(['schedule', 'chart'])}-{rng.randrange(pool)}." + "x"
            name = name[:-1] + ("xlsx" if "schedule" in name else "png")
        row = {
            "task_id": f"task-{n % tasks:04d}",
            "model": f"model-{n // tasks % 4}",
            "sample_index": n // (tasks * 4),
            "response": f"The schedule is attached (response {n}).",
            "files": [name],
        }
        lines.append(json.dumps(row))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("responses.jsonl", "\n".join(lines) + "\n")
        for name, data in files.items():
            archive.writestr(name, data)
    return {"bundle_files": len(files), "bundle_mb": round(path.stat().st_size / 1e6, 1)}


def import_bundle(responses: int, tasks: int, pool: int, unique_every: int) -> dict:
    from django.db import connection

    from annotation import services
    from rubrics.models import Project, StoredFile, Task

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE annotation_response, rubrics_task, rubrics_project CASCADE")
    project = Project.objects.create(name="bench files", slug="bench-files")
    Task.objects.bulk_create(
        Task(
            project=project,
            external_id=f"task-{i:04d}",
            title=f"Task {i}",
            messages=[{"role": "user", "content": "Build the schedule."}],
        )
        for i in range(tasks)
    )
    path = ROOT / "var" / "bench" / f"files-bundle-{responses}-{pool}-{unique_every}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    log(f"writing {responses:,} responses and their files to {path}")
    figures = make_bundle(path, responses, tasks, pool, unique_every)
    started, cpu = time.monotonic(), time.process_time()
    with path.open("rb") as upload:
        result = services.responses_import_file(project=project, upload=upload, filename=path.name)
    seconds = time.monotonic() - started
    assert result.ok, [str(e) for e in result.errors[:5]]
    log(f"imported {result.created:,} responses in {seconds:.1f} s")
    figures.update(
        {
            "responses": responses,
            "created": result.created,
            "seconds": round(seconds, 2),
            "responses_per_s": round(responses / seconds),
            "python_cpu_seconds": round(time.process_time() - cpu, 1),
            "stored_files": StoredFile.objects.filter(project=project).count(),
        }
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--responses", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--pool", type=int, default=50, help="shared XLSX and PNG files, each")
    parser.add_argument("--unique-every", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=2.0, help="per conversion")
    args = parser.parse_args()
    setup("assay_bench_files")
    figures = {"conversion": conversions(args.seconds)}
    figures["import"] = import_bundle(args.responses, args.tasks, args.pool, args.unique_every)
    figures["peak_rss_mb"] = round(peak_rss_mb())
    emit("files", figures)


if __name__ == "__main__":
    main()
