"""Fast batched upserts for the ORM mirror.

``bulk_create(update_conflicts=True)`` compiles one big statement per batch, which costs more
than the database's own work for thousands of small rows. On SQLite and PostgreSQL this writes
the same ``INSERT ... ON CONFLICT (...) DO UPDATE`` (Django builds the clause) once, and sends
the rows with ``executemany``; other databases use ``bulk_create``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connections, models, transaction
from django.db.models.constants import OnConflict

FAST_VENDORS = ("sqlite", "postgresql")


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

    ``only_if``: on SQLite and PostgreSQL, an SQL condition the existing row must meet to be
    updated (``ON CONFLICT ... DO UPDATE ... WHERE``; ``excluded.<column>`` is the new value,
    ``<table>.<column>`` the row's), checked by the database at the moment of the write. Other
    databases ignore it."""
    if not rows:
        return
    connection = connections[using]
    if connection.vendor not in FAST_VENDORS:
        model._default_manager.using(using).bulk_create(
            [model(**row) for row in rows],
            batch_size=batch_size,
            update_conflicts=True,
            unique_fields=unique,
            update_fields=update,
        )
        return
    meta = model._meta
    names = list(rows[0])
    fields = [_field(model, name) for name in names]
    quote = connection.ops.quote_name
    suffix = connection.ops.on_conflict_suffix_sql(
        fields,
        OnConflict.UPDATE,
        [_column(model, name) for name in update],
        [_column(model, name) for name in unique],
    )
    columns = ", ".join(quote(_column(model, name)) for name in names)
    marks = ", ".join(["%s"] * len(fields))
    # Identifiers are quoted by the backend and values are parameters: no injection.
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({marks}) {suffix}"  # noqa: S608
    if only_if:
        sql += f" WHERE {only_if}"
    prepare = [field.get_db_prep_save for field in fields]
    params = [
        [prep(row[name], connection) for prep, name in zip(prepare, names, strict=True)]
        for row in rows
    ]
    with transaction.atomic(using=using, savepoint=False), connection.cursor() as cursor:
        for start in range(0, len(params), batch_size):
            cursor.executemany(sql, params[start : start + batch_size])


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field):
        raise TypeError(f"{model.__name__}.{name} is not a concrete field")
    return field


def _column(model: type[models.Model], name: str) -> str:
    return str(_field(model, name).column)
