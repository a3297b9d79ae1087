"""Model instances from hand-written SELECTs, for the few reads on every request where the
ORM's compiling of a query costs more than the database's answer (about 1 ms of CPU against
0.3 ms on the 2-core machine): token authentication, the reward endpoint's grader."""

from __future__ import annotations

from django.db import connection, models


class Rows:
    """The columns of `model` (all concrete fields, or `fields` by attname) under a table
    `alias`: `sql` lists them for a SELECT; `build(values, offset)` makes an instance from
    them, converted as the ORM converts (JSON, and SQLite's dates and booleans)."""

    def __init__(self, model: type[models.Model], alias: str, fields: list[str] | None = None):
        self.model = model
        self.fields = (
            list(model._meta.concrete_fields)
            if fields is None
            else [model._meta.get_field(name) for name in fields]
        )
        self.names = [f.attname for f in self.fields]
        self.sql = ", ".join(f"{alias}.{connection.ops.quote_name(f.column)}" for f in self.fields)
        self._converters: dict[str, list] = {}  # per database vendor

    def __len__(self) -> int:
        return len(self.fields)

    def build(self, values, offset: int = 0):
        converters = self._converters.get(connection.vendor)
        if converters is None:
            converters = []
            for f in self.fields:
                col = f.get_col(self.model._meta.db_table)
                convert = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
                converters.append((col, convert))
            self._converters[connection.vendor] = converters
        row = []
        for i, (col, convert) in enumerate(converters):
            value = values[offset + i]
            for c in convert:
                value = c(value, col, connection)
            row.append(value)
        return self.model.from_db(connection.alias, self.names, row)
