"""The child process that renders a PDF's pages for previews (`rubrics.files.preview`), so a
hostile PDF is bounded in time (the parent kills this process at its deadline) and in memory
(its address space is capped here) without taking a web worker with it.

    python -m rubrics.files.render_pdf OUTDIR LIMIT MAX_BYTES < file.pdf

writes OUTDIR/total (the page count), then OUTDIR/page-<n>.png for each page rendered, each
renamed into place once whole, so the pages found after a kill are complete. A PDF PDFium
cannot read leaves OUTDIR/error with the reason, and exits 2.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    out, limit, max_bytes = Path(argv[0]), int(argv[1]), int(argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    from rubrics.files.convert import pdf_page_pngs
    from rubrics.files.sniff import FileRefused

    data = sys.stdin.buffer.read()
    try:
        renders = pdf_page_pngs(data, name="file.pdf", limit=limit)
        (out / "total").write_text(str(next(renders)))
        for number, png in enumerate(renders, 1):
            part = out / f".page-{number}.png"
            part.write_bytes(png)
            part.rename(out / f"page-{number}.png")
    except FileRefused as exc:
        (out / "error").write_text(str(exc))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
