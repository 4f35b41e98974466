"""Meta WhatsApp Cloud API webhook bodies → provider-agnostic events (contract §5 and Meta's messages reference).

`{"object": "whatsapp_business_account", "entry": [{"id", "changes": [{"field": "messages", "value": {…}}]}]}`:
one body can batch several messages and statuses, and several phone numbers of the same app. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from integrations.whatsapp import jids
from integrations.whatsapp._common import fail, int64, items, mapping, optional_text, text_field, unix_datetime
from integrations.whatsapp.base import (
    DeliveryStatus,
    Event,
    Ignored,
    InboundMessage,
    Kind,
    Location,
    MediaRef,
    StatusUpdate,
)

_STATUSES = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
    "deleted": DeliveryStatus.DELETED,
}
_MEDIA_KINDS = {
    "image": Kind.IMAGE,
    "video": Kind.VIDEO,
    "document": Kind.DOCUMENT,
    "audio": Kind.AUDIO,
    "sticker": Kind.OTHER,  # an expression, not a question or a document (see the Evolution parser)
}


def phone_number_ids(payload: Any) -> list[str]:
    """Every `metadata.phone_number_id` in a body, in order, without repeats; [] for anything unreadable."""
    found: list[str] = []
    entries = payload.get("entry") if isinstance(payload, Mapping) else None
    for entry in entries if isinstance(entries, list) else []:
        changes = entry.get("changes") if isinstance(entry, Mapping) else None
        for change in changes if isinstance(changes, list) else []:
            value = change.get("value") if isinstance(change, Mapping) else None
            number_id = optional_text(value.get("metadata") if isinstance(value, Mapping) else None, "phone_number_id")
            if number_id and number_id not in found:
                found.append(number_id)
    return found


def parse(payload: Any, phone_number_id: str) -> list[Event]:
    """The events of one body for the clinic whose number is `phone_number_id`.

    Changes for another phone number become Ignored rather than an error: the batch is authentic (the HMAC covers it
    whole) and one app may serve several numbers, so rejecting it would make Meta redeliver this clinic's events for
    days. The app can hand the same stored body to the other number's provider (`phone_number_ids`).
    """
    if not isinstance(payload, Mapping):
        raise fail("(body)", "is not a JSON object")
    if payload.get("object") != "whatsapp_business_account":
        return [Ignored("not a WhatsApp Business Account notification")]
    events: list[Event] = []
    for i, entry in enumerate(_required_list(payload, "entry", "entry")):
        if not isinstance(entry, Mapping):
            raise fail(f"entry[{i}]")
        for j, change in enumerate(_required_list(entry, "changes", f"entry[{i}].changes")):
            events += _change(change, f"entry[{i}].changes[{j}]", phone_number_id)
    return events or [Ignored("empty notification")]


def _required_list(parent: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = parent.get(key)
    if not isinstance(value, list):
        raise fail(path, "is missing or not a list")
    return value


def _change(change: Any, path: str, phone_number_id: str) -> list[Event]:
    if not isinstance(change, Mapping):
        raise fail(path)
    field = change.get("field")
    if field != "messages":
        return [Ignored(f"unused field {field}")]
    value = mapping(change, "value", f"{path}.value")
    if optional_text(value.get("metadata"), "phone_number_id") != phone_number_id:
        return [Ignored("another phone number")]
    path = f"{path}.value"
    names = {
        optional_text(contact, "wa_id"): optional_text(contact.get("profile"), "name")
        for contact in items(value, "contacts", f"{path}.contacts")
        if isinstance(contact, Mapping)
    }
    events: list[Event] = []
    for k, message in enumerate(items(value, "messages", f"{path}.messages")):
        events.append(_message(message, f"{path}.messages[{k}]", names))
    for k, status in enumerate(items(value, "statuses", f"{path}.statuses")):
        events.append(_status(status, f"{path}.statuses[{k}]"))
    return events or [Ignored("notification without messages or statuses")]


def _timestamp(parent: Mapping[str, Any], path: str) -> Any:
    try:
        return unix_datetime(parent.get("timestamp"))  # a string of Unix seconds
    except ValueError:
        raise fail(f"{path}.timestamp", "is not a Unix timestamp") from None


def _message(message: Any, path: str, names: Mapping[str, str]) -> Event:
    if not isinstance(message, Mapping):
        raise fail(path)
    message_id = text_field(message, "id", f"{path}.id")
    sender = text_field(message, "from", f"{path}.from")
    kind = optional_text(message, "type")
    if kind in ("system", "request_welcome"):
        return Ignored(f"{kind} notice")
    build = _BUILDERS.get(kind)
    fields = build(message.get(kind), f"{path}.{kind}") if build else {"kind": Kind.OTHER}
    return InboundMessage(
        provider_message_id=message_id,
        chat_id=sender,  # wa_id: reply to it as given (older Brazilian mobiles have no ninth digit here)
        phone=jids.phone_of(sender),
        lid=None,
        from_me=False,
        sender_name=names.get(sender, ""),
        quoted_message_id=optional_text(message.get("context"), "id"),
        timestamp=_timestamp(message, path),
        **fields,
    )


def _text(content: Any, path: str) -> dict[str, Any]:
    if not isinstance(content, Mapping):
        raise fail(path)
    return {"kind": Kind.TEXT, "text": optional_text(content, "body")}


def _media(kind_name: str) -> Callable[[Any, str], dict[str, Any]]:
    def build(content: Any, path: str) -> dict[str, Any]:
        if not isinstance(content, Mapping):
            raise fail(path)
        ref = MediaRef(
            mime_type=optional_text(content, "mime_type"),
            file_name=optional_text(content, "filename"),
            voice_note=content.get("voice") is True,
            provider_data={"id": text_field(content, "id", f"{path}.id"), "sha256": optional_text(content, "sha256")},
        )
        return {"kind": _MEDIA_KINDS[kind_name], "text": optional_text(content, "caption"), "media": ref}

    return build


def _location(content: Any, path: str) -> dict[str, Any]:
    if not isinstance(content, Mapping):
        raise fail(path)
    coordinates = []
    for axis in ("latitude", "longitude"):
        value = content.get(axis)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(f"{path}.{axis}", "is not a number")
        coordinates.append(float(value))
    place = Location(coordinates[0], coordinates[1], optional_text(content, "name"), optional_text(content, "address"))
    return {"kind": Kind.LOCATION, "location": place}


def _contacts(content: Any, path: str) -> dict[str, Any]:
    if not isinstance(content, list):
        raise fail(path, "is not a list")
    cards = [card.get("name") for card in content if isinstance(card, Mapping)]
    names = tuple(name for card in cards if (name := optional_text(card, "formatted_name")))
    return {"kind": Kind.CONTACT, "contacts": names}


def _reaction(content: Any, path: str) -> dict[str, Any]:
    if not isinstance(content, Mapping):
        raise fail(path)
    # A removed reaction comes without an emoji (or with an empty one).
    target = text_field(content, "message_id", f"{path}.message_id")
    return {"kind": Kind.REACTION, "text": optional_text(content, "emoji"), "reaction_to_message_id": target}


def _interactive(content: Any, path: str) -> dict[str, Any]:
    if not isinstance(content, Mapping):
        raise fail(path)
    reply = content.get(optional_text(content, "type"))  # button_reply / list_reply: {id, title}
    if optional_text(content, "type") not in ("button_reply", "list_reply") or not isinstance(reply, Mapping):
        return {"kind": Kind.OTHER}  # e.g. nfm_reply (WhatsApp Flows), which Cecilia does not send
    return {"kind": Kind.TEXT, "text": optional_text(reply, "title"), "selected_option_id": optional_text(reply, "id")}


def _button(content: Any, path: str) -> dict[str, Any]:
    # A quick-reply button of a template: `payload` is what the template defined, `text` the label.
    if not isinstance(content, Mapping):
        raise fail(path)
    return {
        "kind": Kind.TEXT,
        "text": optional_text(content, "text"),
        "selected_option_id": optional_text(content, "payload"),
    }


_BUILDERS: dict[str, Callable[[Any, str], dict[str, Any]]] = {
    "text": _text,
    **{name: _media(name) for name in _MEDIA_KINDS},
    "location": _location,
    "contacts": _contacts,
    "reaction": _reaction,
    "interactive": _interactive,
    "button": _button,
}


def _status(status: Any, path: str) -> Event:
    if not isinstance(status, Mapping):
        raise fail(path)
    message_id = text_field(status, "id", f"{path}.id")
    name = optional_text(status, "status")
    delivery = _STATUSES.get(name)
    if delivery is None:
        return Ignored(f"unknown message status {name or '(none)'}")
    return StatusUpdate(
        message_id,
        delivery,
        chat_id=optional_text(status, "recipient_id"),
        timestamp=_timestamp(status, path),
        error=_errors_text(status.get("errors")),
    )


def _errors_text(errors: Any) -> str:
    """`errors[]` in words: `(#131026) Message undeliverable: <details>` (Meta's titles are in English)."""
    parts = []
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, Mapping):
            continue
        try:
            code = int64(error.get("code"))
        except ValueError:
            code = None
        title = optional_text(error, "title") or optional_text(error, "message")
        details = optional_text(error.get("error_data"), "details")
        text = f"(#{code}) {title}" if code is not None else title
        parts.append(f"{text}: {details}" if details and details != title else text)
    return "; ".join(part for part in parts if part)
