"""Celery tasks of the Google Calendar sync: thin, take ids, call one service (integrations.calendar_sync)."""

from __future__ import annotations

import logging

from celery import shared_task

from integrations import calendar_sync

logger = logging.getLogger(__name__)

PUSH_RETRIES = 5


@shared_task(bind=True, acks_late=True, max_retries=PUSH_RETRIES, soft_time_limit=60, time_limit=90)
def calendar_push(self, appointment_id: int) -> str:
    """Push one appointment to Google. Temporary failures retry here with backoff (and jitter); after that the
    periodic catch-up keeps trying from the link's `next_attempt_at`. Permanent ones wait for a person."""
    result = calendar_sync.event_push(appointment_id=appointment_id)
    if result.retry and self.request.retries < PUSH_RETRIES:
        raise self.retry(countdown=min(30 * 2**self.request.retries, 900))
    return result.outcome


def calendar_push_enqueue(appointment_id: int) -> None:
    """Publish the push; a broker outage is logged, not raised — the link is pending and the catch-up pushes it."""
    try:
        calendar_push.delay(appointment_id)
    except Exception:  # kombu raises many kinds; the pending link is safe in PostgreSQL either way
        logger.warning("Calendar push of appointment %s not enqueued; the catch-up will push it", appointment_id)


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def calendar_push_catch_up() -> int:
    """Periodic (beat): push what is due — failed pushes whose wait is over and pushes whose task was lost."""
    due = calendar_sync.links_due()
    for appointment_id in due:
        calendar_push_enqueue(appointment_id)
    return len(due)


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def calendar_pull(professional_id: int) -> str:
    return calendar_sync.calendar_pull(professional_id=professional_id).outcome


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def calendar_sync_all() -> int:
    """Periodic (beat): pull every professional calendar in use (each its own task)."""
    ids = calendar_sync.professionals_to_pull()
    for professional_id in ids:
        try:
            calendar_pull.delay(professional_id)
        except Exception:
            logger.warning("Calendar pull of professional %s not enqueued; next tick retries", professional_id)
    return len(ids)
