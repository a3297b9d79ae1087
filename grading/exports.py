"""Streaming exports straight from PostgreSQL: rows become JSON lines inside the database and
leave through COPY TO STDOUT, so memory stays flat whatever the size."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import BinaryIO

from django.db import connection

from rubrics.models import Project

# Each verdict with what produced it: the run, the grader hash, the judge model or the person.
VERDICTS_SQL = """
SELECT json_build_object(
    'verdict_id', v.id,
    'run_id', v.run_id,
    'grader_hash', g.hash,
    'rubric_version', rv.number,
    'task_external_id', t.external_id,
    'response_id', r.id,
    'response_external_id', r.external_id,
    'model', r.model,
    'sample_index', r.sample_index,
    'judge_sample_index', v.sample_index,
    'criterion_id', v.criterion_id,
    'criterion', c.text,
    'points', c.points,
    'rater', ra.name,
    'rater_kind', ra.kind,
    'outcome', v.outcome,
    'value', v.value,
    'explanation', v.explanation,
    'evidence', v.evidence,
    'error', v.error,
    'judge_model', v.judge_model,
    'simulated', v.simulated,
    'created_at', v.created_at
)
FROM annotation_verdict v
JOIN annotation_response r ON r.id = v.response_id
JOIN rubrics_task t ON t.id = r.task_id
JOIN rubrics_criterion c ON c.id = v.criterion_id
JOIN annotation_rater ra ON ra.id = v.rater_id
LEFT JOIN rubrics_grader g ON g.id = v.grader_id
LEFT JOIN rubrics_rubricversion rv ON rv.id = g.version_id
WHERE t.project_id = {project_id}
ORDER BY v.id
"""

# CSV with a quote and delimiter that JSON never leaves raw (it escapes control characters),
# so COPY writes each JSON document as it is, one per line, with no escaping of its own.
COPY_JSON_LINES = "COPY ({query}) TO STDOUT WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"


def verdicts_jsonl(
    out: BinaryIO, *, project: Project, progress: Callable[[int], None] | None = None
) -> tuple[int, str]:
    """Write every verdict of `project` as JSON lines to `out`. Returns (bytes, sha256)."""
    query = VERDICTS_SQL.format(project_id=int(project.pk))
    digest = hashlib.sha256()
    written = 0
    with connection.cursor() as cursor, cursor.copy(COPY_JSON_LINES.format(query=query)) as copy:
        for chunk in copy:
            data = bytes(chunk)
            out.write(data)
            digest.update(data)
            written += len(data)
            if progress:
                progress(written)
    return written, digest.hexdigest()
