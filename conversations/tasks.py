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


def turn_enqueue(conversation_id: int, *, countdown: float | None = None) -> None:
    """Publish a turn for the conversation; a broker outage is logged, not raised — beat's relay catches up."""
    try:
        conversation_turn.apply_async((conversation_id,), countdown=countdown)
    except Exception:  # kombu raises many kinds; the messages wait in PostgreSQL either way
        logger.warning("Turn for conversation %s not enqueued; the relay will retry", conversation_id, exc_info=True)


@shared_task(acks_late=True)
def conversation_turn(conversation_id: int) -> None:
    from conversations.turns import awaiting_turn, turn_run

    result = turn_run(conversation_id=conversation_id)
    if result.retry_in is not None:
        turn_enqueue(conversation_id, countdown=result.retry_in)
    elif result.turn_id is not None and awaiting_turn(conversation_id).exists():
        # The patient wrote again while this turn ran: those messages get their own turn.
        turn_enqueue(conversation_id, countdown=settings.TURN_DEBOUNCE_SECONDS)


@shared_task(acks_late=True)
def turns_relay() -> int:
    """Periodic (beat): close turns a dead worker left running; enqueue turns whose task was lost."""
    from django.utils import timezone

    from conversations.turns import turns_due, turns_recover

    now = timezone.now()
    turns_recover(now=now)
    due = turns_due(now=now)
    for conversation_id in due:
        turn_enqueue(conversation_id)
    return len(due)


# The sweep stops starting new batches after this long, well inside the task's soft time limit; the rest is still due
# and goes on the next minute's sweep.
REMINDERS_SWEEP_SECONDS = 40.0


@shared_task(acks_late=True)
def reminders_sweep() -> dict:
    """Periodic (beat, every minute): no-shows, due reminders and follow-ups, unanswered steps (see outreach)."""
    import time

    from conversations.outreach import outreach_sweep

    budget = min(REMINDERS_SWEEP_SECONDS, settings.CELERY_TASK_SOFT_TIME_LIMIT * 2 / 3)
    return outreach_sweep(deadline=time.monotonic() + budget).as_dict()


def turn_holding_enqueue(turn_id: int) -> None:
    """In TURN_HOLDING_AFTER_SECONDS, tell the patient we are on it if the turn is still thinking by then."""
    try:
        turn_holding_message.apply_async((turn_id,), countdown=settings.TURN_HOLDING_AFTER_SECONDS)
    except Exception:  # no broker: the answer itself still goes out when the turn ends
        logger.warning("Holding message for turn %s not scheduled", turn_id, exc_info=True)


@shared_task(acks_late=True)
def turn_holding_message(turn_id: int) -> bool:
    from conversations.turns import turn_holding_send

    return turn_holding_send(turn_id=turn_id)
