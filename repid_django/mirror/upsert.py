"""Fast batched upserts for the ORM mirror.

``bulk_create(update_conflicts=True)`` compiles one big statement per batch, which costs more
than the database's own work for thousands of small rows. On SQLite and PostgreSQL this writes
the same ``INSERT ... ON CONFLICT (...) DO UPDATE`` (Django builds the clause) once. SQLite gets
the rows with ``executemany``. PostgreSQL gets each batch as one statement over one JSON
document (``INSERT ... SELECT ... FROM jsonb_to_recordset(%s)``): the worker's process encodes
it in one ``json.dumps`` instead of adapting every value, and the database runs one statement
instead of one per row (rows sent one by one, even pipelined, kept the mirror's worker below
half the throughput of a worker without it). MySQL and MariaDB get ``INSERT ... ON DUPLICATE
KEY UPDATE`` with ``executemany`` (which their driver sends as multi-row inserts); a guarded
upsert (``only_if``) there inserts the new rows, then updates the existing ones in one
``UPDATE ... JOIN`` whose ``WHERE`` holds the guard. Other databases use ``bulk_create``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import connections, models, transaction
from django.db.models.constants import OnConflict

FAST_VENDORS = ("sqlite", "postgresql")


def conflict_target(using: str, unique: Sequence[str]) -> Sequence[str] | None:
    """``unique_fields`` for ``bulk_create(update_conflicts=True)`` on the ``using`` database:
    MySQL and MariaDB take none (their ``ON DUPLICATE KEY UPDATE`` answers any unique key)."""
    if connections[using].features.supports_update_conflicts_with_target:
        return unique
    return None


def upsert(
    model: type[models.Model],
    rows: Sequence[Mapping[str, Any]],
    *,
    unique: Sequence[str],
    update: Sequence[str],
    using: str = "default",
    batch_size: int = 1000,
    only_if: str = "",
) -> None:
    """Insert ``rows`` (field name to value, every row with the same keys) or, where a row
    with the same ``unique`` fields exists, update its ``update`` fields.

    ``only_if``: on SQLite, PostgreSQL, MySQL and MariaDB, an SQL condition the existing row
    must meet to be updated (``ON CONFLICT ... DO UPDATE ... WHERE``; ``excluded.<column>`` is
    the new value, ``<table>.<column>`` the row's), checked by the database at the moment of
    the write. Other databases ignore it."""
    if not rows:
        return
    connection = connections[using]
    if connection.vendor == "mysql":
        _mysql(
            model,
            rows,
            unique=unique,
            update=update,
            using=using,
            batch_size=batch_size,
            only_if=only_if,
        )
        return
    if connection.vendor not in FAST_VENDORS:
        model._default_manager.using(using).bulk_create(
            [model(**row) for row in rows],
            batch_size=batch_size,
            update_conflicts=True,
            unique_fields=conflict_target(using, unique),
            update_fields=update,
        )
        return
    names = list(rows[0])
    fields = [_field(model, name) for name in names]
    suffix = connection.ops.on_conflict_suffix_sql(
        fields,
        OnConflict.UPDATE,
        [_column(model, name) for name in update],
        [_column(model, name) for name in unique],
    )
    if only_if:
        suffix += f" WHERE {only_if}"
    table = connection.ops.quote_name(model._meta.db_table)
    columns = [_column(model, name) for name in names]
    with transaction.atomic(using=using, savepoint=False), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A statement may not update a row twice: one row per key, the last one wins.
            latest = _last_per_key(rows, unique)
            sql = _from_json(table, columns, fields, suffix, connection)
            # Pipelined: the next batch is encoded while the database writes the last one (an
            # error surfaces when the pipeline ends: Django's exception classes there too).
            with connection.wrap_database_errors, connection.connection.pipeline():
                for start in range(0, len(latest), batch_size):
                    document = [
                        {column: row[name] for column, name in zip(columns, names, strict=True)}
                        for row in latest[start : start + batch_size]
                    ]
                    cursor.execute(sql, [json.dumps(document, default=_json_default)])
            return
        quoted = ", ".join(connection.ops.quote_name(column) for column in columns)
        marks = ", ".join(["%s"] * len(fields))
        # Identifiers are quoted by the backend and values are parameters: no injection.
        sql = f"INSERT INTO {table} ({quoted}) VALUES ({marks}) {suffix}"  # noqa: S608
        params = _prepared(rows, names, fields, connection)
        for start in range(0, len(params), batch_size):
            cursor.executemany(sql, params[start : start + batch_size])


def _last_per_key(rows: Sequence[Mapping[str, Any]], unique: Sequence[str]) -> list[Any]:
    """One row per ``unique`` key, the last one (a statement may not write a row twice)."""
    return list({tuple(row[name] for name in unique): row for row in rows}.values())


def _prepared(
    rows: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    fields: Sequence[models.Field[Any, Any]],
    connection: Any,
) -> list[list[Any]]:
    """The rows' values as the database takes them (``get_db_prep_save``), in ``names`` order."""
    prepare = [field.get_db_prep_save for field in fields]
    return [
        [prep(row[name], connection) for prep, name in zip(prepare, names, strict=True)]
        for row in rows
    ]


def _mysql(
    model: type[models.Model],
    rows: Sequence[Mapping[str, Any]],
    *,
    unique: Sequence[str],
    update: Sequence[str],
    using: str,
    batch_size: int,
    only_if: str,
) -> None:
    """The upsert on MySQL and MariaDB. Their ``ON DUPLICATE KEY UPDATE`` has no ``WHERE`` and
    assigns left to right (a later assignment sees the earlier ones), so a guard cannot go
    there: with ``only_if`` the insert leaves existing rows alone, and one ``UPDATE ... JOIN``
    of the batch's rows (the derived table is named ``excluded``) writes those the guard
    lets through; its ``WHERE`` is read before any assignment, per row, under the row's lock."""
    connection = connections[using]
    names = list(rows[0])
    fields = [_field(model, name) for name in names]
    table = connection.ops.quote_name(model._meta.db_table)
    col = {name: connection.ops.quote_name(_column(model, name)) for name in names}
    columns = list(col.values())
    if only_if:  # existing rows: untouched by the insert
        assign = f"{col[unique[0]]} = {col[unique[0]]}"
    else:
        assign = ", ".join(f"{col[n]} = VALUES({col[n]})" for n in update)
    marks = ", ".join(["%s"] * len(fields))
    # Identifiers are quoted by the backend and values are parameters: no injection.
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "  # noqa: S608
    insert += f"ON DUPLICATE KEY UPDATE {assign}"
    params = _prepared(_last_per_key(rows, unique), names, fields, connection)
    # A time is compared as a time only when typed so (a bare parameter is text).
    picks = [
        "CAST(%s AS DATETIME(6))" if isinstance(field, models.DateTimeField) else "%s"
        for field in fields
    ]
    first = ", ".join(f"{pick} AS {column}" for pick, column in zip(picks, columns, strict=True))
    other = ", ".join(picks)
    on = " AND ".join(f"{table}.{col[n]} = excluded.{col[n]}" for n in unique)
    sets = ", ".join(f"{table}.{col[n]} = excluded.{col[n]}" for n in update)
    with transaction.atomic(using=using, savepoint=False), connection.cursor() as cursor:
        for start in range(0, len(params), batch_size):
            chunk = params[start : start + batch_size]
            cursor.executemany(insert, chunk)
            if not only_if:
                continue
            derived = " UNION ALL ".join(
                [f"SELECT {first}"] + [f"SELECT {other}"] * (len(chunk) - 1)
            )
            cursor.execute(
                f"UPDATE {table} JOIN ({derived}) AS excluded ON {on} "  # noqa: S608
                f"SET {sets} WHERE {only_if}",
                [value for row in chunk for value in row],
            )


def _from_json(
    table: str,
    columns: Sequence[str],
    fields: Sequence[models.Field[Any, Any]],
    suffix: str,
    connection: Any,
) -> str:
    """PostgreSQL's upsert of the rows of one JSON document parameter (a list of objects keyed
    by column). Identifiers are quoted by the backend, the column types are the fields' own
    and the values one parameter: no injection."""
    quoted = [connection.ops.quote_name(column) for column in columns]
    record = ", ".join(
        f"{column} {field.db_type(connection)}"
        for column, field in zip(quoted, fields, strict=True)
    )
    picked = ", ".join(
        f"NULLIF(r.{column}, 'null'::jsonb)"  # None is SQL NULL, as Django stores it
        if isinstance(field, models.JSONField)
        else f"r.{column}"
        for column, field in zip(quoted, fields, strict=True)
    )
    return (
        f"INSERT INTO {table} ({', '.join(quoted)}) "  # noqa: S608
        f"SELECT {picked} FROM jsonb_to_recordset(%s::jsonb) AS r({record}) {suffix}"
    )


def _json_default(value: Any) -> str:
    """Values JSON has no type for, as PostgreSQL reads them (ISO 8601 times, decimal text)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field):
        raise TypeError(f"{model.__name__}.{name} is not a concrete field")
    return field


def _column(model: type[models.Model], name: str) -> str:
    return str(_field(model, name).column)
