"""Which format a file of responses is, from its first bytes and then its name."""

from __future__ import annotations

import re
import zipfile

from rubrics import uploads

FORMATS = ("jsonl", "parquet", "inspect", "otel", "bundle")
DESCRIBED = {
    "jsonl": "response rows as JSON lines",
    "parquet": "response rows in Parquet",
    "inspect": "an inspect-ai eval log (.eval or .json)",
    "otel": "OpenTelemetry GenAI spans as JSON (OTLP resourceSpans, or a list of spans)",
    "bundle": "a bundle (.zip, .tar, .tar.gz) of response rows and the files they name",
}
# What an inspect-ai .eval log (a zip) holds at its top; any other zip is a bundle.
_INSPECT_PARTS = ("header.json", "_journal/start.json")
# An inspect-ai JSON log opens with its version and status, pretty-printed; a JSONL row of
# responses is one line.
_INSPECT_JSON = re.compile(rb'\A\s*\{\s*"version"\s*:\s*\d+\s*,\s*"status"\s*:')
_OTLP = re.compile(rb'\A\s*\{\s*"resource_?[sS]pans"\s*:')
# One span as the Python SDK's span.to_json() writes it (pretty-printed, name then context).
_SDK_SPAN = re.compile(rb'\A\s*\{\s*"name"\s*:\s*"(?:[^"\\]|\\.)*"\s*,\s*"context"\s*:')


def detect(upload, *, name: str) -> str:
    """jsonl, parquet, inspect, otel or bundle: magic bytes first (Parquet; a zip is an .eval
    log when named so or holding its parts, else a bundle, as are tar and gzip),
    then the opening of a JSON document, then the file's extension; JSON lines otherwise."""
    head = uploads.head_of(upload)
    upload.seek(0)
    lower = name.lower()
    if head[:4] == uploads.PARQUET_MAGIC:
        return "parquet"
    if head[:4] == uploads.ZIP_MAGIC:
        return "inspect" if lower.endswith(".eval") or _inspect_zip(upload) else "bundle"
    if head[:2] == b"\x1f\x8b" or head[257:262] == b"ustar":
        return "bundle"
    if _INSPECT_JSON.match(head):
        return "inspect"
    if _OTLP.match(head) or _SDK_SPAN.match(head) or head.lstrip()[:1] == b"[":
        return "otel"
    if lower.endswith(".eval"):
        return "inspect"
    if lower.endswith(".parquet"):
        return "parquet"
    return "jsonl"


def _inspect_zip(upload) -> bool:
    try:
        names = set(zipfile.ZipFile(upload).namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return True  # the inspect reader names what is wrong with it
    finally:
        upload.seek(0)
    return any(part in names for part in _INSPECT_PARTS)
