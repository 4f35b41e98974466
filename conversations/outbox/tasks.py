"""The outbox's Celery tasks: thin, take ids, call one service. Names are fixed (beat's schedule refers to them)."""

from __future__ import annotations

import logging

from celery import shared_task

from conversations.outbox import relay, sending

logger = logging.getLogger(__name__)


@shared_task(name="conversations.outbox.message_send_task", acks_late=True, ignore_result=True)
def message_send_task(message_id: int) -> str:
    # Retries are not Celery retries: the row keeps next_attempt_at and the service enqueues the next try itself,
    # so a redelivered or duplicated task only finds nothing to claim.
    return str(sending.message_send(message_id=message_id))


@shared_task(name="conversations.outbox.outbox_relay_task", acks_late=True, ignore_result=True)
def outbox_relay_task() -> dict[str, int]:
    result = relay.outbox_relay()
    return {"enqueued": result.enqueued, "requeued": result.requeued, "unconfirmed": result.unconfirmed}


def message_send_enqueue(message_id: int, *, countdown: float = 0.0) -> None:
    """Publish a send; a broker outage is logged, not raised — the row is safe in PostgreSQL and the relay sends it."""
    try:
        message_send_task.apply_async((message_id,), countdown=countdown or None)
    except Exception:  # kombu raises many kinds
        logger.warning("Message %s queued but its send not enqueued; the relay will send it", message_id, exc_info=True)
