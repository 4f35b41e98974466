"""The outbox relay (beat, every 30 s): nothing queued is forgotten, nothing half-sent is sent again (Invariant 3)."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.attention import conversation_flag
from conversations.models import AttentionReason, Message, MessageDirection, MessageStatus
from conversations.outbox.sending import GAVE_UP, UNCONFIRMED, reminder_step_follow, unconfirmed_message

logger = logging.getLogger(__name__)

# A queued message whose task should have run this long ago lost it (crash between commit and publish, Redis down).
LOST_AFTER = datetime.timedelta(seconds=30)
# A claim that never reached the provider call is requeued after this long (the worker died right after claiming).
CLAIM_EXPIRES_AFTER = datetime.timedelta(seconds=60)
BATCH = 500


def unconfirmed_after() -> datetime.timedelta:
    """How long a send may be in flight before its worker is presumed dead: longer than any task may live."""
    return datetime.timedelta(seconds=max(settings.CELERY_TASK_TIME_LIMIT, 60) + 30)


@dataclass(frozen=True)
class RelayResult:
    enqueued: int
    requeued: int
    unconfirmed: int


def outbox_relay(*, now: datetime.datetime | None = None) -> RelayResult:
    """Settle rows left "sending" by dead workers, then enqueue every chat's next message whose task was lost.

    * "sending", the request never started (`send_started_at` empty) → queued again: nothing left Cecilia.
    * "sending", the request started → failed "not confirmed", the conversation flagged: it may have reached the
      patient, so only a person who checked the phone resends it (Cecilia never sends a message twice).
    """
    from conversations.outbox import tasks

    now = now or timezone.now()
    requeued = _requeue_never_started(now)
    unconfirmed = _settle_in_flight(now)
    ids = list(_forgotten(now).values_list("pk", flat=True)[:BATCH])
    for message_id in [*requeued, *ids]:
        tasks.message_send_enqueue(message_id)
    if requeued or unconfirmed or ids:
        logger.info("Outbox relay: %s enqueued, %s requeued, %s unconfirmed", len(ids), len(requeued), unconfirmed)
    return RelayResult(enqueued=len(ids), requeued=len(requeued), unconfirmed=unconfirmed)


def _stuck() -> QuerySet[Message]:
    return Message.objects.filter(status=MessageStatus.SENDING, direction=MessageDirection.OUTBOUND)


def _requeue_never_started(now: datetime.datetime) -> list[int]:
    """Claims whose worker died before the request left: queued again (failed once the attempts are used up)."""
    requeued = []
    expired = _stuck().filter(send_started_at__isnull=True, claimed_at__lt=now - CLAIM_EXPIRES_AFTER)
    for pk, claimed_at, attempts, conversation_id, step_id in expired.values_list(
        "pk", "claimed_at", "attempts", "conversation_id", "reminder_step_id"
    )[:BATCH]:
        # Conditioned on the claim: a worker that is merely slow finds its row gone and does not send.
        claim = _stuck().filter(pk=pk, claimed_at=claimed_at, send_started_at__isnull=True)
        if attempts < settings.WHATSAPP_SEND_MAX_ATTEMPTS:
            if claim.update(status=MessageStatus.QUEUED, claimed_at=None, next_attempt_at=None):
                requeued.append(pk)
            continue
        reason = _("Not sent after %(attempts)d attempts. Last error: %(reason)s") % {
            "attempts": attempts,
            "reason": _("the worker preparing it stopped."),
        }
        with transaction.atomic():  # workers keep dying on this one (a file too big for memory?): stop trying
            if claim.update(
                status=MessageStatus.FAILED, error=reason, error_code=GAVE_UP, failed_at=now, next_attempt_at=None
            ):
                conversation_flag(conversation_id=conversation_id, reason=AttentionReason.FAILED_SEND, now=now)
                reminder_step_follow(step_id=step_id, status=MessageStatus.FAILED, at=now)
    return requeued


def _settle_in_flight(now: datetime.datetime) -> int:
    """Sends in flight for longer than any worker lives: failed "not confirmed", never resent. How many."""
    unconfirmed = 0
    in_flight = _stuck().filter(send_started_at__isnull=False, claimed_at__lt=now - unconfirmed_after())
    rows = in_flight.values_list("pk", "claimed_at", "conversation_id", "reminder_step_id")[:BATCH]
    for pk, claimed_at, conversation_id, step_id in rows:
        with transaction.atomic():
            if (
                _stuck()
                .filter(pk=pk, claimed_at=claimed_at)
                .update(
                    status=MessageStatus.FAILED,
                    error=unconfirmed_message(),
                    error_code=UNCONFIRMED,
                    failed_at=now,
                    next_attempt_at=None,
                )
            ):
                unconfirmed += 1
                conversation_flag(conversation_id=conversation_id, reason=AttentionReason.FAILED_SEND, now=now)
                # A reminder that may or may not have arrived is failed too: staff see it and decide on a resend.
                reminder_step_follow(step_id=step_id, status=MessageStatus.FAILED, at=now)
                logger.warning("Message %s left in flight by a dead worker; marked unconfirmed", pk)
    return unconfirmed


def _forgotten(now: datetime.datetime) -> QuerySet[Message]:
    """The first pending message of each chat, queued and due for a while: its task is lost (or never was)."""
    older_pending = Message.objects.filter(
        conversation_id=OuterRef("conversation_id"),
        direction=MessageDirection.OUTBOUND,
        status__in=(MessageStatus.QUEUED, MessageStatus.SENDING),
        pk__lt=OuterRef("pk"),
    )
    return (
        Message.objects.filter(direction=MessageDirection.OUTBOUND, status=MessageStatus.QUEUED)
        .alias(due=Coalesce("next_attempt_at", "created_at"))
        .filter(due__lte=now - LOST_AFTER)
        .exclude(Exists(older_pending))
        .order_by("pk")
    )
