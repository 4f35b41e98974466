"""Celery tasks of scheduling: thin, take ids, call one service, enqueued on commit.

Found by the worker through `app.autodiscover_tasks()` (cecilia/celery.py), which imports every installed app's
`tasks` module.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import transaction

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def reminders_replan(clinic_id: int) -> int:
    """Bring the pending reminders of the clinic's future appointments in line with its current policy."""
    from scheduling.reminders import clinic_steps_replan

    return clinic_steps_replan(clinic_id=clinic_id)


@shared_task(acks_late=True)
def reminders_replan_all() -> int:
    """Periodic (beat, every 6 hours): replan every clinic, so a replan lost to a broker outage (a new rule's steps)
    is made up within hours. Cheap when nothing changed: only differing steps are written."""
    from cecilia.models import Clinic
    from scheduling.reminders import clinic_steps_replan

    return sum(clinic_steps_replan(clinic_id=pk) for pk in Clinic.objects.values_list("pk", flat=True))


def reminders_replan_enqueue(clinic_id: int) -> None:
    """Publish a replan; a broker outage is logged, not raised (the policy itself is saved).

    A lost replan is not silent harm: the sweep checks each due step against the policy again before sending
    (scheduling.reminders), so no reminder the clinic turned off goes out. New steps of a new rule, though, wait for
    the next replan (any later policy save) or for the appointment's next change.
    """
    try:
        reminders_replan.delay(clinic_id)
    except Exception:  # kombu raises many kinds; the policy is saved in PostgreSQL either way
        logger.warning("Reminder replan of clinic %s not enqueued", clinic_id, exc_info=True)


def reminders_replan_on_commit(clinic_id: int) -> None:
    """Enqueue a replan once the current transaction commits (right away outside one)."""
    transaction.on_commit(lambda: reminders_replan_enqueue(clinic_id))
