"""The console provider: the built-in WhatsApp simulator for the embedded default and tests. No network at all.

Inbound events are created server-side by the simulator page (a staff session), never by the internet, in a tiny
format of our own:

    {"type": "message", "id": "…", "from": "+5511987654321", "name": "Maria", "text": "Oi", "timestamp": 1763746325}
    {"type": "status", "id": "…", "status": "delivered"}

`timestamp` (Unix seconds or ISO 8601 with an offset) is optional. Outbound messages never leave the server: `send`
only names them, and the rows stay in the database for the simulator to show.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from typing import Any

from integrations.whatsapp import jids
from integrations.whatsapp._common import fail, optional_text, provider_error, text_field, unix_datetime
from integrations.whatsapp.base import (
    ChannelState,
    DeliveryStatus,
    Event,
    InboundMessage,
    Kind,
    MediaContent,
    MediaRef,
    OutboundMessage,
    SendResult,
    StatusUpdate,
    WhatsAppProvider,
)

_STATUSES = {status.value: status for status in DeliveryStatus}


class ConsoleProvider(WhatsAppProvider):
    name = "console"

    def verify_webhook(self, raw_body: bytes, headers: Mapping[str, str], payload: Any) -> bool:
        """Always False: the console has no public webhook. The simulator stores its events directly, so anything
        arriving over HTTP for this provider is, by construction, not from it."""
        return False

    def parse_webhook(self, payload: Any) -> list[Event]:
        if not isinstance(payload, Mapping):
            raise fail("(body)", "is not a JSON object")
        kind = payload.get("type")
        if kind == "message":
            return [_message(payload)]
        if kind == "status":
            status = _STATUSES.get(optional_text(payload, "status"))
            if status is None:
                raise fail("status", "is not a delivery status")
            return [StatusUpdate(text_field(payload, "id", "id"), status)]
        raise fail("type", "is not 'message' or 'status'")

    def event_identity(self, payload: Any) -> str:
        if not isinstance(payload, Mapping):
            raise fail("(body)", "is not a JSON object")
        parts = (optional_text(payload, "type"), text_field(payload, "id", "id"), optional_text(payload, "status"))
        return "console|" + "|".join(parts)

    def send(self, message: OutboundMessage) -> SendResult:
        # `buttons` are not shown: the simulator shows the stored text, which already lists the options.
        return SendResult(f"console-{uuid.uuid4().hex}", chat_id=message.to)

    def download_media(self, media: MediaRef, *, max_bytes: int | None = None) -> MediaContent:
        # The simulator sends text only; there is nowhere to fetch media from.
        raise provider_error("media_unavailable", permanent=True)

    def mark_read(self, *, chat_id: str, provider_message_id: str) -> None:
        return None

    def connection_state(self) -> ChannelState:
        return ChannelState.OPEN


def _message(payload: Mapping[str, Any]) -> InboundMessage:
    sender = text_field(payload, "from", "from")
    phone = jids.phone_of("".join(ch for ch in sender if ch.isdigit()))
    if phone is None:
        raise fail("from", "is not a phone number")
    return InboundMessage(
        provider_message_id=text_field(payload, "id", "id"),
        chat_id=sender,
        phone=phone,
        lid=None,
        from_me=False,
        sender_name=optional_text(payload, "name"),
        kind=Kind.TEXT,
        text=optional_text(payload, "text"),
        timestamp=_timestamp(payload.get("timestamp")),
    )


def _timestamp(value: object) -> datetime.datetime | None:
    if isinstance(value, str) and not value.strip().isdigit():
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise fail("timestamp", "is not ISO 8601") from None
        if parsed.tzinfo is None:
            raise fail("timestamp", "has no UTC offset")
        return parsed.astimezone(datetime.UTC)
    try:
        return unix_datetime(value)
    except ValueError:
        raise fail("timestamp", "is not a Unix timestamp") from None
