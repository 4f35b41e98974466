"""Celery tasks of patients: thin, JSON arguments, time-limited. Found by `app.autodiscover_tasks()`."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone


# Nightly (beat, migration 0005). A clinic with a large backlog is worked through in batches; what the time limit
# cuts short is simply done the next night (each pass is idempotent).
@shared_task(acks_late=True, soft_time_limit=50 * 60, time_limit=55 * 60)
def retention_enforce_all() -> dict[str, int]:
    """Apply every clinic's retention policy (patients.retention); returns the counts erased, by kind."""
    from patients.retention import retention_enforce_all as enforce

    return enforce(now=timezone.now())
