"""Celery tasks of conversations: thin, take ids, call one service."""

from __future__ import annotations

import datetime
import logging

from celery import shared_task
from django.conf import settings

from conversations import services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def inbound_event_process(event_id: int) -> None:
    # Failures are recorded on the event and retried by the relay (services.inbound_event_process).
    services.inbound_event_process(event_id=event_id)


def inbound_event_enqueue(event_id: int) -> None:
    """Publish the processing task; a broker outage is logged, not raised — the relay publishes it later."""
    try:
        inbound_event_process.delay(event_id)
    except Exception:  # kombu raises many kinds; the event is safe in PostgreSQL either way
        logger.warning("Inbound event %s stored but not enqueued; the relay will retry", event_id, exc_info=True)


@shared_task(acks_late=True)
def inbound_events_relay() -> int:
    """Periodic (beat): enqueue stored events whose processing task was lost. Returns how many were enqueued."""
    # Not processed after this long: its task was lost (Redis outage, crash between commit and publish).
    older_than = datetime.timedelta(seconds=settings.WHATSAPP_RELAY_AFTER_SECONDS)
    pending = services.pending_events(older_than=older_than)
    ids = list(pending.values_list("pk", flat=True)[:500])
    for event_id in ids:
        inbound_event_process.delay(event_id)
    return len(ids)
