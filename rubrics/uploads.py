"""Checks every uploaded file passes before its rows are read: size, type by content, zip and
Parquet bombs, JSON nesting, and text the database cannot store.

Each check raises `UploadRefused` (a ValidationError keyed by the field at fault) whose message
names the file and the limit; `status` is 413 for a file over its size limit, 400 otherwise.
The importers (rubrics.formats, rubrics.task_import, annotation.services) call these before
they write anything, so a refused file leaves nothing behind. Limits are settings
(ASSAY_*_MAX_*, README "Upload limits").
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError

UTF8_BOM = b"\xef\xbb\xbf"
PARQUET_MAGIC = b"PAR1"
ZIP_MAGIC = b"PK\x03\x04"
HEAD = 8192
XLSX_PARTS = ("[Content_Types].xml", "xl/workbook.xml")


class UploadRefused(ValidationError):
    def __init__(self, message: str, *, field: str = "file", status: int = 400):
        super().__init__({field: [message]})
        self.field = field
        self.status = status
        self.text = message


def megabytes(size: int) -> str:
    """A size as people read it: bytes, KB, MB or GB."""
    if size >= 1024**3:
        return f"{size / 1024**3:.1f} GB"
    if size >= 1024**2:
        return f"{size / 1024**2:.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size} bytes"


def size_of(upload) -> int:
    """The size of an uploaded file or an open file, without reading it."""
    size = getattr(upload, "size", None)
    if isinstance(size, int):
        return size
    try:
        return os.fstat(upload.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        position = upload.tell()
        upload.seek(0, os.SEEK_END)
        size = upload.tell()
        upload.seek(position)
        return size


def check_size(upload, *, name: str, limit: int, setting: str, what: str) -> int:
    size = size_of(upload)
    if size > limit:
        raise UploadRefused(
            f"'{name}' is {megabytes(size)}; {what} take files of at most {megabytes(limit)} "
            f"(the server's {setting}).",
            status=413,
        )
    if size == 0:
        raise UploadRefused(f"'{name}' is empty.")
    return size


def head_of(upload, n: int = HEAD) -> bytes:
    position = upload.tell()
    upload.seek(0)
    head = upload.read(n)
    upload.seek(position)
    return head


def kind_of(head: bytes) -> str:
    """What the first bytes say a file is: zip, parquet, utf-16, utf-32, binary or text."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    nuls = head.count(0)
    if nuls:
        # Text without a BOM in UTF-16 has a NUL beside every ASCII letter.
        even, odd = head[0::2], head[1::2]
        if even.count(0) > len(even) // 3 or odd.count(0) > len(odd) // 3:
            return "utf-16"
        if nuls > max(8, len(head) // 100):
            return "binary"
        # A stray NUL in text: the importer names its line.
    return "text"


DESCRIBED = {
    "zip": "a zip archive (an XLSX workbook?)",
    "parquet": "a Parquet file",
    "utf-16": "UTF-16 text",
    "utf-32": "UTF-32 text",
    "binary": "binary data (it holds NUL bytes)",
}


def check_text(upload, *, name: str, expected: str) -> None:
    """A text format (JSONL, JSON, CSV) must be UTF-8 text, not another format by mistake."""
    kind = kind_of(head_of(upload))
    if kind == "text":
        return
    hint = " Save it as UTF-8." if kind.startswith("utf-") else ""
    raise UploadRefused(f"'{name}' is {DESCRIBED[kind]}, not {expected}.{hint}")


# --- Text lines -----------------------------------------------------------------------------


def decoded_lines(lines: Iterable[bytes | str]) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text, problem): UTF-8 with an optional BOM on the first line; a line that
    does not decode gives None and the problem."""
    for number, raw in enumerate(lines, start=1):
        if isinstance(raw, bytes):
            if number == 1 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, None, f"not UTF-8 text (byte {exc.start + 1} of the line)"
                continue
        else:
            text = raw.removeprefix("\ufeff") if number == 1 else raw
        yield number, text, ""


# A JSON string (skipped whole) or one bracket; what the depth scan looks at. A string left
# open runs to the end of the text (json.loads refuses it anyway): were it a failed match,
# each quote inside it would start a scan to the end again, quadratic time on text such as
# '["\\"\\"\\...' (and possessive quantifiers never scan a character twice).
_TOKENS = re.compile(r'"(?:[^"\\]++|\\.?)*+(?:"|\Z)|[\[\]{}]', re.DOTALL)


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text`, without parsing it (no recursion)."""
    if text.count("[") + text.count("{") <= 1:
        return text.count("[") + text.count("{")
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        found = match.group()
        if found in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif found in "]}":
            depth -= 1
    return deepest


class JsonRefused(ValueError):
    pass


def loads(text: str, *, max_depth: int | None = None) -> object:
    """json.loads with a cap on nesting checked first, so a line like [[[[...]]]] 100,000 deep
    is a clear error instead of a RecursionError."""
    limit = settings.JSON_MAX_DEPTH if max_depth is None else max_depth
    if text.count("[") + text.count("{") > limit and json_depth(text) > limit:
        raise JsonRefused(f"nested too deeply (more than {limit} levels of arrays and objects)")
    try:
        return json.loads(text)
    except RecursionError:
        raise JsonRefused(f"nested too deeply (more than {limit} levels)") from None
    except json.JSONDecodeError as exc:
        raise JsonRefused(f"not valid JSON ({exc.msg} at column {exc.colno})") from None


def _is_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def text_problem(value: object, path: str = "") -> tuple[str, str] | None:
    """(where, what) for the first string the database cannot store: a NUL character, which
    PostgreSQL refuses in text and JSON, or a lone surrogate such as "\\ud800", which is not
    Unicode text at all. Keys count as well as values."""
    if isinstance(value, str):
        if "\x00" in value:
            return path, "contains a NUL character (\\u0000), which cannot be stored"
        if _is_lone_surrogate(value):
            return path, "contains a lone surrogate (such as \\ud800), which is not valid Unicode"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            found = text_problem(key, where) if isinstance(key, str) else None
            found = found or text_problem(item, where)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = text_problem(item, f"{path}[{i}]")
            if found:
                return found
    return None


def row_text_problem(raw: str, row: object) -> tuple[str, str] | None:
    """`text_problem` for a parsed JSON line, skipped when the raw text cannot hold either
    (the common case on million-row files)."""
    if "\\u" not in raw and "\x00" not in raw:
        return None
    return text_problem(row)


# --- XLSX -----------------------------------------------------------------------------------


def check_xlsx(data: bytes, *, name: str) -> None:
    """An XLSX is a zip with a workbook inside; refuse bombs before openpyxl unpacks anything."""
    kind = kind_of(data[:HEAD])
    if kind != "zip":
        described = DESCRIBED.get(kind, "text")
        raise UploadRefused(f"'{name}' is {described}, not an XLSX workbook (a zip archive).")
    check_zip(data, name=name, parts=XLSX_PARTS, what="an XLSX workbook", plural="workbooks")


@dataclass(frozen=True)
class ArchiveLimits:
    """How far a zip may unpack: members, bytes unpacked, expansion of a large member, each
    with the setting that sets it (named in refusals)."""

    members: int
    unpacked: int
    ratio: int
    prefix: str  # ASSAY_XLSX or ASSAY_BUNDLE: the settings are <prefix>_MAX_MEMBERS, ...


def office_limits() -> ArchiveLimits:
    return ArchiveLimits(
        settings.XLSX_MAX_MEMBERS,
        settings.XLSX_MAX_UNPACKED_BYTES,
        settings.XLSX_MAX_RATIO,
        "ASSAY_XLSX",
    )


def bundle_limits() -> ArchiveLimits:
    return ArchiveLimits(
        settings.BUNDLE_MAX_MEMBERS,
        settings.BUNDLE_MAX_UNPACKED_BYTES,
        settings.BUNDLE_MAX_RATIO,
        "ASSAY_BUNDLE",
    )


def check_zip(
    data,
    *,
    name: str,
    parts=(),
    what: str = "an office file",
    plural: str = "files",
    limits: ArchiveLimits | None = None,
) -> list[zipfile.ZipInfo]:
    """A zip (`data`: its bytes, a seekable file or an open ZipFile) that holds `parts` and
    is no bomb: at most `limits.members` members (ASSAY_XLSX_MAX_MEMBERS for office files),
    unpacking to at most `limits.unpacked` bytes, no large member expanding more than
    `limits.ratio` times.
    Nothing is unpacked here; returns the members."""
    limits = limits or office_limits()
    try:
        if isinstance(data, zipfile.ZipFile):
            archive = data
        else:
            source = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
            archive = zipfile.ZipFile(source)
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadRefused(f"'{name}' is not a readable zip archive ({exc}).") from None
    if len(members) > limits.members:
        raise UploadRefused(
            f"'{name}' holds {len(members):,} parts; {plural} of at most {limits.members:,} "
            f"parts are accepted ({limits.prefix}_MAX_MEMBERS)."
        )
    names = {m.filename for m in members}
    missing = [part for part in parts if part not in names]
    if missing:
        raise UploadRefused(f"'{name}' is a zip archive but not {what} (no {', '.join(missing)}).")
    unpacked = sum(m.file_size for m in members)
    if unpacked > limits.unpacked:
        raise UploadRefused(
            f"'{name}' unpacks to {megabytes(unpacked)}; {plural} may unpack to at most "
            f"{megabytes(limits.unpacked)} ({limits.prefix}_MAX_UNPACKED_BYTES).",
            status=413,
        )
    for m in members:
        expands = m.file_size // max(m.compress_size, 1)
        if m.file_size > 1024 * 1024 and expands > limits.ratio:
            raise UploadRefused(
                f"'{name}': the part {m.filename} expands {expands:,} times; at most "
                f"{limits.ratio} times is accepted ({limits.prefix}_MAX_RATIO). "
                "It looks like a zip bomb."
            )
    return members


# --- Parquet --------------------------------------------------------------------------------


def parquet_file(upload, *, name: str, columns: Iterable[str]):
    """A pyarrow ParquetFile whose footer was checked: the magic bytes at both ends, the rows
    and unpacked size it declares, and its columns (only `columns`), before a row is read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    head = head_of(upload, 4)
    upload.seek(0, os.SEEK_END)
    size = upload.tell()
    upload.seek(max(size - 4, 0))
    tail = upload.read(4)
    upload.seek(0)
    if head == PARQUET_MAGIC and tail != PARQUET_MAGIC:
        raise UploadRefused(f"'{name}' is not a readable Parquet file (truncated: no footer).")
    if head != PARQUET_MAGIC:
        what = DESCRIBED.get(kind_of(head_of(upload)), "text")
        raise UploadRefused(f"'{name}' is {what}, not a Parquet file.")
    try:
        reader = pq.ParquetFile(upload)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UploadRefused(f"'{name}' is not a readable Parquet file ({exc}).") from None
    meta = reader.metadata
    limit = settings.PARQUET_MAX_ROWS
    if meta.num_rows > limit or meta.num_rows < 0:
        raise UploadRefused(
            f"'{name}' declares {meta.num_rows:,} rows; at most {limit:,} are accepted "
            "(ASSAY_PARQUET_MAX_ROWS).",
            status=413,
        )
    groups = [meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)]
    # pyarrow decodes a row group's columns whole, so the largest group bounds the memory.
    limit = settings.PARQUET_MAX_ROW_GROUP_BYTES
    if groups and (max(groups) > limit or min(groups) < 0):
        raise UploadRefused(
            f"'{name}' has a row group of {megabytes(max(groups))}; at most {megabytes(limit)} "
            "is accepted (ASSAY_PARQUET_MAX_ROW_GROUP_BYTES): write it with smaller row groups.",
            status=413,
        )
    unpacked = sum(groups)
    limit = settings.PARQUET_MAX_UNPACKED_BYTES
    if unpacked > limit or unpacked < 0:
        raise UploadRefused(
            f"'{name}' declares {megabytes(unpacked)} of data; at most {megabytes(limit)} is "
            "accepted (ASSAY_PARQUET_MAX_UNPACKED_BYTES).",
            status=413,
        )
    allowed = list(columns)
    unexpected = [c for c in reader.schema_arrow.names if c not in allowed]
    if unexpected:
        raise UploadRefused(
            f"'{name}': unexpected column(s) {', '.join(repr(c) for c in unexpected[:10])}; "
            f"the columns are: {', '.join(allowed)}."
        )
    _check_parquet_sizes(meta, name=name)
    # A dictionary-encoded column stores a repeated value once: decoded, a 1 MB value in a
    # million rows is a terabyte. Read such columns as Arrow dictionaries (each value once),
    # so parquet_rows can measure every row's values before one becomes a Python object.
    encoded = {
        meta.row_group(g).column(c).path_in_schema
        for g in range(meta.num_row_groups)
        for c in range(meta.num_columns)
        if meta.row_group(g).column(c).has_dictionary_page
    }
    if encoded:
        try:
            reader = pq.ParquetFile(upload, read_dictionary=sorted(encoded))
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise UploadRefused(f"'{name}' is not a readable Parquet file ({exc}).") from None
    return reader


def _rows_named(first: int, count: int) -> str:
    return f"row {first:,}" if count == 1 else f"rows {first:,} to {first + count - 1:,}"


def _check_parquet_sizes(meta, *, name: str) -> None:
    """From the footer alone: a row group whose field (or row) holds more bytes per row than
    a value (or row) may decode to holds at least one value (row) over the limit. Refused
    before anything is decompressed. What this cannot see (one big value among many small
    ones, a dictionary repeating a value) parquet_rows measures batch by batch."""
    first = 1
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        rows = max(group.num_rows, 1)
        fields: dict[str, int] = {}
        for c in range(group.num_columns):
            column = group.column(c)
            top = column.path_in_schema.split(".", 1)[0]
            fields[top] = fields.get(top, 0) + max(column.total_uncompressed_size, 0)
        for field, size in fields.items():
            _refuse_if_over(
                size,
                rows=rows,
                where=f"'{name}', {_rows_named(first, rows)}, field '{field}'",
                what="a field",
                setting="PARQUET_MAX_FIELD_BYTES",
            )
        _refuse_if_over(
            sum(fields.values()),
            rows=rows,
            where=f"'{name}', {_rows_named(first, rows)}",
            what="a row",
            setting="PARQUET_MAX_ROW_BYTES",
        )
        first += group.num_rows


def _refuse_if_over(size: int, *, where: str, what: str, setting: str, rows: int = 1) -> None:
    """Refuse `size` decoded bytes (`rows` rows of them, seen from the footer) over a limit."""
    limit = getattr(settings, setting)
    if size // rows > limit:
        seen = f"{megabytes(size)} once decoded"
        if rows > 1:
            seen = f"{megabytes(size)} in {rows:,} rows ({megabytes(size // rows)} a row)"
        raise UploadRefused(
            f"{where}: {seen}; {what} may hold at most {megabytes(limit)} (ASSAY_{setting}). "
            "Nothing was imported.",
            status=413,
        )


# Rows become Python objects this many decoded bytes at a time, whatever the batch size.
MATERIALISE_BYTES = 64 * 1024 * 1024


def decoded_sizes(array):
    """The bytes each row of an Arrow array holds once decoded (text and binary by length,
    lists and structs as the sum of their parts), computed on Arrow's buffers without making
    a single Python object: dictionaries are measured once per distinct value."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(array)
    kind = array.type
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if pa.types.is_dictionary(kind):
        values = decoded_sizes(array.dictionary)
        indices = array.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        sizes = values[indices] if len(values) else np.zeros(n, dtype=np.int64)
    elif (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    ):
        sizes = pc.binary_length(array).fill_null(0).to_numpy(zero_copy_only=False)
    elif pa.types.is_map(kind):
        as_list = pa.list_(pa.struct([kind.key_field, kind.item_field]))
        sizes = decoded_sizes(array.cast(as_list))
    elif (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    ):
        parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
        children = decoded_sizes(array.flatten())
        sizes = np.bincount(parents, weights=children, minlength=n)[:n]
    elif pa.types.is_struct(kind):
        sizes = np.zeros(n, dtype=np.int64)
        for child in array.flatten():
            sizes = sizes + decoded_sizes(child)
    elif pa.types.is_primitive(kind) or pa.types.is_null(kind):
        width = getattr(kind, "bit_width", 64) if pa.types.is_primitive(kind) else 64
        sizes = np.full(n, max(width // 8, 1), dtype=np.int64)
    else:  # anything else (unions, views, ...): row by row, by the buffers each row uses
        sizes = np.array([array.slice(i, 1).nbytes for i in range(n)], dtype=np.int64)
    return np.asarray(sizes, dtype=np.int64)


def parquet_rows(reader, *, name: str, batch_size: int) -> Iterator[tuple[int, dict]]:
    """(row number, object) pairs, read a batch at a time; an unreadable batch is refused, and
    so is a value or row over ASSAY_PARQUET_MAX_FIELD_BYTES / _ROW_BYTES (or a file decoding to
    more than ASSAY_PARQUET_MAX_UNPACKED_BYTES), measured before it becomes a Python object."""
    import numpy as np
    import pyarrow as pa

    meta = reader.metadata
    widest = (
        max(
            (meta.row_group(g).total_byte_size / max(meta.row_group(g).num_rows, 1))
            for g in range(meta.num_row_groups)
        )
        if meta.num_row_groups
        else 1
    )
    batch_size = max(1, min(batch_size, int(MATERIALISE_BYTES // max(widest, 1))))
    number = 0
    decoded = 0
    batches = reader.iter_batches(batch_size=batch_size)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise UploadRefused(
                f"'{name}': rows after {number:,} cannot be read ({exc})."
            ) from None
        rows = np.zeros(batch.num_rows, dtype=np.int64)
        for field, column in zip(batch.schema.names, batch.columns, strict=True):
            sizes = decoded_sizes(column)
            over = np.flatnonzero(sizes > settings.PARQUET_MAX_FIELD_BYTES)
            if len(over):
                _refuse_if_over(
                    int(sizes[over[0]]),
                    where=f"'{name}', row {number + int(over[0]) + 1:,}, field '{field}'",
                    what="a field",
                    setting="PARQUET_MAX_FIELD_BYTES",
                )
            rows += sizes
        over = np.flatnonzero(rows > settings.PARQUET_MAX_ROW_BYTES)
        if len(over):
            _refuse_if_over(
                int(rows[over[0]]),
                where=f"'{name}', row {number + int(over[0]) + 1:,}",
                what="a row",
                setting="PARQUET_MAX_ROW_BYTES",
            )
        decoded += int(rows.sum())
        if decoded > settings.PARQUET_MAX_UNPACKED_BYTES:
            raise UploadRefused(
                f"'{name}': the rows up to {number + batch.num_rows:,} decode to "
                f"{megabytes(decoded)}; at most {megabytes(settings.PARQUET_MAX_UNPACKED_BYTES)} "
                "is accepted (ASSAY_PARQUET_MAX_UNPACKED_BYTES). Nothing was imported.",
                status=413,
            )
        start = 0
        ends = np.cumsum(rows)
        while start < batch.num_rows:
            # Up to MATERIALISE_BYTES of rows (at least one) become Python objects at a time.
            budget = (ends[start - 1] if start else 0) + MATERIALISE_BYTES
            stop = max(start + 1, int(np.searchsorted(ends, budget, side="right")))
            for row in batch.slice(start, stop - start).to_pylist():
                number += 1
                yield number, {k: v for k, v in row.items() if v is not None}
            start = stop
