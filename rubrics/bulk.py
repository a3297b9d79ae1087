"""Many new rows at once, for imports of whole benchmark files (tens of thousands of rows).

On PostgreSQL rows go in with COPY, which skips the SQL compilation and parameter quoting
that dominate bulk_create for large text and JSON; the database's constraints and triggers
still check every row. Elsewhere (the embedded SQLite default) bulk_create does it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from django.db import connection, models
from django.utils import timezone


def insert_rows(model: type[models.Model], rows: Iterable[dict]) -> list[int]:
    """Insert `rows` ({field attname: value}; fields not given take their defaults) and
    return their new primary keys, in order."""
    rows = list(rows)
    if not rows:
        return []
    if connection.vendor != "postgresql":
        created = model.objects.bulk_create((model(**r) for r in rows), batch_size=2000)
        return [obj.pk for obj in created]
    pk = model._meta.pk
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    # JSON needs its database form; psycopg adapts the other values (text, Decimal, UUID).
    json_fields = {f.attname for f in fields if isinstance(f, models.JSONField)}
    now = timezone.now()
    # What a row that leaves a field out gets, worked out once for all rows (a run's 10,000
    # pending scores leave out all but three): the time for stamped fields, else the default,
    # unless it is a function that may give each row another value (a UUID, the time). JSON
    # goes as its text, which COPY parses as a column of any JSON type does.
    fixed = {}
    for f in fields:
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            fixed[f.attname] = now
        elif not f.has_default() or not callable(f.default) or f.default in (dict, list):
            value = f.get_default()
            if f.attname in json_fields:
                value = None if value is None else json.dumps(value, cls=f.encoder)
            fixed[f.attname] = value
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in [pk, *fields])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [model._meta.db_table, pk.column, len(rows)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for new_id, row in zip(ids, rows, strict=True):
                values = [new_id]
                for f in fields:
                    name = f.attname
                    if name in row:
                        value = row[name]
                    elif name in fixed:
                        values.append(fixed[name])
                        continue
                    else:
                        value = f.get_default()
                    if name in json_fields:
                        value = f.get_db_prep_save(value, connection)
                    values.append(value)
                copy.write_row(values)
    return ids
