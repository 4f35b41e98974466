"""The Celery app. Tasks are thin: they take ids, call one service, and are enqueued on commit."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cecilia.settings")

app = Celery("cecilia")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Correlation ids follow requests into the tasks they enqueue (and tasks into theirs).
import cecilia.observability.celery  # noqa: E402

# The worker keeps its database connections between tasks (cecilia/worker_db.py).
import cecilia.worker_db  # noqa: E402,F401
