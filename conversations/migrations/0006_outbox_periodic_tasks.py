from django.db import migrations

# Beat (django-celery-beat's database scheduler) runs these; `name` is the key, so re-running changes nothing and a
# schedule an operator edited in the admin is left as it is.
PERIODIC_TASKS = (
    # Sends what is queued and forgotten; settles rows a dead worker left "sending" (conversations.outbox).
    ("Outbox relay", "conversations.outbox.outbox_relay_task", 30),
    # Processes stored webhooks whose processing task was lost (conversations.tasks).
    ("Inbound events relay", "conversations.tasks.inbound_events_relay", 60),
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
    """Register the relays with beat: the outbox every 30 s, stored inbound events every 60 s."""

    dependencies = [
        ("conversations", "0005_outbox"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(periodic_tasks_register, periodic_tasks_unregister)]
