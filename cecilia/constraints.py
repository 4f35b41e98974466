"""Database expressions and migration operations that let PostgreSQL enforce Cecilia's rules.

* `TsTzRange` / `TimeOfDayRange` feed exclusion constraints (btree_gist): no double booking, no overlapping hours.
* `AddSameClinicForeignKey` adds a composite foreign key `(fk_id, clinic_id) → target(id, clinic_id)`, so a row can
  never point at another clinic's patient, professional or conversation, whatever code wrote it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.fields import DateTimeRangeField
from django.db import migrations
from django.db.models import Func
from django.utils.deconstruct import deconstructible


@deconstructible(path="cecilia.constraints.TsTzRange")
class TsTzRange(Func):
    """`tstzrange(start, end, '[)')`: half-open, so back-to-back appointments (09:00–09:30, 09:30–10:00) fit."""

    function = "TSTZRANGE"
    output_field = DateTimeRangeField()

    def __init__(self, start: Any, end: Any, **extra: Any) -> None:
        super().__init__(start, end, **extra)

    def as_sql(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, list[Any]]:
        start_sql, start_params = compiler.compile(self.source_expressions[0])
        end_sql, end_params = compiler.compile(self.source_expressions[1])
        return f"TSTZRANGE({start_sql}, {end_sql}, '[)')", [*start_params, *end_params]


@deconstructible(path="cecilia.constraints.TimeOfDayRange")
class TimeOfDayRange(Func):
    """A half-open range over two `time` columns, placed on a fixed date so PostgreSQL's tsrange can hold it."""

    output_field = DateTimeRangeField()

    def __init__(self, start: Any, end: Any, **extra: Any) -> None:
        super().__init__(start, end, **extra)

    def as_sql(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, list[Any]]:
        start_sql, start_params = compiler.compile(self.source_expressions[0])
        end_sql, end_params = compiler.compile(self.source_expressions[1])
        sql = f"TSRANGE(DATE '2000-01-01' + {start_sql}, DATE '2000-01-01' + {end_sql}, '[)')"
        return sql, [*start_params, *end_params]


class AddSameClinicForeignKey(migrations.operations.base.Operation):
    """Composite FK `(field_id, clinic_id)` → `(target.id, target.clinic_id)`; the target needs UNIQUE(id, clinic).

    Nullable foreign keys stay optional: PostgreSQL skips the check when any column is NULL (MATCH SIMPLE).
    Deferred like Django's own foreign keys, so Django's cascading deletes keep working.
    """

    reversible = True

    def __init__(self, model_name: str, field_name: str) -> None:
        self.model_name = model_name
        self.field_name = field_name

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (self.__class__.__qualname__, [], {"model_name": self.model_name, "field_name": self.field_name})

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass  # the constraint lives only in the database; Django's model state is unchanged

    def _names(self, app_label: str, state: Any, schema_editor: Any) -> tuple[str, str, str, str, str]:
        model = state.apps.get_model(app_label, self.model_name)
        field = model._meta.get_field(self.field_name)
        target = field.related_model._meta
        table = model._meta.db_table
        name = f"{table}_{self.field_name}_same_clinic"[:63]
        return table, name, field.column, target.db_table, target.pk.column

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        table, name, column, target_table, target_pk = self._names(app_label, to_state, schema_editor)
        q = schema_editor.quote_name
        schema_editor.execute(
            f"ALTER TABLE {q(table)} ADD CONSTRAINT {q(name)} FOREIGN KEY ({q(column)}, {q('clinic_id')}) "
            f"REFERENCES {q(target_table)} ({q(target_pk)}, {q('clinic_id')}) DEFERRABLE INITIALLY DEFERRED"
        )

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        table, name, *_ = self._names(app_label, from_state, schema_editor)
        q = schema_editor.quote_name
        schema_editor.execute(f"ALTER TABLE {q(table)} DROP CONSTRAINT IF EXISTS {q(name)}")

    def describe(self) -> str:
        return f"Require {self.model_name}.{self.field_name} to belong to the same clinic"

    @property
    def migration_name_fragment(self) -> str:
        return f"{self.model_name}_{self.field_name}_same_clinic"
