"""Meta WhatsApp Cloud API: the second provider (Graph API). Contract: ../shared/contracts/evolution/README.md §5.

`config.instance` is the phone number id, `config.api_key` the access token, `config.webhook_secret` the app secret
(X-Hub-Signature-256), `config.verify_token` the GET handshake token, `config.api_url` the Graph base (versioned).
Error codes: https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes (cross-checked with
360dialog's and ChakraHQ's copies of that table). No logging here: failures are ProviderErrors with codes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import mimetypes
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from integrations.whatsapp import _meta_parse, jids
from integrations.whatsapp._common import (
    DEFAULT_MAX_MEDIA_BYTES,
    int64,
    lower_keys,
    parse_json,
    provider_error,
    read_capped,
    same_secret,
    transport_errors,
)
from integrations.whatsapp.base import (
    ChannelConfig,
    ChannelState,
    Event,
    Kind,
    MediaContent,
    MediaRef,
    OutboundMessage,
    ProviderError,
    ReplyButton,
    SendResult,
    WhatsAppProvider,
)

GRAPH_API_URL = "https://graph.facebook.com/v21.0"
SIGNATURE_HEADER = "x-hub-signature-256"
_MEDIA_TYPES = {Kind.IMAGE: "image", Kind.VIDEO: "video", Kind.DOCUMENT: "document", Kind.AUDIO: "audio"}
# Meta's limits for interactive reply buttons; a message outside them goes as plain text (its text lists the options).
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_BUTTON_ID = 256
MAX_INTERACTIVE_BODY = 1024

STAFF_MESSAGES = {
    "outside_24h_window": (
        "Já se passaram mais de 24 horas desde a última mensagem do paciente. Pela API oficial do WhatsApp, só é "
        "possível enviar um modelo de mensagem aprovado (template) até que ele responda."
    ),
    "undeliverable": (
        "O WhatsApp não entregou a mensagem: o número pode não ter WhatsApp, ter bloqueado a clínica ou usar uma "
        "versão antiga do aplicativo."
    ),
    "template_error": (
        "O WhatsApp recusou o modelo de mensagem (template): confira se ele existe, está aprovado neste idioma e "
        "recebe os parâmetros certos."
    ),
    "account_restricted": "A conta do WhatsApp Business da clínica está bloqueada ou restrita pela Meta.",
    "media_upload_failed": "O WhatsApp não aceitou o arquivo (formato ou tamanho não suportado).",
    "unsupported_kind": "O WhatsApp não aceita este tipo de mensagem.",
}

# Graph error codes (`error.code`). Rate limits pass with time: 4 (app calls), 80007 (WABA), 130429 (throughput),
# 131048 (spam rate limit), 131056 (pair rate limit). 1, 2, 131000, 131016: Meta-side failures, retried.
_RATE_LIMITED = frozenset({4, 80007, 130429, 131048, 131056})
_META_UNAVAILABLE = frozenset({1, 2, 131000, 131016})
# 0 AuthException, 10 permission denied, 190 expired token, 200–299 API permission: fix the token, then resend.
_UNAUTHORIZED = frozenset({0, 10, 190, *range(200, 300)})
# 368 policy block, 130497 country restriction, 131031 account locked, 131042 payment problem.
_RESTRICTED = frozenset({368, 130497, 131031, 131042})
_BY_CODE = {
    131047: "outside_24h_window",  # "Re-engagement message": >24 h since the patient last wrote
    131026: "undeliverable",  # not on WhatsApp, blocked the business, or an old app
    131051: "unsupported_kind",  # unsupported message type
    131052: "media_unavailable",  # media download error (the patient's media)
    131053: "media_upload_failed",  # media upload error (ours)
    133010: "invalid_config",  # phone number not registered on the Cloud API
    100: "invalid_request",  # invalid parameter
}


class MetaCloudProvider(WhatsAppProvider):
    name = "meta"

    def __init__(
        self, config: ChannelConfig, *, http: httpx.Client | None = None, max_media_bytes: int = DEFAULT_MAX_MEDIA_BYTES
    ) -> None:
        super().__init__(config, http=http)
        self.max_media_bytes = max_media_bytes

    # --- inbound ----------------------------------------------------------------------------------------------

    def verify_webhook(self, raw_body: bytes, headers: Mapping[str, str], payload: Any) -> bool:
        """`X-Hub-Signature-256: sha256=<hex>` equals HMAC-SHA256(app secret, raw body), in constant time.

        Computed over the raw bytes as received (Meta escapes non-ASCII as \\uXXXX; re-serialising would not match).
        No app secret configured → False. Never raises.
        """
        secret = self.config.webhook_secret
        given = lower_keys(headers).get(SIGNATURE_HEADER, "").strip()
        scheme, _, digest = given.partition("=")
        if not secret or scheme.lower() != "sha256" or not digest.isascii():
            return False
        expected = hmac.new(secret.encode("utf-8"), bytes(raw_body), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, digest.lower())

    def verify_subscription(self, mode: str | None, token: str | None, challenge: str | None) -> str | None:
        """The GET handshake (`hub.mode`, `hub.verify_token`, `hub.challenge`): the challenge to echo, or None."""
        if mode != "subscribe" or not challenge or not same_secret(token or "", self.config.verify_token):
            return None
        return challenge

    def parse_webhook(self, payload: Any) -> list[Event]:
        return _meta_parse.parse(payload, self.config.instance)

    def event_identity(self, payload: Any) -> str:
        """sha256 of the body's canonical JSON: Meta redelivers the same batch, byte for byte or reordered."""
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @staticmethod
    def phone_number_ids(payload: Any) -> list[str]:
        """Which phone numbers (clinics) a body speaks for, so a webhook view can route it. Never raises."""
        return _meta_parse.phone_number_ids(payload)

    # --- outbound ---------------------------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        """Template, text (with reply buttons when it has them and Meta's limits allow), or media (uploaded first, then
        sent by id), to a phone number in any written form."""
        try:
            to = jids.phone_digits(message.to)
        except ValueError:
            raise provider_error("invalid_request", permanent=True) from None
        body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
        body.update(self._content(message))
        if message.quoted_message_id:
            body["context"] = {"message_id": message.quoted_message_id}
        answer = self._graph("POST", f"{self._number_id()}/messages", json_body=body)
        sent = answer.get("messages") if isinstance(answer, Mapping) else None
        message_id = sent[0].get("id") if isinstance(sent, list) and sent and isinstance(sent[0], Mapping) else None
        if not isinstance(message_id, str) or not message_id:
            raise provider_error("unexpected_response", permanent=True)  # it may have left: never retried
        contacts = answer.get("contacts")
        wa_id = contacts[0].get("wa_id") if isinstance(contacts, list) and contacts else None
        return SendResult(message_id, wa_id if isinstance(wa_id, str) and wa_id else to)

    def _content(self, message: OutboundMessage) -> dict[str, Any]:
        if message.template is not None:
            template = message.template
            content: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
            if template.body_parameters:
                parameters = [{"type": "text", "text": value} for value in template.body_parameters]
                content["components"] = [{"type": "body", "parameters": parameters}]
            return {"type": "template", "template": content}
        if message.kind is Kind.TEXT:
            if not message.text.strip():
                raise provider_error("invalid_request", permanent=True)
            if message.buttons and message.media is None:
                interactive = _reply_buttons(message.text, message.buttons)
                if interactive is not None:
                    return {"type": "interactive", "interactive": interactive}
            # No link previews: Meta would fetch and show third-party content next to the clinic's words.
            return {"type": "text", "text": {"body": message.text, "preview_url": False}}
        media = message.media
        if message.kind not in _MEDIA_TYPES:
            raise provider_error("unsupported_kind", permanent=True, staff_message=STAFF_MESSAGES["unsupported_kind"])
        if media is None or not media.data or not media.mime_type:
            raise provider_error("invalid_request", permanent=True)
        if len(media.data) > self.max_media_bytes:
            raise provider_error("media_too_large", permanent=True)
        kind = _MEDIA_TYPES[message.kind]
        content = {"id": self._upload(media)}
        if message.text and message.kind is not Kind.AUDIO:
            content["caption"] = message.text
        if message.kind is Kind.DOCUMENT and media.file_name:
            content["filename"] = media.file_name
        return {"type": kind, kind: content}

    def _upload(self, media: MediaContent) -> str:
        """`POST /{phone_number_id}/media` (multipart): the media id to send by."""
        files = {"file": (media.file_name or "arquivo", media.data, media.mime_type)}
        data = {"messaging_product": "whatsapp", "type": media.mime_type}
        answer = self._graph("POST", f"{self._number_id()}/media", data=data, files=files)
        media_id = answer.get("id") if isinstance(answer, Mapping) else None
        if not isinstance(media_id, str) or not media_id:
            raise provider_error("unexpected_response", permanent=True)
        return media_id

    def download_media(self, media: MediaRef, *, max_bytes: int | None = None) -> MediaContent:
        """`GET /{media_id}` → a short-lived URL, then that URL with the same token; at most `max_bytes`."""
        limit = self.max_media_bytes if max_bytes is None else max_bytes
        media_id = media.provider_data.get("id")
        if not isinstance(media_id, str) or not media_id:
            raise provider_error("media_unavailable", permanent=True)
        info = self._graph("GET", quote(media_id, safe=""), context="download")
        url = info.get("url") if isinstance(info, Mapping) else None
        if not isinstance(url, str) or not url.startswith("https://"):
            raise provider_error("unexpected_response", permanent=True)  # the token only goes over TLS
        try:
            size = int64(info.get("file_size"))
        except ValueError:
            size = None
        if size is not None and size > limit:
            raise provider_error("media_too_large", permanent=True)
        data = self._fetch(url, limit)
        mime = info.get("mime_type") if isinstance(info.get("mime_type"), str) else media.mime_type
        extension = mimetypes.guess_extension(mime.split(";")[0].strip()) or ""
        return MediaContent(data, mime, media.file_name or f"{media_id}{extension}")

    def mark_read(self, *, chat_id: str, provider_message_id: str) -> None:
        body = {"messaging_product": "whatsapp", "status": "read", "message_id": provider_message_id}
        self._graph("POST", f"{self._number_id()}/messages", json_body=body)

    def connection_state(self) -> ChannelState:
        """OPEN when the phone number answers; CLOSE when Meta refuses the token (401, code 190 and kin)."""
        try:
            self._graph("GET", self._number_id(), context="state")
        except ProviderError as exc:
            if exc.code == "unauthorized":
                return ChannelState.CLOSE
            raise
        return ChannelState.OPEN

    # --- HTTP -------------------------------------------------------------------------------------------------

    def _number_id(self) -> str:
        if not self.config.instance:
            raise provider_error("invalid_config", permanent=True)
        return quote(self.config.instance, safe="")

    def _headers(self) -> dict[str, str]:
        if not self.config.api_key:
            raise provider_error("invalid_config", permanent=True)
        return {"Authorization": f"Bearer {self.config.api_key}"}

    def _graph(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, Any] | None = None,
        context: str = "send",
    ) -> Any:
        """One Graph call; the parsed JSON on 2xx, else ProviderError (answers are read up to 1 MiB)."""
        url = f"{(self.config.api_url or GRAPH_API_URL).rstrip('/')}/{path}"
        request = self.http.build_request(method, url, json=json_body, data=data, files=files, headers=self._headers())
        status, content = self._exchange(request, 1024 * 1024)
        answer = parse_json(content) if content is not None else None
        if not 200 <= status < 300:
            raise error_from_response(status, answer, context=context)
        if content is None:
            raise provider_error("unexpected_response", permanent=True)
        return answer

    def _fetch(self, url: str, limit: int) -> bytes:
        status, content = self._exchange(self.http.build_request("GET", url, headers=self._headers()), limit)
        if not 200 <= status < 300:
            raise error_from_response(status, parse_json(content or b""), context="download")
        if content is None:
            raise provider_error("media_too_large", permanent=True)
        return content

    def _exchange(self, request: httpx.Request, limit: int) -> tuple[int, bytes | None]:
        with transport_errors():
            response = self.http.send(request, stream=True)
            try:
                return response.status_code, read_capped(response, limit)
            finally:
                response.close()


def _reply_buttons(text: str, buttons: tuple[ReplyButton, ...]) -> dict[str, Any] | None:
    """The `interactive` object of a reply-button message, or None when Meta would refuse it (send the text instead).

    Titles past 20 characters are cut; anything else outside Meta's rules (more than 3 buttons, a body past 1024
    characters, an empty, padded or too long id, an empty title, repeated ids or titles) falls back to text: a cut id
    would come back as an option nobody offered.
    """
    if len(buttons) > MAX_BUTTONS or len(text) > MAX_INTERACTIVE_BODY:
        return None
    replies = [{"id": button.id, "title": _button_title(button.title)} for button in buttons]
    ids = [reply["id"] for reply in replies]
    titles = [reply["title"] for reply in replies]
    if not all(ids) or not all(titles) or len(set(ids)) < len(ids) or len(set(titles)) < len(titles):
        return None
    if any(len(id_) > MAX_BUTTON_ID or id_ != id_.strip() for id_ in ids):
        return None
    return {
        "type": "button",
        "body": {"text": text},
        "action": {"buttons": [{"type": "reply", "reply": reply} for reply in replies]},
    }


def _button_title(title: str) -> str:
    title = title.strip()
    if len(title) <= MAX_BUTTON_TITLE:
        return title
    return title[: MAX_BUTTON_TITLE - 1].rstrip() + "…"


def error_from_response(status: int, body: Any, *, context: str = "send") -> ProviderError:
    """Graph's `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}` → one decision."""
    error = body.get("error") if isinstance(body, Mapping) else None
    error = error if isinstance(error, Mapping) else {}
    try:
        code = int64(error.get("code"))
    except ValueError:
        code = None

    def fail(name: str, *, permanent: bool) -> ProviderError:
        return provider_error(name, permanent=permanent, status=status, staff_message=STAFF_MESSAGES.get(name, ""))

    if code in _RATE_LIMITED or (code is None and status == 429):
        return fail("rate_limited", permanent=False)
    if code in _UNAUTHORIZED or (code is None and status in (401, 403)):
        return fail("unauthorized", permanent=True)
    if context == "download" and (code == 100 or (code is None and status in (400, 404, 410))):
        # An expired media id answers code 100 "object does not exist"; media URLs expire after minutes.
        return fail("media_unavailable", permanent=True)
    if code in _BY_CODE:
        return fail(_BY_CODE[code], permanent=True)
    if code is not None and 132000 <= code <= 132999:  # template does not exist, wrong parameters, paused…
        return fail("template_error", permanent=True)
    if code in _RESTRICTED:
        return fail("account_restricted", permanent=True)
    if code in _META_UNAVAILABLE or error.get("is_transient") is True or status >= 500:
        return fail("provider_unavailable", permanent=False)
    if status == 408:
        return fail("timeout", permanent=False)
    if 400 <= status < 500:
        return fail("invalid_request", permanent=True)
    return fail("provider_unavailable", permanent=False)
