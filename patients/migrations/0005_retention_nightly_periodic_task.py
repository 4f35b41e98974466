from django.db import migrations

# Beat runs it nightly at 03:30 in Brasília (quiet hours for every Brazilian clinic): patients.tasks.
# `name` is the key: re-running changes nothing, and a schedule an operator edited in the admin is left as it is.
NAME = "LGPD retention"
TASK = "patients.tasks.retention_enforce_all"
CRONTAB = {"minute": "30", "hour": "3", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"}
ZONE = "America/Sao_Paulo"


def periodic_task_register(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    schedule = CrontabSchedule.objects.filter(**CRONTAB, timezone=ZONE).order_by("id").first()
    if schedule is None:
        schedule = CrontabSchedule.objects.create(**CRONTAB, timezone=ZONE)
    PeriodicTask.objects.get_or_create(name=NAME, defaults={"task": TASK, "crontab": schedule})


def periodic_task_unregister(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    """Register the nightly retention job (patients.retention) with beat."""

    dependencies = [
        ("patients", "0004_audit_access_anonymised"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(periodic_task_register, periodic_task_unregister)]
