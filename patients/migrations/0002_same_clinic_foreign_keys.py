from django.db import migrations

from cecilia.constraints import AddSameClinicForeignKey


class Migration(migrations.Migration):
    """Rows can only point at rows of their own clinic, enforced by composite foreign keys."""

    dependencies = [("patients", "0001_initial")]

    operations = [
        AddSameClinicForeignKey("patient", "health_plan"),
        AddSameClinicForeignKey("patientguardian", "guardian"),
        AddSameClinicForeignKey("patientguardian", "dependent"),
    ]
