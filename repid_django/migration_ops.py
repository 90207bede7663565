"""Migration operations for tables that are already big when the migration runs.

The mirror's tables hold millions of rows on a busy site, and a plain ``CREATE INDEX`` holds a
lock that stops every worker's writes to the table until the index is built (minutes at ten
million rows). :class:`AddIndexOnline` builds the index with ``CREATE INDEX CONCURRENTLY`` on
PostgreSQL, so the workers and the admin go on writing while it builds; on other databases, or
inside a transaction, it is Django's ``AddIndex``. A migration that uses it sets
``atomic = False`` (PostgreSQL refuses a concurrent build inside a transaction).

A concurrent build that fails (a cancelled ``migrate``, a lost connection) leaves an invalid
index behind under the same name; the next ``migrate`` drops it and builds it again instead of
failing on "already exists".
"""

from __future__ import annotations

from typing import Any

from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations import AddIndex
from django.db.migrations.state import ProjectState


def _online(schema_editor: BaseDatabaseSchemaEditor) -> bool:
    connection = schema_editor.connection
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def _invalid_index(schema_editor: BaseDatabaseSchemaEditor, name: str) -> bool:
    """Whether an index of that name is left invalid by an interrupted concurrent build."""
    if schema_editor.collect_sql:  # sqlmigrate: nothing is read or run
        return False
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND pg_catalog.pg_table_is_visible(c.oid) AND NOT i.indisvalid",
            [name],
        )
        return cursor.fetchone() is not None


class AddIndexOnline(AddIndex):
    """``AddIndex`` built with ``CREATE INDEX CONCURRENTLY`` on PostgreSQL (writes go on while
    it builds); the same ``AddIndex`` elsewhere. Use it in a migration with ``atomic = False``."""

    def describe(self) -> str:
        return f"{super().describe()} (concurrently on PostgreSQL)"

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        if _online(schema_editor):
            self._concurrently(app_label, schema_editor, to_state, build=True)
        else:
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        if _online(schema_editor):
            self._concurrently(app_label, schema_editor, from_state, build=False)
        else:
            super().database_backwards(app_label, schema_editor, from_state, to_state)

    def _concurrently(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        state: ProjectState,
        *,
        build: bool,
    ) -> None:
        """Build the index (dropping an invalid leftover first) or drop it, concurrently."""
        model = state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        editor: Any = schema_editor  # the PostgreSQL editor takes ``concurrently``
        if not build or _invalid_index(schema_editor, self.index.name):
            editor.remove_index(model, self.index, concurrently=True)
        if build:
            editor.add_index(model, self.index, concurrently=True)
