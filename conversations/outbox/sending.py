"""Sending one queued message: claim it, pace it, call the provider, record what happened. See the package docstring.

Every write after the claim is conditioned on the claim (`status = sending AND claimed_at = <ours>`), so a worker
that lost its row to the relay (it was too slow, or presumed dead) changes nothing.
"""

from __future__ import annotations

import datetime
import enum
import logging
import mimetypes
import os

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from cecilia.models import WhatsAppProvider
from conversations.attention import conversation_flag
from conversations.live import live_message
from conversations.models import (
    AttentionReason,
    Conversation,
    Message,
    MessageAuthor,
    MessageDirection,
    MessageKind,
    MessageStatus,
)
from conversations.outbox import pacing
from integrations.whatsapp.base import (
    Kind,
    MediaContent,
    OutboundMessage,
    ProviderError,
    ReplyButton,
    SendResult,
    Template,
    shared_http,
)
from scheduling.models import ReminderStep, StepStatus

logger = logging.getLogger(__name__)

UNCONFIRMED = "unconfirmed"  # error_code of a send that may or may not have reached WhatsApp
GAVE_UP = "gave_up"
_PENDING = (MessageStatus.QUEUED, MessageStatus.SENDING)
# Gateway timeout: a proxy in front of the provider stopped waiting, the provider itself may have sent the message.
_AMBIGUOUS_STATUSES = frozenset({504})
# A success answer without a message id (the adapters' "unexpected_response"): it may well have gone out.
_AMBIGUOUS_CODES = frozenset({"unexpected_response"})


class Outcome(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"  # temporary failure: queued again for next_attempt_at
    PACED = "paced"  # over the number's rate limit: queued again for its reserved slot
    FAILED = "failed"
    SKIPPED = "skipped"  # not claimable now: sent already, not due, an older message of the chat first, or gone


class _Unsendable(Exception):
    def __init__(self, code: str, staff_message: str) -> None:
        super().__init__(code)
        self.code = code
        self.staff_message = staff_message


def unconfirmed_message() -> str:
    return _(
        "Not confirmed: sending was interrupted, and WhatsApp may or may not have received this message. Check the "
        "conversation on the clinic's phone before sending it again."
    )


def message_send(*, message_id: int, now: datetime.datetime | None = None) -> Outcome:
    """Send one queued outbound message, at most once. Safe to call any number of times, concurrently."""
    from conversations.channel import channel_provider

    now = now or timezone.now()
    message = _claim(message_id, now)
    if message is None:
        return Outcome.SKIPPED
    token = message.claimed_at
    clinic = message.clinic
    try:
        if clinic.whatsapp_provider != WhatsAppProvider.CONSOLE:  # the simulator has no number to protect
            wait = pacing.rate_limit_wait(clinic_id=clinic.pk, message_id=message.pk)
            if wait > 0:
                _requeue(message, token, at=now + datetime.timedelta(seconds=wait), attempt_used=False)
                return Outcome.PACED
        outbound = _outbound(message)
    except _Unsendable as exc:
        return _fail(message, token, exc.code, exc.staff_message, now=now)
    except Exception as exc:
        # Nothing left Cecilia yet: retried like a temporary failure, so a persistent bug ends in "failed", not a loop.
        logger.error("Preparing message %s failed with %s", message.pk, type(exc).__name__)
        _retry_later(message, token, "internal_error", _("Cecilia could not prepare this message."), now=now)
        raise
    if not _mark_started(message, token):
        return Outcome.SKIPPED
    try:
        result = channel_provider(clinic, http=shared_http()).send(outbound)
    except ProviderError as exc:
        return _after_error(message, token, exc, now=now)
    except BaseException as exc:
        # A bug, the soft time limit, a worker shutdown: the request may be out. Name the type only (no texts).
        logger.error("Send of message %s interrupted by %s; marked unconfirmed", message.pk, type(exc).__name__)
        _fail(message, token, UNCONFIRMED, unconfirmed_message(), now=timezone.now())
        raise
    _record_sent(message, token, result, now=timezone.now())
    return Outcome.SENT


def _claim(message_id: int, now: datetime.datetime) -> Message | None:
    """The conditional UPDATE that makes one worker the sender: queued, due, and first in its chat's line."""
    older_pending = Message.objects.filter(
        conversation_id=OuterRef("conversation_id"),
        direction=MessageDirection.OUTBOUND,
        status__in=_PENDING,
        pk__lt=OuterRef("pk"),
    )
    with transaction.atomic():
        claimed = (
            Message.objects.filter(pk=message_id, direction=MessageDirection.OUTBOUND, status=MessageStatus.QUEUED)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .exclude(Exists(older_pending))
            .update(
                status=MessageStatus.SENDING,
                claimed_at=now,
                send_started_at=None,
                attempts=F("attempts") + 1,
            )
        )
        if claimed != 1:
            return None
        return Message.objects.select_related("clinic", "conversation__patient", "quoted").get(pk=message_id)


def _mine(message: Message, token: datetime.datetime | None) -> object:
    return Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING, claimed_at=token)


def _mark_started(message: Message, token: datetime.datetime | None) -> bool:
    """Commit, before the request leaves, that it may leave: from here on a crash means "unconfirmed", not "retry"."""
    return bool(_mine(message, token).update(send_started_at=timezone.now()))


def _outbound(message: Message) -> OutboundMessage:
    patient = message.conversation.patient
    if patient.anonymised_at is not None:  # LGPD (patients.lgpd): never written to again, whatever the row says
        raise _Unsendable("anonymised", _("Not sent: the patient's data was anonymised (LGPD)."))
    # The phone in E.164; a patient known only by WhatsApp's privacy id (`…@lid`) is reached by that id.
    to = patient.phone or patient.whatsapp_id
    if not to:
        raise _Unsendable("no_recipient", _("This patient has no WhatsApp number to send to."))
    media = None
    if message.kind != MessageKind.TEXT:
        media = _media(message)
    template = None
    if message.template:
        data = message.template
        template = Template(
            name=str(data.get("name", "")),
            language=str(data.get("language") or "pt_BR"),
            body_parameters=tuple(str(value) for value in data.get("body_parameters", ())),
        )
    return OutboundMessage(
        to=to,
        kind=Kind(message.kind),
        text=message.text,
        media=media,
        voice_note=message.kind == MessageKind.AUDIO,  # Cecilia's audio replies are voice notes
        quoted_message_id=message.quoted.provider_message_id if message.quoted else "",
        typing_delay_ms=settings.WHATSAPP_TYPING_DELAY_MS,
        template=template,
        buttons=tuple(ReplyButton(id=str(b["id"]), title=str(b["title"])) for b in message.buttons or ()),
    )


def _media(message: Message) -> MediaContent:
    missing = _Unsendable("media_missing", _("The attached file is missing. Attach it again and resend."))
    if not message.media:
        raise missing
    try:
        with message.media.open("rb") as handle:
            data = handle.read()
    except OSError:
        raise missing from None
    name = os.path.basename(message.media.name)
    mime = message.media_mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return MediaContent(data=data, mime_type=mime, file_name=name)


def _after_error(message: Message, token: datetime.datetime | None, exc: ProviderError, *, now) -> Outcome:
    if getattr(exc, "maybe_sent", False) or exc.status in _AMBIGUOUS_STATUSES or exc.code in _AMBIGUOUS_CODES:
        logger.warning("Send of message %s unconfirmed (%s)", message.pk, exc.code)
        return _fail(message, token, UNCONFIRMED, unconfirmed_message(), now=now)
    if exc.permanent:
        logger.info("Send of message %s failed for good (%s)", message.pk, exc.code)
        return _fail(message, token, exc.code, exc.staff_message, now=now)
    return _retry_later(message, token, exc.code, exc.staff_message, now=now)


def _retry_later(message: Message, token: datetime.datetime | None, code: str, reason: str, *, now) -> Outcome:
    """A temporary failure: queued again after a backoff, or failed once the attempts are used up."""
    if message.attempts >= settings.WHATSAPP_SEND_MAX_ATTEMPTS:
        logger.warning("Send of message %s given up after %s attempts (%s)", message.pk, message.attempts, code)
        gave_up = _("Not sent after %(attempts)d attempts. Last error: %(reason)s") % {
            "attempts": message.attempts,
            "reason": reason,
        }
        return _fail(message, token, GAVE_UP, gave_up, now=now)
    delay = pacing.backoff_seconds(message.attempts)
    logger.info("Send of message %s failed (%s); retry in %.1f s", message.pk, code, delay)
    _requeue(
        message, token, at=now + datetime.timedelta(seconds=delay), attempt_used=True, error=reason, error_code=code
    )
    return Outcome.RETRY


def _requeue(
    message: Message,
    token: datetime.datetime | None,
    *,
    at: datetime.datetime,
    attempt_used: bool,
    error: str = "",
    error_code: str = "",
) -> None:
    """Back to the queue for `at` (the last error stays visible to staff meanwhile), and a task for that time."""
    from conversations.outbox import tasks

    fields = {
        "status": MessageStatus.QUEUED,
        "next_attempt_at": at,
        "claimed_at": None,
        "send_started_at": None,
    }
    if error:
        fields |= {"error": error[:2000], "error_code": error_code[:40]}
    if not attempt_used:
        fields["attempts"] = F("attempts") - 1  # waiting for the rate limit is not a failed attempt
    with transaction.atomic():
        if _mine(message, token).update(**fields):
            delay = max((at - timezone.now()).total_seconds(), 0.0)
            transaction.on_commit(lambda: tasks.message_send_enqueue(message.pk, countdown=delay))


def _fail(message: Message, token: datetime.datetime | None, code: str, reason: str, *, now) -> Outcome:
    """Failed for good: the reason for staff, the conversation flagged, and the chat's next message let through."""
    with transaction.atomic():
        failed = _mine(message, token).update(
            status=MessageStatus.FAILED,
            error=reason[:2000] or code,
            error_code=code[:40],
            failed_at=now,
            next_attempt_at=None,
        )
        if failed:
            conversation_flag(conversation_id=message.conversation_id, reason=AttentionReason.FAILED_SEND, now=now)
            reminder_step_follow(step_id=message.reminder_step_id, status=MessageStatus.FAILED, at=now)
            live_message(message=message, status=MessageStatus.FAILED)
            _after_commit_send_next(message)
    return Outcome.FAILED


def _record_sent(message: Message, token: datetime.datetime | None, result: SendResult, *, now) -> None:
    """Keep the provider's id (receipts and the echo find the row by it) and apply receipts that came first."""
    from conversations.services import receipts_apply

    with transaction.atomic():
        row = Message.objects.select_for_update().get(pk=message.pk)
        if row.claimed_at != token:
            # Requeued by staff after the relay gave up on us: that is a new send now. Nothing left to record.
            logger.error("Message %s was sent but its row was claimed again; provider id not stored", message.pk)
            return
        fields = ["provider_message_id", "sent_at", "next_attempt_at"]
        row.provider_message_id = result.provider_message_id[:128]
        row.sent_at = row.sent_at or now
        row.next_attempt_at = None
        if row.status in (MessageStatus.SENDING, MessageStatus.FAILED):
            # FAILED: the relay presumed us dead; the provider's answer says otherwise.
            row.status, row.error, row.error_code, row.failed_at = MessageStatus.SENT, "", "", None
            fields += ["status", "error", "error_code", "failed_at"]
        try:
            with transaction.atomic():
                row.save(update_fields=fields)
        except IntegrityError:
            if _drop_echo_copy(row):
                row.save(update_fields=fields)
            else:
                # Another message holds that id (a provider bug): it did go out, so it is sent, without the id.
                logger.error("Provider id of sent message %s belongs to another message; not stored", row.pk)
                row.provider_message_id = ""
                row.save(update_fields=fields)
        Conversation.objects.filter(pk=row.conversation_id).filter(
            Q(last_outbound_at__isnull=True) | Q(last_outbound_at__lt=row.sent_at)
        ).update(last_outbound_at=row.sent_at)
        reminder_step_follow(step_id=row.reminder_step_id, status=MessageStatus.SENT, at=row.sent_at)
        live_message(message=row)  # before the receipts', which may move it further
        receipts_apply(clinic=row.clinic, provider_message_id=row.provider_message_id)
        _after_commit_send_next(row)


# What a reminder step becomes as its message goes out, and from which statuses (never backwards, and never once the
# patient answered: confirmed, cancelled, reschedule_requested, answered and no_answer are left alone).
_STEP_PROGRESS = (StepStatus.SCHEDULED, StepStatus.QUEUED, StepStatus.SENT, StepStatus.DELIVERED, StepStatus.READ)
_STEP_FOLLOWS = {
    # From failed too: the relay presumed the worker dead, and the provider's answer says the message did go out.
    MessageStatus.SENT: (StepStatus.SENT, (*_STEP_PROGRESS[:2], StepStatus.FAILED)),
    MessageStatus.DELIVERED: (StepStatus.DELIVERED, _STEP_PROGRESS[:3]),
    MessageStatus.READ: (StepStatus.READ, _STEP_PROGRESS[:4]),
    MessageStatus.PLAYED: (StepStatus.READ, _STEP_PROGRESS[:4]),
    MessageStatus.FAILED: (StepStatus.FAILED, (StepStatus.QUEUED, StepStatus.SENT)),
    MessageStatus.QUEUED: (StepStatus.QUEUED, (StepStatus.FAILED,)),  # staff's retry of a failed message
}


def reminder_step_follow(*, step_id: int | None, status: MessageStatus | str, at: datetime.datetime) -> int:
    """Move the reminder step of an outbound message (`Message.reminder_step_id`; None for ordinary messages, which
    cost nothing) along with the message's new `status`. One conditional UPDATE; how many steps changed (0 or 1)."""
    follows = _STEP_FOLLOWS.get(MessageStatus(status))
    if step_id is None or follows is None:
        return 0
    new, before = follows
    fields: dict[str, object] = {"status": new, "updated_at": timezone.now()}
    if new in (StepStatus.SENT, StepStatus.DELIVERED, StepStatus.READ):
        fields["sent_at"] = Coalesce(F("sent_at"), Value(at))
    elif new == StepStatus.QUEUED:
        fields["queued_at"] = at
    return ReminderStep.objects.filter(pk=step_id, status__in=before).update(**fields)


def _drop_echo_copy(row: Message) -> bool:
    """The provider's echo of this very send was recorded first, as a message typed on the clinic's phone: it is
    this message, so that copy goes. False when what holds the id is not such a copy."""
    echo = Message.objects.filter(
        clinic_id=row.clinic_id,
        provider_message_id=row.provider_message_id,
        conversation_id=row.conversation_id,
        direction=MessageDirection.OUTBOUND,
        author=MessageAuthor.STAFF,
        author_user__isnull=True,
    ).exclude(pk=row.pk)
    if not echo.delete()[0]:
        return False
    logger.info("Echo of message %s was recorded before its send returned; the copy was removed", row.pk)
    return True


def _after_commit_send_next(message: Message) -> None:
    """One message in flight per chat: when one is settled, the next of its chat may go."""
    from conversations.outbox import tasks

    following = (
        Message.objects.filter(
            conversation_id=message.conversation_id,
            direction=MessageDirection.OUTBOUND,
            status=MessageStatus.QUEUED,
            pk__gt=message.pk,
        )
        .order_by("pk")
        .values_list("pk", "next_attempt_at")
        .first()
    )
    if following is None:
        return
    next_id, next_at = following
    delay = max((next_at - timezone.now()).total_seconds(), 0.0) if next_at else 0.0
    transaction.on_commit(lambda: tasks.message_send_enqueue(next_id, countdown=delay))


def sends_in_flight(*, conversation: Conversation) -> QuerySet[Message]:
    """Our sends to this chat that may have reached WhatsApp without our knowing their id yet: started, not answered
    (or cut off and marked unconfirmed). A `fromMe` message meanwhile may be the echo of one of them."""
    return Message.objects.filter(
        conversation=conversation,
        direction=MessageDirection.OUTBOUND,
        provider_message_id="",
        send_started_at__isnull=False,
    ).filter(Q(status=MessageStatus.SENDING) | Q(status=MessageStatus.FAILED, error_code=UNCONFIRMED))


def message_echo_adopt(
    *, conversation: Conversation, provider_message_id: str, text: str, now: datetime.datetime | None = None
) -> Message | None:
    """The provider's echo of one of our sends (Evolution's `send.message`, a `fromMe` upsert) for a row that does
    not know its id yet — the send's answer is still on its way, or was lost with a dead worker (marked unconfirmed).
    The echo proves it left: the row takes the id and is sent. None when no such row matches (a message typed on
    the clinic's phone). For the inbound path, before it records a `fromMe` message as staff's.
    """
    from conversations.services import receipts_apply

    now = now or timezone.now()
    with transaction.atomic():
        row = (
            sends_in_flight(conversation=conversation)
            .select_for_update()
            .filter(text=text)
            # The send in flight first: an older unconfirmed row with the same words must not take its id.
            .order_by(Case(When(status=MessageStatus.SENDING, then=0), default=1), "pk")
            .first()
        )
        if row is None:
            return None
        row.provider_message_id = provider_message_id[:128]
        row.status, row.error, row.error_code, row.failed_at = MessageStatus.SENT, "", "", None
        row.sent_at = row.sent_at or now
        row.save(update_fields=["provider_message_id", "status", "error", "error_code", "failed_at", "sent_at"])
        live_message(message=row)  # an open desk shows the tick (or takes back the failed mark) without a reload
        reminder_step_follow(step_id=row.reminder_step_id, status=MessageStatus.SENT, at=row.sent_at)
        receipts_apply(clinic=conversation.clinic, provider_message_id=row.provider_message_id)
        _after_commit_send_next(row)
    return row
