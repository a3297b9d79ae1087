# ruff: noqa: S608 - SQL here names one constant staging table; values go as parameters or COPY.
"""Bulk ingestion of responses, all or nothing, with constant memory on either database.

Rows stream through validation into a temporary staging table; the database then finds what
Python cannot see row by row (keys repeated within the file, rows that contradict what is
already stored), and one INSERT ... SELECT moves the new rows into place. Any error rolls the
whole transaction back, so a failed file leaves nothing behind. Importing the same file twice
adds nothing: a row identical to a stored response is counted as already present.

Only the writing of staged rows depends on the database: COPY on PostgreSQL (millions of
rows), batched INSERTs on the embedded SQLite default.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator

from django.db import connection, transaction
from django.utils import timezone

from annotation.models import Response
from annotation.services import (
    MAX_ERRORS_REPORTED,
    ImportResult,
    LineError,
    parse_response_row,
)
from rubrics import uploads
from rubrics.models import Project, Task

STAGING = "assay_response_staging"
STAGED_COLUMNS = "line, task_id, model, text, content, sample_index, metadata, external_id"
PROGRESS_EVERY = 10_000  # rows staged between calls of `progress`
INSERT_BATCH = 2_000  # staged rows per INSERT where there is no COPY


class _Abort(Exception):
    """Raised inside the transaction to roll it back when the file has errors."""


def import_responses(
    *,
    project: Project,
    rows: Iterable[tuple[int, dict | str | bytes]] | None = None,
    lines: Iterable[bytes | str] | None = None,
    filename: str = "",
    progress: Callable[[int, float], None] | None = None,
    files=None,
) -> ImportResult:
    """Import responses from JSONL `lines`, or from `rows` of (line number, object) pairs (what
    a Parquet reader yields). Returns counts, or every error by line and field with nothing
    imported."""
    result = ImportResult(filename=filename)
    tasks = dict(Task.objects.filter(project=project).values_list("external_id", "pk"))
    errors: list[LineError] = []
    started = time.monotonic()

    def source() -> Iterator[tuple[int, object]]:
        if rows is not None:
            yield from rows
            return
        for number, text, problem in uploads.decoded_lines(lines or ()):
            if problem:
                errors.append(LineError(number, "", problem))
                continue
            if text.strip():
                yield number, text

    def parsed() -> Iterator[tuple[int, dict | None, list[LineError]]]:
        for number, item in source():
            yield number, *parse_response_row(number, item, tasks, files)

    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # Taking files queries and writes StoredFile rows, which cannot happen on the
            # connection while the staging COPY is open: rows with files are read first.
            checked = parsed() if files is None else list(parsed())
            _create_staging(cursor)
            staged = 0
            with _staging_writer(cursor) as write_row:
                for number, row, row_errors in checked:
                    if row_errors:
                        errors.extend(row_errors)
                        continue
                    if errors:
                        continue  # keep validating to report everything; stop writing
                    write_row(
                        (
                            number,
                            row["task_id"],
                            row["model"],
                            row["text"],
                            None if row["content"] is None else json.dumps(row["content"]),
                            row["sample_index"],
                            json.dumps(row["metadata"]),
                            row["external_id"],
                        )
                    )
                    staged += 1
                    if progress and staged % PROGRESS_EVERY == 0:
                        progress(staged, time.monotonic() - started)
            if not errors:
                errors.extend(_database_errors(cursor))
            if not errors and not staged:
                errors.append(LineError(0, "", "the file holds no responses"))
            if errors:
                raise _Abort
            # WHERE true: SQLite reads "FROM t ON CONFLICT" as a join without it.
            cursor.execute(
                f"INSERT INTO {Response._meta.db_table} "
                "(task_id, model, text, content, sample_index, metadata, external_id, "
                "created_at) "
                f"SELECT task_id, model, text, content, sample_index, metadata, external_id, %s "
                f"FROM {STAGING} WHERE true "
                "ON CONFLICT (task_id, model, sample_index) DO NOTHING",
                [connection.ops.adapt_datetimefield_value(timezone.now())],
            )
            result.created = cursor.rowcount
            result.already_present = staged - result.created
            cursor.execute(f"DROP TABLE {STAGING}")
    except _Abort:
        pass
    result.error_count = len(errors)
    result.errors = sorted(errors, key=lambda e: e.line)[:MAX_ERRORS_REPORTED]
    return result


def _create_staging(cursor) -> None:
    # Inside an outer transaction (a test, a caller's atomic block) ON COMMIT DROP waits for
    # the outer commit, and SQLite keeps a temp table for the connection: clear it first.
    cursor.execute(f"DROP TABLE IF EXISTS {STAGING}")
    if connection.vendor == "postgresql":
        # Joins and sorts over a million staged rows spill to disk at the default 4 MB.
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        cursor.execute(
            f"CREATE TEMP TABLE {STAGING} (line integer, task_id bigint, model text, "
            "text text, content jsonb, sample_index integer, metadata jsonb, external_id text) "
            "ON COMMIT DROP"
        )
    else:
        cursor.execute(
            f"CREATE TEMP TABLE {STAGING} (line integer, task_id bigint, model text, "
            "text text, content text, sample_index integer, metadata text, external_id text)"
        )


@contextlib.contextmanager
def _staging_writer(cursor):
    """A function that stages one row (in STAGED_COLUMNS' order): through COPY on PostgreSQL,
    in batched INSERTs elsewhere. Memory stays flat either way."""
    if connection.vendor == "postgresql":
        with cursor.copy(f"COPY {STAGING} ({STAGED_COLUMNS}) FROM STDIN") as copy:
            yield copy.write_row
        return
    insert = f"INSERT INTO {STAGING} ({STAGED_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    batch: list[tuple] = []

    def write_row(row: tuple) -> None:
        batch.append(row)
        if len(batch) >= INSERT_BATCH:
            cursor.executemany(insert, batch)
            batch.clear()

    yield write_row
    if batch:
        cursor.executemany(insert, batch)


def _database_errors(cursor) -> list[LineError]:
    """Keys repeated within the file, and rows that differ from a stored response."""
    cursor.execute(f"CREATE INDEX {STAGING}_key ON {STAGING} (task_id, model, sample_index)")
    cursor.execute(f"ANALYZE {STAGING}")
    cursor.execute(
        f"SELECT s.line, f.line FROM {STAGING} s JOIN ("
        f"  SELECT task_id, model, sample_index, min(line) AS line FROM {STAGING}"
        "   GROUP BY 1, 2, 3 HAVING count(*) > 1"
        ") f USING (task_id, model, sample_index) WHERE s.line > f.line "
        f"ORDER BY s.line LIMIT {MAX_ERRORS_REPORTED + 1}"
    )
    errors = [
        LineError(line, "sample_index", f"repeats line {first} (same task, model, sample)")
        for line, first in cursor.fetchall()
    ]
    table = Response._meta.db_table
    cursor.execute(
        f"SELECT EXISTS (SELECT 1 FROM {table} WHERE task_id IN "
        f"(SELECT DISTINCT task_id FROM {STAGING}))"
    )
    if not cursor.fetchone()[0]:
        return errors  # nothing stored for these tasks: nothing to contradict
    # Metadata and episodes are compared again as JSON: SQLite holds them as text, where key
    # order counts. A text response has no content (NULL): NULL-safe without IS DISTINCT FROM.
    cursor.execute(
        f"SELECT s.line, s.model, s.sample_index, "
        "r.text <> s.text OR r.external_id <> s.external_id "
        "OR (r.content IS NULL) <> (s.content IS NULL), "
        "r.metadata, s.metadata, r.content, s.content "
        f"FROM {STAGING} s JOIN {table} r ON r.task_id = s.task_id AND r.model = s.model "
        "AND r.sample_index = s.sample_index "
        "WHERE r.text <> s.text OR r.metadata <> s.metadata OR r.external_id <> s.external_id "
        "OR (r.content IS NULL) <> (s.content IS NULL) OR r.content <> s.content "
        "ORDER BY s.line"
    )
    differs = 0
    while differs <= MAX_ERRORS_REPORTED:
        found = cursor.fetchmany(500)
        if not found:
            break
        for line, model, sample, other, stored, staged, stored_ep, staged_ep in found:
            if (
                not other
                and _json(stored) == _json(staged)
                and _json(stored_ep) == _json(staged_ep)
            ):
                continue
            differs += 1
            errors.append(
                LineError(
                    line,
                    "response" if staged_ep is None else "messages",
                    f"differs from the response already imported for {model} sample "
                    f"{sample}; responses are immutable",
                )
            )
    return errors


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


# Parquet has no type for any JSON: these columns may hold it as JSON text.
PARQUET_JSON_COLUMNS = ("metadata", "messages", "final_state")


def parquet_rows(reader, *, name: str, batch_size: int = 20_000) -> Iterator[tuple[int, dict]]:
    """(row number, object) pairs from a Parquet file of responses whose footer passed
    `uploads.parquet_file`, read in batches. `metadata`, `messages` and `final_state` may be
    JSON text (what the exports write), decoded here; `messages` may also be a list column."""
    for number, row in uploads.parquet_rows(reader, name=name, batch_size=batch_size):
        for column in PARQUET_JSON_COLUMNS:
            if isinstance(row.get(column), str):
                with contextlib.suppress(ValueError):  # left as text: validation names it
                    row[column] = uploads.loads(row[column])
        yield number, row
