"""Evolution API webhook bodies → provider-agnostic events (contract: ../shared/contracts/evolution/README.md §2–§3).

Pure functions, no I/O. Every body is one event in the §2 envelope `{event, instance, data, sender, apikey, …}`.
A body that lacks what its event needs raises MalformedPayload naming the path; anything Cecilia does not act on
(groups, stories, newsletters, unused event types) becomes `Ignored` with a reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from integrations.whatsapp import jids
from integrations.whatsapp._common import fail, int64, items, mapping, optional_text, text_field, unix_datetime
from integrations.whatsapp.base import (
    ChannelState,
    ConnectionUpdate,
    DeliveryStatus,
    Event,
    Ignored,
    InboundMessage,
    Kind,
    Location,
    MediaRef,
    QrCodeUpdate,
    StatusUpdate,
)

# §3.1 `status` (src/utils/renderStatus.ts); ≤2.0 wrote Baileys' numeric WAMessageStatus instead.
_STATUS_NAMES = {0: "ERROR", 1: "PENDING", 2: "SERVER_ACK", 3: "DELIVERY_ACK", 4: "READ", 5: "PLAYED"}
_STATUSES = {
    "SERVER_ACK": DeliveryStatus.SENT,
    "DELIVERY_ACK": DeliveryStatus.DELIVERED,
    "READ": DeliveryStatus.READ,
    "PLAYED": DeliveryStatus.PLAYED,
    "ERROR": DeliveryStatus.FAILED,
    "DELETED": DeliveryStatus.DELETED,
}
_STATES = {state.value: state for state in ChannelState}

# Containers whose `message` holds the real content (Evolution's MessageSubtype list, plus newer view-once wrappers).
_WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
)
# Keys of `message` that end in "Message" but carry no content of their own.
_NOT_CONTENT = frozenset({"senderKeyDistributionMessage", "protocolMessage"})
# Where Baileys/Evolution put the other identity of a 1:1 chat, by version (§3.1 "@lid handling by version").
_IDENTITY_FIELDS = (
    "remoteJid",
    "remoteJidAlt",  # 2.3.3+
    "senderPn",  # 2.3.0–2.3.2
    "participantPn",
    "participantAlt",
    "previousRemoteJid",  # 2.3.1–2.3.2: the LID that senderPn replaced
    "senderLid",
    "participantLid",
)


def envelope(payload: Any) -> tuple[str, Any]:
    """(event, data) of a §2 envelope. Raises MalformedPayload when the body is not one."""
    if not isinstance(payload, Mapping):
        raise fail("(body)", "is not a JSON object")
    event = payload.get("event")
    if not isinstance(event, str) or not event:
        raise fail("event")
    return event, payload.get("data")


def number(parent: Mapping[str, Any], key: str, path: str) -> int | None:
    try:
        return int64(parent.get(key))
    except ValueError:
        raise fail(path, "is not an integer") from None


def event_identity(payload: Any) -> str:
    """`instance|event|<message id>|<status>` (contract §1.3); "" for events without a message id.

    Raises MalformedPayload when the envelope is broken or a message event has no id, so a webhook view can answer
    400 before storing anything.
    """
    event, data = envelope(payload)
    instance = text_field(payload, "instance", "instance")
    if event not in ("messages.upsert", "send.message", "messages.update", "messages.delete"):
        return ""
    if not isinstance(data, Mapping):
        raise fail("data")
    if event == "messages.update":
        message_id, status = update_id(data), status_name(data.get("status"))
    elif event == "messages.delete":
        message_id, status = delete_id(data), "DELETED"
    else:
        message_id = text_field(mapping(data, "key", "data.key"), "id", "data.key.id")
        status = status_name(data.get("status"))
    return f"{instance}|{event}|{message_id}|{status}"


def parse(payload: Any) -> list[Event]:
    """The events of one Evolution webhook body (always exactly one; a list to match the base contract)."""
    event, data = envelope(payload)
    handler = _HANDLERS.get(event)
    if handler is None:
        return [Ignored(f"unused event {event}")]
    if not isinstance(data, Mapping):
        raise fail("data")
    return [handler(payload, data)]


# --- chats ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chat:
    chat_id: str
    phone: str | None
    lid: str | None


def resolve_chat(key: Mapping[str, Any], owner: object, *, path: str = "data.key") -> Chat | Ignored:
    """Who the 1:1 chat is with, or why it is not a patient chat.

    `chat_id` is the JID to reply to: the phone JID whenever any version-specific field tells the phone (it works for
    sending and for markMessageAsRead on every version), else the LID (sending to a LID works; §3.1).
    `owner` is the envelope's `sender` (the clinic's own JID): a phone equal to it is never the patient's.
    """
    remote = parse_jid(text_field(key, "remoteJid", f"{path}.remoteJid"), f"{path}.remoteJid")
    if remote.is_group:
        return Ignored("group chat")
    if remote.is_status_broadcast:
        return Ignored("status update (story)")
    if remote.is_broadcast_list:
        return Ignored("broadcast list")
    if remote.is_newsletter:
        return Ignored("newsletter")
    if not (remote.is_phone or remote.is_lid):
        return Ignored(f"unsupported chat type @{remote.server}")
    own_phone = jids.phone_of(owner)
    if remote.is_phone and remote.user == own_phone:
        return Ignored("the clinic's chat with itself")
    values = [key.get(name) for name in _IDENTITY_FIELDS]
    phone = next((p for p in map(jids.phone_of, values) if p and p != own_phone), None)
    lid = next((lid for lid in map(jids.lid_of, values) if lid), None)
    chat_id = jids.phone_jid(phone) if phone else str(remote)
    return Chat(chat_id=chat_id, phone=phone, lid=lid)


def parse_jid(value: str, path: str) -> jids.Jid:
    jid = jids.parse_jid(value)
    if jid is None:
        raise fail(path, "is not a JID")
    return jid


# --- messages.upsert / send.message -------------------------------------------------------------------------------


def _upsert(payload: Mapping[str, Any], data: Mapping[str, Any]) -> Event:
    key = mapping(data, "key", "data.key")
    message_id = text_field(key, "id", "data.key.id")
    chat = resolve_chat(key, payload.get("sender"))
    if isinstance(chat, Ignored):
        return chat
    message = data.get("message")
    if not isinstance(message, Mapping):
        raise fail("data.message")
    found = content_of(message, data.get("messageType"))
    if found is None:
        return Ignored("message without content (protocol or key distribution only)")
    content_type, content, content_path = found
    from_me = key.get("fromMe") is True
    fields = _content_fields(content_type, content, content_path, data, message)
    try:
        timestamp = unix_datetime(data.get("messageTimestamp"))
    except ValueError:
        raise fail("data.messageTimestamp", "is not a Unix timestamp") from None
    return InboundMessage(
        provider_message_id=message_id,
        chat_id=chat.chat_id,
        phone=chat.phone,
        lid=chat.lid,
        from_me=from_me,
        sender_name="" if from_me else _push_name(data.get("pushName")),
        quoted_message_id=_quoted_id(data, content),
        timestamp=timestamp,
        **fields,
    )


def _push_name(value: object) -> str:
    # Since 2.3.0 an empty pushName is replaced by the sender's number: that is not a name.
    if not isinstance(value, str) or jids.phone_of(value):
        return ""
    return value.strip()


def _send_echo(payload: Mapping[str, Any], data: Mapping[str, Any]) -> Event:
    """`send.message` is emitted only for sends made through Evolution's REST API (§3.2), i.e. Cecilia's own.

    It becomes StatusUpdate(SENT), not an InboundMessage: Evolution emits it *before* answering the REST call, so it
    can arrive before the send task has stored the id; as a status it cannot be mistaken for a message staff typed
    on the clinic's phone (which pauses the AI) and is applied once the id is known.
    """
    key = mapping(data, "key", "data.key")
    message_id = text_field(key, "id", "data.key.id")
    chat = resolve_chat(key, payload.get("sender"))
    if isinstance(chat, Ignored):
        return chat
    try:
        timestamp = unix_datetime(data.get("messageTimestamp"))
    except ValueError:
        raise fail("data.messageTimestamp", "is not a Unix timestamp") from None
    return StatusUpdate(message_id, DeliveryStatus.SENT, chat_id=chat.chat_id, timestamp=timestamp)


def content_of(message: Mapping[str, Any], hint: object = None) -> tuple[str, Any, str] | None:
    """(content type, content, path) of `data.message`, wrappers unwrapped; None when it carries no content.

    The type is Evolution's `messageType` when it names a key of the message, else the first key that is
    `conversation` or ends in `Message` (Baileys' getContentType).
    """
    path = "data.message"
    for _ in range(3):  # wrappers nest at most twice in practice (ephemeral → viewOnce → content)
        wrapper = next((w for w in _WRAPPERS if isinstance(message.get(w), Mapping)), None)
        inner = message[wrapper].get("message") if wrapper else None
        if not isinstance(inner, Mapping):
            break
        message, path = inner, f"{path}.{wrapper}.message"
    candidates = [hint] if isinstance(hint, str) else []
    candidates += [k for k in message if k == "conversation" or (k.endswith("Message") and k not in _NOT_CONTENT)]
    for content_type in candidates:
        content = message.get(content_type)
        if content_type == "conversation" and isinstance(content, str):
            return content_type, content, f"{path}.conversation"
        if content_type in message and isinstance(content, Mapping) and content_type not in _NOT_CONTENT:
            return content_type, content, f"{path}.{content_type}"
    return None


def _quoted_id(data: Mapping[str, Any], content: Any) -> str:
    # 2.1.1+ keeps the quote in data.contextInfo; older bodies (and media) keep it in the content message.
    for context in (data.get("contextInfo"), content.get("contextInfo") if isinstance(content, Mapping) else None):
        stanza = optional_text(context, "stanzaId")
        if stanza:
            return stanza
    return ""


def _content_fields(
    content_type: str, content: Any, path: str, data: Mapping[str, Any], message: Mapping[str, Any]
) -> dict[str, Any]:
    if content_type == "conversation":
        return {"kind": Kind.TEXT, "text": content}
    build = _BUILDERS.get(content_type)
    if build is None:
        return {"kind": Kind.OTHER}  # polls, events, payments…: staff see that something arrived
    return build(content, path, data, message)


def _text(content: Mapping[str, Any], *_: Any) -> dict[str, Any]:
    # extendedTextMessage: only ≤2.1.0 delivers it; newer versions convert it to `conversation` (§3.1).
    return {"kind": Kind.TEXT, "text": optional_text(content, "text")}


def _media(kind: Kind) -> Callable[..., dict[str, Any]]:
    def build(content: Mapping[str, Any], path: str, data: Mapping[str, Any], message: Mapping[str, Any]) -> dict:
        ref = MediaRef(
            mime_type=optional_text(content, "mimetype"),
            file_name=optional_text(content, "fileName"),
            size=number(content, "fileLength", f"{path}.fileLength"),
            seconds=number(content, "seconds", f"{path}.seconds"),
            voice_note=kind is Kind.AUDIO and content.get("ptt") is True,
            inline_base64=optional_text(message, "base64"),
            # What getBase64FromMediaMessage needs (§4.5); the crypto fields inside stay opaque.
            provider_data={"key": dict(data["key"]), "message": {k: v for k, v in message.items() if k != "base64"}},
        )
        return {"kind": kind, "text": optional_text(content, "caption"), "media": ref}

    return build


def _location(content: Mapping[str, Any], path: str, *_: Any) -> dict[str, Any]:
    coordinates = []
    for axis in ("degreesLatitude", "degreesLongitude"):
        value = content.get(axis)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(f"{path}.{axis}", "is not a number")
        coordinates.append(float(value))
    place = Location(coordinates[0], coordinates[1], optional_text(content, "name"), optional_text(content, "address"))
    return {"kind": Kind.LOCATION, "location": place, "text": optional_text(content, "caption")}


def _contact(content: Mapping[str, Any], *_: Any) -> dict[str, Any]:
    name = optional_text(content, "displayName")
    return {"kind": Kind.CONTACT, "contacts": (name,) if name else ()}


def _contacts(content: Mapping[str, Any], path: str, *_: Any) -> dict[str, Any]:
    entries = items(content, "contacts", f"{path}.contacts")
    names = tuple(name for entry in entries if (name := optional_text(entry, "displayName")))
    return {"kind": Kind.CONTACT, "contacts": names}


def _reaction(content: Mapping[str, Any], path: str, *_: Any) -> dict[str, Any]:
    target = text_field(mapping(content, "key", f"{path}.key"), "id", f"{path}.key.id")
    # An empty (or absent) text means the patient removed the reaction.
    return {"kind": Kind.REACTION, "text": optional_text(content, "text"), "reaction_to_message_id": target}


def _buttons_reply(content: Mapping[str, Any], *_: Any) -> dict[str, Any]:
    return {
        "kind": Kind.TEXT,
        "text": optional_text(content, "selectedDisplayText"),
        "selected_option_id": optional_text(content, "selectedButtonId"),
    }


def _list_reply(content: Mapping[str, Any], *_: Any) -> dict[str, Any]:
    reply = content.get("singleSelectReply")
    return {
        "kind": Kind.TEXT,
        "text": optional_text(content, "title"),
        "selected_option_id": optional_text(reply, "selectedRowId"),
    }


def _template_reply(content: Mapping[str, Any], *_: Any) -> dict[str, Any]:
    return {
        "kind": Kind.TEXT,
        "text": optional_text(content, "selectedDisplayText"),
        "selected_option_id": optional_text(content, "selectedId"),
    }


def _interactive_reply(content: Mapping[str, Any], *_: Any) -> dict[str, Any]:
    # Replies to /message/sendButtons: nativeFlowResponseMessage.paramsJson is a JSON *string* holding the id.
    flow = content.get("nativeFlowResponseMessage")
    try:
        params = json.loads(optional_text(flow, "paramsJson") or "{}")
    except ValueError:
        params = {}  # keep the label: the patient's answer still reaches the receptionist
    option = params.get("id") if isinstance(params, Mapping) else None
    return {
        "kind": Kind.TEXT,
        "text": optional_text(content.get("body"), "text"),
        "selected_option_id": option if isinstance(option, str) else "",
    }


_BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "extendedTextMessage": _text,
    "imageMessage": _media(Kind.IMAGE),
    "videoMessage": _media(Kind.VIDEO),
    "ptvMessage": _media(Kind.VIDEO),  # round "video note"
    "documentMessage": _media(Kind.DOCUMENT),
    "audioMessage": _media(Kind.AUDIO),
    # A sticker is an expression, not a question or a document (an IMAGE would read as a photo of an exam or
    # prescription): OTHER, with the media kept so the inbox can still show it.
    "stickerMessage": _media(Kind.OTHER),
    "locationMessage": _location,
    "liveLocationMessage": _location,
    "contactMessage": _contact,
    "contactsArrayMessage": _contacts,
    "reactionMessage": _reaction,
    "buttonsResponseMessage": _buttons_reply,
    "listResponseMessage": _list_reply,
    "templateButtonReplyMessage": _template_reply,
    "interactiveResponseMessage": _interactive_reply,
}


# --- messages.update / messages.delete ----------------------------------------------------------------------------


def status_name(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return _STATUS_NAMES.get(value, str(value))
    return value if isinstance(value, str) else ""


def update_id(data: Mapping[str, Any]) -> str:
    # 2.x: data.keyId. Older bodies carried the Baileys key instead.
    if isinstance(data.get("keyId"), str) and data["keyId"]:
        return data["keyId"]
    key = data.get("key")
    if isinstance(key, Mapping) and isinstance(key.get("id"), str) and key["id"]:
        return key["id"]
    raise fail("data.keyId")


def delete_id(data: Mapping[str, Any]) -> str:
    # data is the Baileys key itself ({remoteJid, fromMe, id}); tolerate it nested under `key`.
    key = data.get("key") if isinstance(data.get("key"), Mapping) else data
    return text_field(key, "id", "data.id")


def _update(payload: Mapping[str, Any], data: Mapping[str, Any]) -> Event:
    message_id = update_id(data)
    key = data.get("key") if isinstance(data.get("key"), Mapping) else {}
    remote = data.get("remoteJid") or key.get("remoteJid")
    chat_id = _status_chat(remote)
    if isinstance(chat_id, Ignored):
        return chat_id
    if data.get("pollUpdates"):
        # 2.3.5–2.3.6 report updates without a status (poll votes, edits) as DELETED; a vote deletes nothing.
        return Ignored("poll vote")
    name = status_name(data.get("status"))
    if name == "PENDING":
        return Ignored("pending status")
    status = _STATUSES.get(name)
    if status is None:
        return Ignored(f"unknown message status {name or '(none)'}")
    from_me = data.get("fromMe", key.get("fromMe"))
    if from_me is False and status is not DeliveryStatus.DELETED:
        return Ignored("receipt for a message the patient sent")
    return StatusUpdate(message_id, status, chat_id=chat_id)


def _delete(payload: Mapping[str, Any], data: Mapping[str, Any]) -> Event:
    message_id = delete_id(data)
    key = data.get("key") if isinstance(data.get("key"), Mapping) else data
    chat_id = _status_chat(key.get("remoteJid"))
    if isinstance(chat_id, Ignored):
        return chat_id
    return StatusUpdate(message_id, DeliveryStatus.DELETED, chat_id=chat_id)


def _status_chat(remote: object) -> str | Ignored:
    """The chat a status names, as given (status bodies carry no alternative identity); groups and lists ignored."""
    jid = jids.parse_jid(remote)
    if jid is None:
        return ""
    if jid.is_group or jid.is_status_broadcast or jid.is_broadcast_list or jid.is_newsletter:
        return Ignored("status of a message outside a 1:1 chat")
    return str(jid)


# --- connection.update / qrcode.updated ---------------------------------------------------------------------------


def _connection(payload: Mapping[str, Any], data: Mapping[str, Any]) -> Event:
    state = data.get("state")
    if not isinstance(state, str):
        raise fail("data.state")
    try:
        reason = int64(data.get("statusReason"))
    except ValueError:
        reason = None  # a code we cannot read does not change what the state means
    return ConnectionUpdate(_STATES.get(state, ChannelState.UNKNOWN), reason, jids.phone_of(data.get("wuid")))


def _qrcode(payload: Mapping[str, Any], data: Mapping[str, Any]) -> Event:
    qrcode = data.get("qrcode")
    if isinstance(qrcode, Mapping):
        return QrCodeUpdate(
            qr_code=text_field(qrcode, "code", "data.qrcode.code"),
            image_data_url=optional_text(qrcode, "base64"),
            pairing_code=optional_text(qrcode, "pairingCode"),
        )
    if "statusCode" in data or "message" in data:
        # QRCODE_LIMIT reached (§3.5): the pairing attempt is over. REFUSED tells the admin to stop showing a stale
        # QR code and to start again, the same state connection.update reports next (428).
        try:
            reason = int64(data.get("statusCode"))
        except ValueError:
            reason = None
        return ConnectionUpdate(ChannelState.REFUSED, reason)
    raise fail("data.qrcode")


_HANDLERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], Event]] = {
    "messages.upsert": _upsert,
    "send.message": _send_echo,
    "messages.update": _update,
    "messages.delete": _delete,
    "connection.update": _connection,
    "qrcode.updated": _qrcode,
}
