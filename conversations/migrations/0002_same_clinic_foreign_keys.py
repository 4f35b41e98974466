from django.db import migrations

from cecilia.constraints import AddSameClinicForeignKey


class Migration(migrations.Migration):
    """Rows can only point at rows of their own clinic, enforced by composite foreign keys."""

    dependencies = [("conversations", "0001_initial"), ("patients", "0002_same_clinic_foreign_keys")]

    operations = [
        AddSameClinicForeignKey("conversation", "patient"),
        AddSameClinicForeignKey("message", "conversation"),
    ]
