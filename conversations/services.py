"""Writes about conversations: what arrives from WhatsApp, and what happened to what we sent.

Every function here is idempotent on the provider's ids, because providers redeliver: a webhook delivered three
times, or a task run twice after a worker crash, has one effect (Invariant 1).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from cecilia.models import ChannelState, Clinic
from conversations.attention import conversation_flag
from conversations.live import live_conversation, live_message
from conversations.models import (
    AttentionReason,
    Conversation,
    ConversationOwner,
    InboundEvent,
    Message,
    MessageAuthor,
    MessageDirection,
    MessageStatus,
    StatusReceipt,
)
from conversations.outbox.sending import message_echo_adopt, reminder_step_follow, sends_in_flight
from integrations.whatsapp.base import (
    ConnectionUpdate,
    DeliveryStatus,
    InboundMessage,
    Kind,
    MalformedPayload,
    QrCodeUpdate,
    StatusUpdate,
)
from patients.services import patient_for_chat

logger = logging.getLogger(__name__)

# How far along a sent message is; a late or repeated receipt never moves it back ("delivered" after "read").
_PROGRESS = {
    MessageStatus.QUEUED: 0,
    MessageStatus.SENT: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.READ: 3,
    MessageStatus.PLAYED: 4,
}
_RECEIPT_STATUS = {
    DeliveryStatus.SENT: MessageStatus.SENT,
    DeliveryStatus.DELIVERED: MessageStatus.DELIVERED,
    DeliveryStatus.READ: MessageStatus.READ,
    DeliveryStatus.PLAYED: MessageStatus.PLAYED,
    DeliveryStatus.FAILED: MessageStatus.FAILED,
}


def inbound_event_store(
    *, clinic: Clinic, provider: str, event_type: str, dedupe_key: str, payload: Any
) -> InboundEvent | None:
    """Keep a verified webhook body as received. None when the same event was already stored (a redelivery).

    In autocommit this is one INSERT (the webhook's hot path); inside a caller's transaction a savepoint keeps a
    duplicate's IntegrityError from breaking it.
    """
    try:
        with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
            return InboundEvent.objects.create(
                clinic=clinic,
                provider=provider,
                event_type=event_type[:60],
                dedupe_key=dedupe_key[:255],
                payload=payload,
            )
    except IntegrityError:
        if (
            dedupe_key
            and InboundEvent.objects.filter(clinic=clinic, provider=provider, dedupe_key=dedupe_key[:255]).exists()
        ):
            return None
        raise


@transaction.atomic
def message_receive(*, clinic: Clinic, inbound: InboundMessage, event: InboundEvent | None = None) -> Message | None:
    """Record one message of a patient's chat. None when it is already recorded (redelivery, or our own echo).

    Messages typed on the clinic's phone (`from_me`) are staff messages and hand the conversation to staff: the
    assistant must not talk over a receptionist.
    """
    if Message.objects.filter(clinic=clinic, provider_message_id=inbound.provider_message_id).exists():
        return None
    whatsapp_id = inbound.lid or inbound.chat_id
    patient = patient_for_chat(
        clinic=clinic,
        phone=inbound.phone,
        whatsapp_id=whatsapp_id,
        whatsapp_name="" if inbound.from_me else inbound.sender_name,
    )
    conversation = _conversation_for(clinic, patient)
    # The echo of our own send whose answer has not reached us (or was lost with a dead worker): it proves the
    # message left, so that row is confirmed — it is not a message staff typed on the phone.
    if inbound.from_me and message_echo_adopt(
        conversation=conversation, provider_message_id=inbound.provider_message_id, text=_text_of(inbound)
    ):
        return None
    sent_at = inbound.timestamp or timezone.now()
    fields = {
        "conversation": conversation,
        "kind": str(inbound.kind),
        "text": _text_of(inbound),
        "media_mime_type": inbound.media.mime_type[:100] if inbound.media else "",
        "inbound_event": event,
    }
    if inbound.from_me:
        fields |= {
            "direction": MessageDirection.OUTBOUND,
            "author": MessageAuthor.STAFF,
            "status": MessageStatus.SENT,
            "sent_at": sent_at,
        }
    else:
        fields |= {
            "direction": MessageDirection.INBOUND,
            "author": MessageAuthor.PATIENT,
            "status": MessageStatus.RECEIVED,
            "sent_at": sent_at,  # when the patient sent it: orders a burst that workers stored out of order
        }
    try:
        with transaction.atomic():
            message = Message.objects.create(clinic=clinic, provider_message_id=inbound.provider_message_id, **fields)
    except IntegrityError:
        return None  # a concurrent delivery of the same message got there first
    # A fromMe message during one of our sends may be its echo (a voice note's echo has no text to match): staff
    # take over only when nothing of ours is on its way.
    took_over = inbound.from_me and not sends_in_flight(conversation=conversation).exclude(pk=message.pk).exists()
    _conversation_touch(conversation, inbound=not inbound.from_me, at=sent_at, staff_took_over=took_over)
    live_message(message=message)
    receipts_apply(clinic=clinic, provider_message_id=inbound.provider_message_id)
    if not inbound.from_me:
        # The assistant considers it once the chat has been quiet for a moment (conversations.turns).
        from conversations.tasks import turn_enqueue

        conversation_id = conversation.pk
        transaction.on_commit(lambda: turn_enqueue(conversation_id, countdown=settings.TURN_DEBOUNCE_SECONDS))
    if inbound.media is not None:
        # Fetched apart, after commit: a slow or failing download never holds back the text of the conversation.
        from conversations.media import message_media_fetch_enqueue

        transaction.on_commit(lambda: message_media_fetch_enqueue(message.pk))
    return message


def _text_of(inbound: InboundMessage) -> str:
    if inbound.kind == Kind.REACTION:
        return inbound.text  # the emoji; "" when the patient removed the reaction
    if inbound.location is not None and not inbound.text:
        loc = inbound.location
        return " — ".join(filter(None, [loc.name, loc.address, f"{loc.latitude:.6f}, {loc.longitude:.6f}"]))
    if inbound.contacts and not inbound.text:
        return ", ".join(inbound.contacts)
    if inbound.selected_option_id:
        # Staff see what the patient picked and its id (the id is what flows key on).
        return f"{inbound.text} [{inbound.selected_option_id}]".strip()
    return inbound.text


def _conversation_for(clinic: Clinic, patient: Any) -> Conversation:
    conversation = Conversation.objects.filter(clinic=clinic, patient=patient).select_for_update().first()
    if conversation is not None:
        return conversation
    try:
        with transaction.atomic():
            return Conversation.objects.create(clinic=clinic, patient=patient)
    except IntegrityError:
        return Conversation.objects.select_for_update().get(clinic=clinic, patient=patient)


def _conversation_touch(
    conversation: Conversation, *, inbound: bool, at: datetime.datetime, staff_took_over: bool
) -> None:
    """Record a new message on its (locked) conversation: the inbox's recency and unread count, a closed conversation
    opened again by the patient, and staff answering from the clinic's phone taking it over."""
    changed = []
    if inbound:
        conversation.unread_count += 1
        changed.append("unread_count")
        if conversation.closed_at is not None:
            conversation.closed_at = None
            changed.append("closed_at")
    if inbound and (conversation.last_inbound_at is None or at > conversation.last_inbound_at):
        conversation.last_inbound_at = at
        changed.append("last_inbound_at")
    if not inbound and (conversation.last_outbound_at is None or at > conversation.last_outbound_at):
        conversation.last_outbound_at = at
        changed.append("last_outbound_at")
    if staff_took_over and conversation.owner != ConversationOwner.HUMAN:
        # owner_since stays: the idle hand-back counts from staff's last message, which this one is.
        conversation.owner = ConversationOwner.HUMAN
        changed.append("owner")
        live_conversation(
            conversation_id=conversation.pk, data={"owner": conversation.owner}, clinic_id=conversation.clinic_id
        )
    if changed:
        conversation.save(update_fields=[*changed, "updated_at"])


@transaction.atomic
def status_update_record(*, clinic: Clinic, update: StatusUpdate) -> None:
    """Keep a delivery receipt and apply it to its message, now or when the message shows up."""
    status = _RECEIPT_STATUS.get(update.status)
    if status is None:
        return  # "deleted" and the like: nothing staff act on yet
    StatusReceipt.objects.bulk_create(
        [
            StatusReceipt(
                clinic=clinic,
                provider_message_id=update.provider_message_id,
                status=status,
                error=update.error[:2000],
                occurred_at=update.timestamp or timezone.now(),
            )
        ],
        ignore_conflicts=True,
    )
    receipts_apply(clinic=clinic, provider_message_id=update.provider_message_id)


def receipts_apply(*, clinic: Clinic, provider_message_id: str) -> None:
    """Move an outbound message forward by every receipt stored for it; never backwards."""
    message = (
        Message.objects.select_for_update()
        .filter(clinic=clinic, provider_message_id=provider_message_id, direction=MessageDirection.OUTBOUND)
        .first()
    )
    if message is None:
        return
    receipts = StatusReceipt.objects.filter(clinic=clinic, provider_message_id=provider_message_id)
    changed: set[str] = set()
    was_failed = message.status == MessageStatus.FAILED
    for receipt in receipts.order_by("occurred_at"):
        changed |= _apply_receipt(message, receipt)
    if changed:
        message.save(update_fields=sorted(changed))
    if "status" in changed:
        # A reminder's step follows its message: delivered, read, or failed after WhatsApp accepted it.
        reminder_step_follow(step_id=message.reminder_step_id, status=message.status, at=timezone.now())
        live_message(message=message)
    if message.status == MessageStatus.FAILED and not was_failed:
        # WhatsApp refused it after accepting the send (Meta reports "not on WhatsApp" this way): staff must know.
        conversation_flag(
            conversation_id=message.conversation_id, reason=AttentionReason.FAILED_SEND, now=timezone.now()
        )


def _apply_receipt(message: Message, receipt: StatusReceipt) -> set[str]:
    status = MessageStatus(receipt.status)
    if status == MessageStatus.FAILED:
        if message.status in (MessageStatus.QUEUED, MessageStatus.SENT):
            message.status = MessageStatus.FAILED
            message.error = receipt.error or "WhatsApp não entregou a mensagem."
            message.failed_at = receipt.occurred_at
            return {"status", "error", "failed_at"}
        return set()
    stamps = {
        MessageStatus.SENT: "sent_at",
        MessageStatus.DELIVERED: "delivered_at",
        MessageStatus.READ: "read_at",
        MessageStatus.PLAYED: "read_at",
    }
    changed = set()
    stamp = stamps[status]
    if getattr(message, stamp) is None:
        setattr(message, stamp, receipt.occurred_at)
        changed.add(stamp)
    if message.status in _PROGRESS and _PROGRESS[status] > _PROGRESS[MessageStatus(message.status)]:
        message.status = status
        changed.add("status")
    return changed


def channel_state_record(
    *, clinic: Clinic, update: ConnectionUpdate | QrCodeUpdate, at: datetime.datetime | None = None
) -> None:
    """Remember what the provider says about the clinic's connection (staff are alerted when it stays down).

    `at` is when the provider said it (the webhook's arrival; now for an answer to our own request). A report older
    than the one already recorded is ignored: a delayed "close" must not undo the "open" that followed it.
    """
    at = at or timezone.now()
    state = ChannelState.CONNECTING if isinstance(update, QrCodeUpdate) else ChannelState(str(update.state))
    with transaction.atomic():
        current = (
            Clinic.objects.select_for_update()
            .only("channel_state", "channel_state_since", "channel_state_reported_at", "channel_phone")
            .get(pk=clinic.pk)
        )
        if current.channel_state_reported_at is not None and at < current.channel_state_reported_at:
            return
        fields: dict[str, Any] = {"channel_state_reported_at": at}
        if current.channel_state != state:
            fields |= {"channel_state": state, "channel_state_since": at}
        if isinstance(update, ConnectionUpdate) and update.phone and update.phone != current.channel_phone:
            fields["channel_phone"] = update.phone[:20]
        Clinic.objects.filter(pk=clinic.pk).update(**fields)
    for name, value in fields.items():
        setattr(clinic, name, value)


# A stored event that failed this many times is given up on (kept, with its error, for staff and for a fix).
MAX_PROCESSING_ATTEMPTS = 10


def pending_events(*, older_than: datetime.timedelta) -> Any:
    """Stored events nobody processed (their enqueue was lost to a Redis outage or a crash), fewest attempts first:
    a few events that keep failing never hold back the ones that were simply never tried."""
    cutoff = timezone.now() - older_than
    return InboundEvent.objects.filter(Q(processed_at__isnull=True), received_at__lt=cutoff).order_by(
        "attempts", "received_at"
    )


def inbound_event_process(*, event_id: int) -> None:
    """Turn one stored webhook into messages, receipts and channel state. Safe to run twice, or concurrently.

    The row lock makes a second worker skip an event being processed; `processed_at` makes a rerun a no-op; every
    write below is idempotent on provider ids, so a crash halfway and a rerun still leave one of everything.
    """
    from conversations.channel import channel_provider

    with transaction.atomic():
        event = (
            InboundEvent.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("clinic")
            .filter(pk=event_id, processed_at__isnull=True)
            .first()
        )
        if event is None:
            return
        event.attempts += 1
        try:
            parsed = channel_provider(event.clinic).parse_webhook(event.payload)
        except MalformedPayload as exc:
            # Checked at the door already; a parser change could still refuse an old row. Keep it for staff.
            event.error = f"malformed: {exc}"[:2000]
            event.processed_at = timezone.now()
            event.save(update_fields=["attempts", "error", "processed_at"])
            return
        try:
            with transaction.atomic():  # a savepoint: a failure undoes this event's writes, not its bookkeeping
                for item in parsed:
                    _dispatch(event, item)
        except Exception as exc:  # any bug or outage: record it, let the relay retry, never lose the event
            # The type only: an error's text can quote a patient's message (LGPD).
            event.error = f"attempt {event.attempts} failed: {type(exc).__name__}"
            if event.attempts >= MAX_PROCESSING_ATTEMPTS:
                event.processed_at = timezone.now()  # given up: staff see it, with its error, in the admin
            event.save(update_fields=["attempts", "error", "processed_at"])
            logger.error("Inbound event %s not processed (%s)", event.pk, type(exc).__name__)
            return
        event.processed_at = timezone.now()
        event.error = ""
        event.save(update_fields=["attempts", "error", "processed_at"])


def _dispatch(event: InboundEvent, item: Any) -> None:
    clinic = event.clinic
    if isinstance(item, InboundMessage):
        message_receive(clinic=clinic, inbound=item, event=event)
    elif isinstance(item, StatusUpdate):
        status_update_record(clinic=clinic, update=item)
    elif isinstance(item, ConnectionUpdate | QrCodeUpdate):
        channel_state_record(clinic=clinic, update=item, at=event.received_at)
