"""The WhatsApp simulator: staff type as a patient of a console clinic, and the message takes the real inbound path.

A simulated message is the console provider's webhook body (integrations/whatsapp/console.py), checked and stored as
an `InboundEvent` and enqueued on commit exactly as `conversations.webhooks` does for a real provider. From the stored
event on, nothing knows it was simulated: the task parses it, `message_receive` files it, the turn answers it, and the
console provider "sends" the replies (they stay in the database, where the simulator page reads them).

Only clinics whose provider is the console may be simulated: for a real channel this would put invented patient
messages into a clinic's real conversations, and the replies would go to a real phone.
"""

from __future__ import annotations

import datetime
import re
import uuid
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from cecilia.models import Clinic, WhatsAppProvider
from conversations.channel import channel_provider
from conversations.models import InboundEvent, Message, WebhookProvider
from conversations.services import inbound_event_store
from conversations.tasks import inbound_event_enqueue
from integrations.whatsapp.base import MalformedPayload
from patients.models import Patient

# WhatsApp's own limit for a text message.
MAX_TEXT_LENGTH = 4096
# The transcript shows the latest messages; older ones are in the conversation's admin page.
TRANSCRIPT_LIMIT = 200
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")
SIMULATOR_ONLY_CONSOLE = _("The simulator only works for clinics whose WhatsApp provider is the console (simulator).")


class SimulatorRefused(Exception):
    """The simulator cannot send this; `message` says why, for staff."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def simulator_available(clinic: Clinic) -> bool:
    return clinic.whatsapp_provider == WhatsAppProvider.CONSOLE


def simulator_message_id() -> str:
    """A fresh id for one simulated message; the form carries it, so sending the same form twice stores it once."""
    return f"sim-{uuid.uuid4().hex}"


def simulator_message_send(
    *, clinic: Clinic, phone: str, text: str, name: str = "", message_id: str | None = None
) -> InboundEvent | None:
    """Store a patient's message, typed in the simulator, as the console provider's webhook event and enqueue it.

    `phone` is an E.164 number (patients.phones.normalize_phone). Returns the stored event, or None when an event
    with the same `message_id` was stored already (the same form sent twice). Raises SimulatorRefused when the clinic
    is not a console clinic or the message is empty; nothing is stored then.
    """
    if not simulator_available(clinic):
        raise SimulatorRefused(str(SIMULATOR_ONLY_CONSOLE))
    text = text.strip()
    if not text:
        raise SimulatorRefused(str(_("Type a message.")))
    if len(text) > MAX_TEXT_LENGTH:
        raise SimulatorRefused(str(_("A WhatsApp message has at most %(max)d characters.")) % {"max": MAX_TEXT_LENGTH})
    if message_id is None or not _MESSAGE_ID.fullmatch(message_id):
        message_id = simulator_message_id()
    payload = {
        "type": "message",
        "id": message_id,
        "from": phone,
        "name": name.strip()[:120],
        "text": text,
        "timestamp": int(timezone.now().timestamp()),
    }
    provider = channel_provider(clinic)
    try:
        # The checks the webhook view makes at the door, so the task never meets a body it cannot process.
        provider.parse_webhook(payload)
        identity = provider.event_identity(payload)
    except MalformedPayload as exc:
        raise SimulatorRefused(str(_("This message cannot be simulated: %(error)s")) % {"error": exc}) from None
    with transaction.atomic():
        event = inbound_event_store(
            clinic=clinic,
            provider=WebhookProvider.CONSOLE,
            event_type="message",
            dedupe_key=identity,
            payload=payload,
        )
        if event is not None:
            transaction.on_commit(lambda: inbound_event_enqueue(event.pk))
    return event


@dataclass(frozen=True)
class Transcript:
    patient: Patient | None
    messages: list[Message]
    pending: list[InboundEvent]  # stored, not yet processed (the worker has not run them yet)


def simulator_transcript(*, clinic: Clinic, phone: str) -> Transcript:
    """The chat of `phone` (E.164) with the clinic, oldest first, plus simulated messages still waiting for a worker."""
    patient = Patient.objects.filter(clinic=clinic, phone=phone).first()
    messages: list[Message] = []
    if patient is not None:
        latest = (
            Message.objects.filter(clinic=clinic, conversation__patient=patient)
            .select_related("author_user")
            .order_by("-created_at", "-id")[:TRANSCRIPT_LIMIT]
        )
        messages = list(reversed(latest))
    pending = list(
        InboundEvent.objects.filter(
            clinic=clinic, provider=WebhookProvider.CONSOLE, processed_at__isnull=True, payload__from=phone
        ).order_by("received_at", "id")[:50]
    )
    return Transcript(patient, messages, pending)


def pending_is_late(event: InboundEvent, *, now: datetime.datetime | None = None) -> bool:
    """Waiting long enough that the worker is probably not running (`make run` starts one)."""
    return ((now or timezone.now()) - event.received_at) > datetime.timedelta(seconds=10)
