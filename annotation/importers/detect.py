"""Which format a file of responses is, from its first bytes and then its name."""

from __future__ import annotations

import re

from rubrics import uploads

FORMATS = ("jsonl", "parquet", "inspect", "otel")
DESCRIBED = {
    "jsonl": "response rows as JSON lines",
    "parquet": "response rows in Parquet",
    "inspect": "an inspect-ai eval log (.eval or .json)",
    "otel": "OpenTelemetry GenAI spans as JSON (OTLP resourceSpans, or a list of spans)",
}
# An inspect-ai JSON log opens with its version and status, pretty-printed; a JSONL row of
# responses is one line.
_INSPECT_JSON = re.compile(rb'\A\s*\{\s*"version"\s*:\s*\d+\s*,\s*"status"\s*:')
_OTLP = re.compile(rb'\A\s*\{\s*"resource_?[sS]pans"\s*:')
# One span as the Python SDK's span.to_json() writes it (pretty-printed, name then context).
_SDK_SPAN = re.compile(rb'\A\s*\{\s*"name"\s*:\s*"(?:[^"\\]|\\.)*"\s*,\s*"context"\s*:')


def detect(upload, *, name: str) -> str:
    """jsonl, parquet, inspect or otel: magic bytes first (Parquet, a zip is an .eval log),
    then the opening of a JSON document, then the file's extension; JSON lines otherwise."""
    head = uploads.head_of(upload)
    upload.seek(0)
    lower = name.lower()
    if head[:4] == uploads.PARQUET_MAGIC:
        return "parquet"
    if head[:4] == uploads.ZIP_MAGIC:
        return "inspect"
    if _INSPECT_JSON.match(head):
        return "inspect"
    if _OTLP.match(head) or _SDK_SPAN.match(head) or head.lstrip()[:1] == b"[":
        return "otel"
    if lower.endswith(".eval"):
        return "inspect"
    if lower.endswith(".parquet"):
        return "parquet"
    return "jsonl"
