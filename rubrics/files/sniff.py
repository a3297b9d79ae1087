"""What a file is, from its first bytes and (for zips) its member names; never from its name.

Kinds: png, jpeg, webp (images); pdf; docx, xlsx, pptx (office zips, checked for bombs by
`rubrics.uploads.check_zip` before anything unpacks them); csv (UTF-8 text). SVG is refused:
it is a document that can carry scripts, not a picture.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass

from rubrics import uploads

IMAGE_KINDS = ("png", "jpeg", "webp")
DOCUMENT_KINDS = ("pdf", "docx", "xlsx", "pptx", "csv")
KINDS = IMAGE_KINDS + DOCUMENT_KINDS
MIME = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "csv": "text/csv",
}
# The part that makes an office zip what it is.
OFFICE_PARTS = {
    "docx": "word/document.xml",
    "xlsx": "xl/workbook.xml",
    "pptx": "ppt/presentation.xml",
}
SVG = re.compile(
    rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*(<!doctype svg[^>]*>\s*)?<svg\b", re.I | re.S
)
NAME_CHARS = re.compile(r"[^A-Za-z0-9._ -]+")
MAX_NAME = 120


class FileRefused(ValueError):
    """A file Assay will not take, and why, in words that name it."""


@dataclass(frozen=True)
class Sniffed:
    kind: str
    mime: str

    @property
    def is_image(self) -> bool:
        return self.kind in IMAGE_KINDS


def safe_name(name: str) -> str:
    """A file name fit to show and to send as a download: no folders, no control or
    path characters, at most MAX_NAME characters, never empty."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = NAME_CHARS.sub("_", base).strip(" .") or "file"
    if len(base) > MAX_NAME:
        stem, dot, ext = base.rpartition(".")
        base = (
            (stem[: MAX_NAME - len(ext) - 1] + dot + ext)
            if dot and len(ext) <= 10
            else base[:MAX_NAME]
        )
    return base


def sniff(data: bytes, *, name: str = "file") -> Sniffed:
    """The file's kind, or FileRefused saying what it is instead."""
    label = safe_name(name)
    head = data[:512]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("png", MIME["png"])
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("jpeg", MIME["jpeg"])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed("webp", MIME["webp"])
    if head.startswith(b"%PDF-"):
        return Sniffed("pdf", MIME["pdf"])
    if SVG.match(head.lstrip(b"\xef\xbb\xbf")):
        raise FileRefused(
            f"'{label}' is an SVG image, which can carry scripts: send it as PNG or JPEG."
        )
    if head.startswith(uploads.ZIP_MAGIC):
        kind = _office_kind(data, label)
        return Sniffed(kind, MIME[kind])
    if b"\x00" in head:
        raise FileRefused(
            f"'{label}' is not a file type Assay reads ({', '.join(KINDS)}); "
            "its first bytes are binary."
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileRefused(f"'{label}' is text but not UTF-8; save it as UTF-8 CSV.") from None
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html", b"<script")):
        raise FileRefused(f"'{label}' is an HTML page, not a deliverable Assay reads.")
    return Sniffed("csv", MIME["csv"])


def _office_kind(data: bytes, label: str) -> str:
    try:
        names = {m.filename for m in zipfile.ZipFile(io.BytesIO(data)).infolist()}
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FileRefused(f"'{label}' is not a readable zip archive ({exc}).") from None
    for kind, part in OFFICE_PARTS.items():
        if part in names and "[Content_Types].xml" in names:
            try:
                uploads.check_zip(data, name=label)
            except uploads.UploadRefused as exc:
                raise FileRefused(str(exc)) from None
            return kind
    raise FileRefused(
        f"'{label}' is a zip archive but not a Word, Excel or PowerPoint file "
        "(no document part inside)."
    )
