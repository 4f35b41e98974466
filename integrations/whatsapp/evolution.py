"""Evolution API v2 (WhatsApp through Baileys), the first provider. Contract: ../shared/contracts/evolution/README.md.

Inbound, Evolution signs nothing (§1.2): a request is this clinic's when it carries the HS256 JWT Evolution makes from
the instance webhook's `jwt_key`, or the static secret header the clinic put in the webhook's `headers`. Parsing lives
in `_evolution_parse`; error bodies in `_evolution_errors`.

Outbound is the REST API (§4): header `apikey` (the instance token; the global key only to create an instance), the
instance name in the path, explicit timeouts. No logging here: failures are ProviderErrors with codes.
"""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from integrations.whatsapp import _evolution_parse, jids
from integrations.whatsapp._common import (
    DEFAULT_MAX_MEDIA_BYTES,
    base64_fits,
    decode_base64,
    lower_keys,
    parse_json,
    provider_error,
    read_capped,
    same_secret,
    transport_errors,
)
from integrations.whatsapp._evolution_errors import Context, error_from_response
from integrations.whatsapp.base import (
    DEFAULT_TIMEOUT,
    ChannelConfig,
    ChannelState,
    ConnectionUpdate,
    Event,
    Kind,
    MediaContent,
    MediaRef,
    OutboundMessage,
    QrCodeUpdate,
    SendResult,
    WhatsAppProvider,
)

STATIC_SECRET_HEADER = "x-cecilia-webhook-secret"  # noqa: S105 - a header name, not a secret
# Clock skew tolerated between Evolution's server and ours when checking the JWT's `exp` and `iat`.
JWT_LEEWAY_SECONDS = 30
_MEDIA_TYPES = {Kind.IMAGE: "image", Kind.VIDEO: "video", Kind.DOCUMENT: "document", Kind.AUDIO: "audio"}
_STATES = {state.value: state for state in ChannelState}


@dataclass(frozen=True)
class CreatedInstance:
    """What `POST /instance/create` answers: the instance token (`hash`) is a secret for the clinic's settings."""

    instance_name: str
    instance_id: str
    token: str
    qr: QrCodeUpdate | None = None


class EvolutionProvider(WhatsAppProvider):
    name = "evolution"

    def __init__(
        self,
        config: ChannelConfig,
        *,
        http: httpx.Client | None = None,
        max_media_bytes: int = DEFAULT_MAX_MEDIA_BYTES,
    ) -> None:
        super().__init__(config, http=http)
        self.max_media_bytes = max_media_bytes

    # --- inbound ----------------------------------------------------------------------------------------------

    def verify_webhook(self, raw_body: bytes, headers: Mapping[str, str], payload: Any) -> bool:
        """True when the request carries this clinic's credentials; never raises.

        Accepted: `Authorization: Bearer <JWT>` (HS256 with `webhook_secret`; signature, `exp` and `iat` required and
        checked with 30 s leeway), or `X-Cecilia-Webhook-Secret: <webhook_secret>`. Either way, a non-empty string
        `apikey` in the body must equal the configured instance token, compared exactly (Evolution writes the token as
        stored, UUID in upper case by default; a different case is a different token). A clinic with no secret
        configured accepts nothing. The JWT authenticates the sender, not the body: TLS protects the body.
        """
        secret = self.config.webhook_secret
        if not secret:
            return False
        apikey = payload.get("apikey") if isinstance(payload, Mapping) else None
        if isinstance(apikey, str) and apikey and not same_secret(apikey, self.config.api_key):
            return False
        normalised = lower_keys(headers)
        return _valid_bearer(normalised.get("authorization", ""), secret) or same_secret(
            normalised.get(STATIC_SECRET_HEADER, ""), secret
        )

    def parse_webhook(self, payload: Any) -> list[Event]:
        return _evolution_parse.parse(payload)

    def event_identity(self, payload: Any) -> str:
        return _evolution_parse.event_identity(payload)

    # --- outbound ---------------------------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        """Text → sendText; image/video/document/audio file → sendMedia; voice note → sendWhatsAppAudio (§4.1–4.3)."""
        try:
            number = jids.send_target(message.to)
        except ValueError:
            raise provider_error("invalid_request", permanent=True) from None
        path, body = self._send_request(number, message)
        if message.typing_delay_ms > 0:
            body["delay"] = message.typing_delay_ms
        # Evolution holds the HTTP call open for the whole typing delay: wait that much longer for the answer.
        timeout = DEFAULT_TIMEOUT.read + message.typing_delay_ms / 1000 if message.typing_delay_ms > 0 else None
        response = self._call("POST", path, body=body, read_timeout=timeout)
        key = response.get("key") if isinstance(response, Mapping) else None
        message_id = key.get("id") if isinstance(key, Mapping) else None
        if not isinstance(message_id, str) or not message_id:
            # The message may have left: a retry could send it twice, so this is not retried.
            raise provider_error("unexpected_response", permanent=True)
        chat_id = key.get("remoteJid")
        return SendResult(message_id, chat_id if isinstance(chat_id, str) else "")

    def _send_request(self, number: str, message: OutboundMessage) -> tuple[str, dict[str, Any]]:
        if message.template is not None and not message.text:
            raise provider_error("unsupported_kind", permanent=True)  # Meta templates do not exist on Evolution
        if message.kind is Kind.TEXT:
            if not message.text.strip():
                raise provider_error("invalid_request", permanent=True)  # Evolution: 400 "Text is required"
            # Link previews are fetched by Evolution's server from whatever URL the text holds: slower sends, one
            # more failure mode and third-party content next to the clinic's words. Receptionist texts need none.
            # `buttons` are left out on purpose: WhatsApp does not support button messages from unofficial clients such
            # as Baileys, so depending on the patient's app they show, arrive blank or never arrive. The text lists the
            # options instead.
            body: dict[str, Any] = {"number": number, "text": message.text, "linkPreview": False}
            if message.quoted_message_id:
                # Without `message`, Evolution loads the quoted message from its database by id.
                body["quoted"] = {"key": {"id": message.quoted_message_id}}
            return "sendText", body
        media = message.media
        if message.kind not in _MEDIA_TYPES:
            raise provider_error("unsupported_kind", permanent=True)
        if media is None or not media.data:
            raise provider_error("invalid_request", permanent=True)
        if len(media.data) > self.max_media_bytes:
            raise provider_error("media_too_large", permanent=True)
        encoded = _b64(media.data)
        if message.kind is Kind.AUDIO and message.voice_note:
            # Converted to OGG/Opus and sent with ptt:true; Evolution ignores `quoted` here (§4.3).
            return "sendWhatsAppAudio", {"number": number, "audio": encoded}
        if message.kind is Kind.DOCUMENT and not media.file_name:
            raise provider_error("invalid_request", permanent=True)  # "For base64 the file name must be informed."
        body = {"number": number, "mediatype": _MEDIA_TYPES[message.kind], "media": encoded}
        if media.mime_type:
            body["mimetype"] = media.mime_type
        if media.file_name:
            body["fileName"] = media.file_name
        if message.text and message.kind is not Kind.AUDIO:
            body["caption"] = message.text
        if message.quoted_message_id:
            body["quoted"] = {"key": {"id": message.quoted_message_id}}
        return "sendMedia", body

    def download_media(self, media: MediaRef, *, max_bytes: int | None = None) -> MediaContent:
        """The bytes of an inbound media: from the webhook's base64 when present, else getBase64FromMediaMessage."""
        limit = self.max_media_bytes if max_bytes is None else max_bytes
        if media.size is not None and media.size > limit:
            raise provider_error("media_too_large", permanent=True)
        if media.inline_base64:
            return MediaContent(_decode(media.inline_base64, limit), media.mime_type, media.file_name)
        key, message = media.provider_data.get("key"), media.provider_data.get("message")
        if not isinstance(key, Mapping) or not isinstance(message, Mapping):
            raise provider_error("media_unavailable", permanent=True)
        body = {"message": {"key": dict(key), "message": dict(message)}, "convertToMp4": False}
        # Base64 is 4/3 of the bytes; the JSON around it is small.
        cap = limit * 4 // 3 + 65536
        response = self._call("POST", "getBase64FromMediaMessage", body=body, context="download", max_response=cap)
        encoded = response.get("base64") if isinstance(response, Mapping) else None
        if not isinstance(encoded, str) or not encoded:
            raise provider_error("media_unavailable", permanent=True)
        mime = response.get("mimetype")
        file_name = response.get("fileName")
        return MediaContent(
            _decode(encoded, limit),
            mime if isinstance(mime, str) and mime else media.mime_type,
            file_name if isinstance(file_name, str) and file_name else media.file_name,
        )

    def mark_read(self, *, chat_id: str, provider_message_id: str) -> None:
        """Blue ticks for one inbound message. Skipped for `@lid` chats: Evolution drops those keys silently (§4.4)."""
        jid = jids.parse_jid(chat_id)
        if jid is not None and jid.is_lid:
            return
        if jid is not None:
            remote = str(jid)
        else:
            try:
                remote = jids.phone_jid(jids.send_target(chat_id))
            except ValueError:
                raise provider_error("invalid_request", permanent=True) from None
        body = {"readMessages": [{"remoteJid": remote, "fromMe": False, "id": provider_message_id}]}
        self._call("POST", "markMessageAsRead", body=body)

    def connection_state(self) -> ChannelState:
        body = self._call("GET", "connectionState")
        instance = body.get("instance") if isinstance(body, Mapping) else None
        state = instance.get("state") if isinstance(instance, Mapping) else None
        # `state` is missing when the instance is not loaded in Evolution's memory (§4.6).
        return _STATES.get(state, ChannelState.UNKNOWN) if isinstance(state, str) else ChannelState.UNKNOWN

    # --- connecting a number ----------------------------------------------------------------------------------

    def create_instance(self, *, global_api_key: str, token: str | None = None) -> CreatedInstance:
        """`POST /instance/create` for `config.instance`, Baileys, asking for a QR code at once.

        Needs the server's GLOBAL api key (the instance token does not exist yet). `token` sets the instance token;
        Evolution generates an upper-case UUID when it is omitted. A taken name → permanent `instance_name_taken`.
        """
        body: dict[str, Any] = {"instanceName": self.config.instance, "integration": "WHATSAPP-BAILEYS", "qrcode": True}
        if token:
            body["token"] = token
        # Evolution waits ~5 s for the first QR code before answering.
        answer = self._call("POST", "/instance/create", body=body, api_key=global_api_key, context="manage")
        instance = answer.get("instance") if isinstance(answer, Mapping) else None
        if not isinstance(instance, Mapping):
            raise provider_error("unexpected_response", permanent=True)
        token_value = answer.get("hash")
        if isinstance(token_value, Mapping):  # v1 answered {"hash": {"apikey": …}}
            token_value = token_value.get("apikey")
        qr = _qr_code(answer.get("qrcode"))
        return CreatedInstance(
            instance_name=str(instance.get("instanceName") or self.config.instance),
            instance_id=str(instance.get("instanceId") or ""),
            token=token_value if isinstance(token_value, str) else "",
            qr=qr if isinstance(qr, QrCodeUpdate) else None,
        )

    def connect(self) -> QrCodeUpdate | ConnectionUpdate:
        """`GET /instance/connect/{instance}`: the QR code to pair, or the state when there is none to show.

        Evolution answers `{pairingCode, code, base64, count}` while pairing, the connectionState body when the
        number is already open, and `{count}` alone before the first QR code exists (poll again).
        """
        answer = self._call("GET", "/instance/connect/{instance}", context="manage")
        if not isinstance(answer, Mapping) or answer.get("error") is True:
            raise provider_error("provider_unavailable", permanent=False)
        instance = answer.get("instance")
        if isinstance(instance, Mapping) and instance.get("state") == "open":
            return ConnectionUpdate(ChannelState.OPEN)
        qr = _qr_code(answer)
        return qr if qr is not None else ConnectionUpdate(ChannelState.CONNECTING)

    def set_webhook(
        self, url: str, events: Iterable[str], jwt_key: str, by_events: bool = False, base64: bool = False
    ) -> None:
        """`POST /webhook/set/{instance}` with the nested body (§1.1) and `headers.jwt_key`.

        Evolution replaces `jwt_key` by `Authorization: Bearer <JWT>` on every delivery (§1.2). `events` are the
        UPPER_SNAKE names (`MESSAGES_UPSERT`). With `by_events`, Evolution appends `/<event-suffix>` to the URL by
        string concatenation, so a trailing slash is removed and a query string refused.
        """
        if not url.startswith(("http://", "https://")) or not jwt_key:
            raise provider_error("invalid_config", permanent=True)  # Evolution would silently never deliver
        if by_events:
            if "?" in url:
                raise provider_error("invalid_config", permanent=True)
            url = url.rstrip("/")
        webhook = {
            "enabled": True,
            "url": url,
            "headers": {"jwt_key": jwt_key},
            "byEvents": by_events,
            "base64": base64,
            "events": list(events),
        }
        self._call("POST", "/webhook/set/{instance}", body={"webhook": webhook}, context="manage")

    # --- HTTP -------------------------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        endpoint: str,
        *,
        body: Any = None,
        api_key: str | None = None,
        context: Context = "send",
        read_timeout: float | None = None,
        max_response: int = 1024 * 1024,
    ) -> Any:
        """One REST call; the parsed JSON answer on 2xx (None when it has none), else ProviderError.

        `endpoint` is a path (`/instance/create`; `{instance}` is filled in, URL-quoted) or a bare endpoint name,
        which expands to `/<group>/<name>/{instance}`. The answer is read up to `max_response` bytes (1 MiB unless
        it carries media), so a runaway body cannot exhaust the worker's memory.
        """
        base = self.config.api_url.rstrip("/")
        key = self.config.api_key if api_key is None else api_key
        if not base or not key or not self.config.instance:
            raise provider_error("invalid_config", permanent=True)
        url = base + _path(endpoint).replace("{instance}", quote(self.config.instance, safe=""))
        timeout: httpx.Timeout | Any = httpx.USE_CLIENT_DEFAULT
        if read_timeout is not None:
            timeout = httpx.Timeout(
                DEFAULT_TIMEOUT.write, connect=DEFAULT_TIMEOUT.connect, read=read_timeout, pool=DEFAULT_TIMEOUT.pool
            )
        request = self.http.build_request(method, url, json=body, headers={"apikey": key}, timeout=timeout)
        with transport_errors():
            response = self.http.send(request, stream=True)
            try:
                content = read_capped(response, max_response)
            finally:
                response.close()
        answer = parse_json(content) if content is not None else None
        if not response.is_success:
            raise error_from_response(response.status_code, answer, context=context)
        if content is None:
            raise provider_error("media_too_large" if context == "download" else "unexpected_response", permanent=True)
        return answer


def _path(endpoint: str) -> str:
    if endpoint.startswith("/"):
        return endpoint
    group = {"getBase64FromMediaMessage": "chat", "markMessageAsRead": "chat", "connectionState": "instance"}
    return f"/{group.get(endpoint, 'message')}/{endpoint}/{{instance}}"


def _valid_bearer(authorization: str, secret: str) -> bool:
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    try:
        jwt.decode(
            token.strip(),
            secret,
            algorithms=["HS256"],  # never "none", never an algorithm the token picks
            options={"require": ["exp", "iat"]},
            leeway=JWT_LEEWAY_SECONDS,
        )
    except jwt.PyJWTError:
        return False
    return True


def _qr_code(value: Any) -> QrCodeUpdate | None:
    if not isinstance(value, Mapping) or not isinstance(value.get("code"), str) or not value["code"]:
        return None
    image, pairing = value.get("base64"), value.get("pairingCode")
    return QrCodeUpdate(
        qr_code=value["code"],
        image_data_url=image if isinstance(image, str) else "",
        pairing_code=pairing if isinstance(pairing, str) else "",
    )


def _b64(data: bytes) -> str:
    return b64encode(data).decode("ascii")


def _decode(encoded: str, limit: int) -> bytes:
    if not base64_fits(encoded, limit):
        raise provider_error("media_too_large", permanent=True)
    try:
        data = decode_base64(encoded)
    except ValueError:
        raise provider_error("media_unavailable", permanent=True) from None
    if len(data) > limit:
        raise provider_error("media_too_large", permanent=True)
    return data
