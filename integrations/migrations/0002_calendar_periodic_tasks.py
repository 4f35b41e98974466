from django.db import migrations

# Beat (django-celery-beat's database scheduler) runs these; `name` is the key, so re-running changes nothing and a
# schedule an operator edited in the admin is left as it is.
PERIODIC_TASKS = (
    # Pulls each professional's Google Calendar (syncToken): their own events block time; moves land for staff.
    ("Google Calendar pull", "integrations.tasks.calendar_sync_all", 120),
    # Pushes appointments whose push failed or was lost (integrations.calendar_sync.links_due).
    ("Google Calendar push catch-up", "integrations.tasks.calendar_push_catch_up", 60),
)


def periodic_tasks_register(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, seconds in PERIODIC_TASKS:
        schedule = IntervalSchedule.objects.filter(every=seconds, period="seconds").order_by("id").first()
        if schedule is None:
            schedule = IntervalSchedule.objects.create(every=seconds, period="seconds")
        PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": schedule})


def periodic_tasks_unregister(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, _, _ in PERIODIC_TASKS]).delete()


class Migration(migrations.Migration):
    """Register the calendar jobs with beat: the pull every 2 minutes, the push catch-up every minute."""

    dependencies = [
        ("integrations", "0001_google_calendar"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(periodic_tasks_register, periodic_tasks_unregister)]
