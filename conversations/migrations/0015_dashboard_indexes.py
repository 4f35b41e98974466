# The dashboard's indexes on the two biggest tables. Built CONCURRENTLY (so not in a transaction): messages keep
# arriving while a large clinic's index is built. The plain clinic_id indexes go only after their replacements exist,
# which serve lookups by clinic alone too: one index fewer to keep up on every message written.

import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


def _clinic_without_index(model_name: str) -> migrations.AlterField:
    return migrations.AlterField(
        model_name=model_name,
        name="clinic",
        field=models.ForeignKey(
            db_index=False,
            on_delete=django.db.models.deletion.PROTECT,
            related_name="+",
            to="cecilia.clinic",
            verbose_name="clinic",
        ),
    )


_TABLES = ("conversations_message", "conversations_turn")


def _drop_clinic_indexes(apps, schema_editor):
    """Drop the indexes on clinic_id alone (Django's foreign key index, whatever its generated name)."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        for table in _TABLES:
            for name, info in connection.introspection.get_constraints(cursor, table).items():
                if (
                    info["index"]
                    and not info["unique"]
                    and not info["primary_key"]
                    and info["columns"] == ["clinic_id"]
                ):
                    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")


def _restore_clinic_indexes(apps, schema_editor):
    for table in _TABLES:
        name = schema_editor.quote_name(f"{table}_clinic_id_idx")
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {schema_editor.quote_name(table)} (clinic_id)"
        )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("cecilia", "0009_retention_settings"),
        ("conversations", "0014_owner_since"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="message",
            index=models.Index(fields=["clinic", "created_at"], name="message_clinic_time_idx"),
        ),
        AddIndexConcurrently(
            model_name="message",
            index=models.Index(
                condition=models.Q(("status", "failed")), fields=["clinic", "failed_at"], name="message_failed_idx"
            ),
        ),
        AddIndexConcurrently(
            model_name="turn",
            index=models.Index(fields=["clinic", "started_at"], name="turn_clinic_time_idx"),
        ),
        # Only the index goes: AlterField would also drop and re-add the foreign key, checking every row under a lock.
        migrations.SeparateDatabaseAndState(
            state_operations=[_clinic_without_index("message"), _clinic_without_index("turn")],
            database_operations=[migrations.RunPython(_drop_clinic_indexes, _restore_clinic_indexes)],
        ),
    ]
