"""The WhatsApp provider contract. One module per provider (evolution, meta_cloud, console) implements it.

Adapters import no Django models: they take plain dataclasses in and give dataclasses out, so the apps decide what
a message means for a clinic and the adapters only speak the wire format.

The contract, for every provider:

* **Inbound** — `verify_webhook(raw_body, headers, payload)` decides, in constant time, whether a webhook request comes
  from this clinic's channel; it never raises for bad credentials (it returns False). `parse_webhook(payload)` turns
  a verified body into provider-agnostic events (`InboundMessage`, `StatusUpdate`, `ConnectionUpdate`, `QrCodeUpdate`,
  `Ignored`); it is pure (no I/O) and raises `MalformedPayload` when the body lacks what its event type needs.
  `event_identity(payload)` names one delivery of one event, so a redelivered webhook is recognised.
* **Outbound** — `send(OutboundMessage)` returns a `SendResult` with the provider's message id, or raises
  `ProviderError` whose `permanent` flag is the only decision the caller makes: retry later (temporary) or mark the
  message failed with `staff_message` (permanent). Every HTTP call has an explicit timeout.
* `download_media(MediaRef)`, `mark_read(...)` and `connection_state()` follow the same error rule.
"""

from __future__ import annotations

import datetime
import enum
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

# Explicit limits for every provider call: connect quickly, allow a slow send (Evolution blocks for the typing delay).
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)


class Kind(enum.StrEnum):
    """What a message carries. Same values as conversations.models.MessageKind."""

    TEXT = "text"
    AUDIO = "audio"
    IMAGE = "image"
    VIDEO = "video"
    DOCUMENT = "document"
    LOCATION = "location"
    CONTACT = "contact"
    REACTION = "reaction"
    OTHER = "other"


class DeliveryStatus(enum.StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"  # a voice note was listened to; shown to staff as read
    FAILED = "failed"
    DELETED = "deleted"


class ChannelState(enum.StrEnum):
    OPEN = "open"
    CONNECTING = "connecting"
    CLOSE = "close"
    REFUSED = "refused"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ChannelConfig:
    """A clinic's channel settings, as the adapter needs them (built by the app from the Clinic row)."""

    provider: str
    instance: str  # Evolution: the instance name. Meta: the phone number id.
    api_url: str = ""  # Evolution: the server's base URL. Meta: the Graph API base (default used when empty).
    api_key: str = ""  # Evolution: the instance token (the `apikey` header). Meta: the access token.
    webhook_secret: str = ""  # Evolution: the webhook JWT key / static secret. Meta: the app secret (HMAC).
    verify_token: str = ""  # Meta only: the token of the GET verification handshake.


@dataclass(frozen=True)
class MediaRef:
    """Where the media of an inbound message can be fetched; opaque to the apps (crypto fields included)."""

    mime_type: str = ""
    file_name: str = ""
    size: int | None = None
    seconds: int | None = None  # audio and video duration
    voice_note: bool = False
    inline_base64: str = ""  # Evolution with webhook base64 on: the bytes are already in the payload
    provider_data: Mapping[str, Any] = field(default_factory=dict)  # what download_media needs (key, media id…)


@dataclass(frozen=True)
class MediaContent:
    data: bytes
    mime_type: str
    file_name: str


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    name: str = ""
    address: str = ""


@dataclass(frozen=True)
class InboundMessage:
    """One message in a 1:1 chat with the clinic's number: from the patient, or typed on the clinic's phone."""

    provider_message_id: str
    chat_id: str  # what to send replies to (JID or wa_id), as the provider names the chat
    phone: str | None  # the patient's number in digits with country code, when the provider tells it
    lid: str | None  # WhatsApp's privacy id (`…@lid`) when the chat is addressed by it
    from_me: bool  # typed on the clinic's phone (or an echo of our own send)
    sender_name: str  # the name the patient shows on WhatsApp
    kind: Kind
    text: str = ""  # the text, a caption, or the label of the option the patient picked
    selected_option_id: str = ""  # button / list / interactive reply: the id of the option picked
    quoted_message_id: str = ""  # the message this one replies to
    reaction_to_message_id: str = ""  # reactions: the message reacted to (`text` is the emoji; "" = removed)
    media: MediaRef | None = None
    location: Location | None = None
    contacts: tuple[str, ...] = ()  # shared contacts, as display names (vCards stay in the raw event)
    timestamp: datetime.datetime | None = None  # when the patient sent it (aware, UTC)


@dataclass(frozen=True)
class StatusUpdate:
    provider_message_id: str
    status: DeliveryStatus
    chat_id: str = ""
    timestamp: datetime.datetime | None = None
    error: str = ""  # the provider's reason when failed, in words


@dataclass(frozen=True)
class ConnectionUpdate:
    state: ChannelState
    reason_code: int | None = None
    phone: str | None = None  # the clinic's own number once paired


@dataclass(frozen=True)
class QrCodeUpdate:
    qr_code: str  # the QR payload (`2@…`)
    image_data_url: str = ""  # `data:image/png;base64,…`
    pairing_code: str = ""


@dataclass(frozen=True)
class Ignored:
    """An event Cecilia acknowledges and does not act on (groups, stories, newsletters, unused event types)."""

    reason: str


Event = InboundMessage | StatusUpdate | ConnectionUpdate | QrCodeUpdate | Ignored


@dataclass(frozen=True)
class Template:
    """A pre-approved Meta message template (the only thing Meta lets a business send after 24 h of silence)."""

    name: str
    language: str = "pt_BR"
    body_parameters: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReplyButton:
    """One tappable reply under a message. The patient's tap comes back as `InboundMessage.selected_option_id`."""

    id: str  # what Cecilia reads back (Meta: at most 256 characters, no surrounding spaces)
    title: str  # the label (Meta shows at most 20 characters; longer titles are cut with "…")


@dataclass(frozen=True)
class OutboundMessage:
    """One message to send.

    `buttons` (at most 3) are a hint: only providers that have reply buttons show them (Meta, on a text message), and
    the others send `text` alone, so `text` must read well without them, e.g. listing "1. Confirmar" / "2. Remarcar".
    """

    to: str  # chat id (JID / wa_id) or a phone number in E.164
    kind: Kind = Kind.TEXT
    text: str = ""  # text, or the caption of media
    media: MediaContent | None = None
    voice_note: bool = False  # audio sent as a push-to-talk voice note
    quoted_message_id: str = ""
    typing_delay_ms: int = 0  # shows "typing…" before the message (Evolution)
    template: Template | None = None  # Meta, outside the 24-hour window
    buttons: tuple[ReplyButton, ...] = ()


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    chat_id: str = ""  # the chat as the provider resolved it (Evolution may drop or add the ninth digit)


class MalformedPayload(ValueError):
    """A verified webhook body that lacks what its event type needs. `details` says what, for the 400 body."""

    def __init__(self, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = dict(details or {})


class ProviderError(Exception):
    """A provider call failed. `permanent` decides: False → retry later; True → fail for good with `staff_message`.

    `staff_message` is what a receptionist reads next to the failed message (pt-BR); `code` is for logs and tests.
    Never put the message text, phone numbers or keys into either.
    """

    def __init__(self, code: str, staff_message: str, *, permanent: bool, status: int | None = None) -> None:
        super().__init__(f"{code}: {staff_message}")
        self.code = code
        self.staff_message = staff_message
        self.permanent = permanent
        self.status = status


_shared_clients: dict[int, httpx.Client] = {}


def shared_http() -> httpx.Client:
    """One HTTP client per process for the providers' APIs, never closed.

    Building one loads the TLS certificates (~20 ms of CPU: bench/webhook and bench/turn measured it as most of a
    webhook's and half of a send's time), and a shared one keeps connections to the provider alive between sends.
    httpx.Client is thread-safe. Keyed by process id: a Celery prefork child never inherits its parent's sockets.
    """
    pid = os.getpid()
    client = _shared_clients.get(pid)
    if client is None:
        client = _shared_clients.setdefault(pid, httpx.Client(timeout=DEFAULT_TIMEOUT))
    return client


class WhatsAppProvider(ABC):
    """Base of the provider adapters. Subclasses set `name` and implement the abstract methods."""

    name: str = ""

    def __init__(self, config: ChannelConfig, *, http: httpx.Client | None = None) -> None:
        self.config = config
        # Tests pass a client whose transport is a fake of the provider's API; production builds a real one.
        self._http = http

    @property
    def http(self) -> httpx.Client:
        """The process's shared client, taken on first use: a webhook (which only verifies and parses) never makes a
        call, and building a client (loading the TLS certificates) costs ~20 ms of CPU each time."""
        if self._http is None:
            self._http = shared_http()
        return self._http

    # --- inbound ----------------------------------------------------------------------------------------------
    @abstractmethod
    def verify_webhook(self, raw_body: bytes, headers: Mapping[str, str], payload: Any) -> bool: ...

    @abstractmethod
    def parse_webhook(self, payload: Any) -> list[Event]: ...

    @abstractmethod
    def event_identity(self, payload: Any) -> str: ...

    # --- outbound ---------------------------------------------------------------------------------------------
    @abstractmethod
    def send(self, message: OutboundMessage) -> SendResult: ...

    @abstractmethod
    def download_media(self, media: MediaRef, *, max_bytes: int | None = None) -> MediaContent:
        """The media's bytes; ProviderError("media_too_large", permanent=True) past `max_bytes`."""

    @abstractmethod
    def mark_read(self, *, chat_id: str, provider_message_id: str) -> None: ...

    @abstractmethod
    def connection_state(self) -> ChannelState: ...
