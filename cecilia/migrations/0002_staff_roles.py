from django.db import migrations

from cecilia.roles import permissions_create, roles_sync


class Migration(migrations.Migration):
    """Groups "Recepção" and "Gestão" with their permissions (cecilia.roles). Later migrations that add models
    call roles_sync again."""

    dependencies = [
        ("cecilia", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("patients", "0002_same_clinic_foreign_keys"),
        ("scheduling", "0002_same_clinic_foreign_keys"),
        ("conversations", "0002_same_clinic_foreign_keys"),
    ]

    operations = [
        migrations.RunPython(permissions_create, migrations.RunPython.noop),
        migrations.RunPython(roles_sync, migrations.RunPython.noop),
    ]
