from django.db import migrations

# Beat runs it (see 0006): due reminders, no-show and rating follow-ups, unanswered steps (conversations.outreach).
# `name` is the key: re-running changes nothing, and a schedule an operator edited in the admin is left as it is.
SWEEP = ("Reminders sweep", "conversations.tasks.reminders_sweep", 60)


def periodic_task_register(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    name, task, seconds = SWEEP
    schedule = IntervalSchedule.objects.filter(every=seconds, period="seconds").order_by("id").first()
    if schedule is None:
        schedule = IntervalSchedule.objects.create(every=seconds, period="seconds")
    PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": schedule})


def periodic_task_unregister(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=SWEEP[0]).delete()


class Migration(migrations.Migration):
    """Register the reminder sweep with beat, every 60 s."""

    dependencies = [
        ("conversations", "0011_attention_patient_note"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(periodic_task_register, periodic_task_unregister)]
