"""Live updates for staff: the one emitter. Every state change staff should see live is published here, on commit,
to its clinic's Channels group (`clinic.<id>`); `conversations.consumers.InboxConsumer` forwards it to the sockets of
that clinic's staff.

Contract of an event: a small JSON object of ids and states only — `{"event": "message", "conversation_id": 12,
"message_id": 40, "direction": "in", "status": "received"}` — never a message's text, a phone number or anything about
the patient. The page fetches what the user may see over HTTP, where the admin's clinic scoping applies; a socket
tells it only what to fetch (Invariants 5 and 7).

Publishing never fails the caller: the change is committed already, and a Redis outage must not undo it or break a
webhook. A lost event costs a page a refresh, nothing more.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

# The consumer's handler for these group messages is `live_event` (Channels maps "live.event" to it).
GROUP_MESSAGE_TYPE = "live.event"
# What `data` may hold: ids, states, flags. Strings are states ("received", "human"), never free text.
_Scalar = int | str | bool | None


def clinic_group(clinic_id: int) -> str:
    """The Channels group of one clinic's staff."""
    return f"clinic.{int(clinic_id)}"


def user_group(user_id: int) -> str:
    """The Channels group of one user's sockets: told when what they may see changes."""
    return f"user.{int(user_id)}"


# The consumer's handler for access changes is `access_changed`.
ACCESS_MESSAGE_TYPE = "access.changed"


def live_access_changed(*, user_id: int) -> None:
    """The user's memberships, role or staff status changed: once committed, their open sockets close and reconnect,
    and the reconnection is checked again (a removed receptionist stops hearing the clinic at once)."""
    transaction.on_commit(lambda: _send_to_user(user_id))


def membership_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Receiver for a StaffMembership saved or deleted."""
    live_access_changed(user_id=instance.user_id)


def user_changed(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    """Receiver for a user saved; not for the `last_login` a login writes (it would cut the user's other tabs)."""
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return
    live_access_changed(user_id=instance.pk)


def _send_to_user(user_id: int) -> None:
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        async_to_sync(layer.group_send)(user_group(user_id), {"type": ACCESS_MESSAGE_TYPE})
    except Exception as exc:  # the socket keeps listening until it reconnects; every fetch is still scoped over HTTP
        logger.warning("Access change for user %s not published: %s", user_id, type(exc).__name__)


def live_publish(
    *, clinic_id: int, event: str, conversation_id: int | None = None, data: dict[str, Any] | None = None
) -> None:
    """Tell the clinic's staff that `event` happened, once the current transaction commits (now, in autocommit).

    Rolled back, nothing is sent. `data` holds ids and states only (see the module docstring).
    """
    payload: dict[str, _Scalar] = {"event": event}
    if conversation_id is not None:
        payload["conversation_id"] = conversation_id
    payload |= {key: _scalar(value) for key, value in (data or {}).items()}
    transaction.on_commit(lambda: _send(clinic_id, payload))


def live_message(*, message: Any, status: str | None = None) -> None:
    """A message was stored or moved on (received, sent, delivered, read, failed). `status` when the row in hand is
    older than the update just made."""
    live_publish(
        clinic_id=message.clinic_id,
        event="message",
        conversation_id=message.conversation_id,
        data={"message_id": message.pk, "direction": message.direction, "status": status or message.status},
    )


def live_conversation(*, conversation_id: int, data: dict[str, Any], clinic_id: int | None = None) -> None:
    """A conversation's flag, owner or read state changed. Without `clinic_id` (callers that hold the id only) the
    clinic is read after commit; with it, nothing is read."""
    if clinic_id is not None:
        live_publish(clinic_id=clinic_id, event="conversation", conversation_id=conversation_id, data=data)
        return
    payload: dict[str, _Scalar] = {"event": "conversation", "conversation_id": conversation_id}
    payload |= {key: _scalar(value) for key, value in data.items()}
    transaction.on_commit(lambda: _send_for_conversation(conversation_id, payload))


def _scalar(value: Any) -> _Scalar:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        return str(value)  # a TextChoices member becomes its plain value
    raise TypeError(f"live events carry ids and states only, not {type(value).__name__}")


def _send_for_conversation(conversation_id: int, payload: dict[str, _Scalar]) -> None:
    from conversations.models import Conversation

    try:
        clinic_id = Conversation.objects.filter(pk=conversation_id).values_list("clinic_id", flat=True).first()
    except Exception as exc:  # the change is committed; a page refresh shows it
        logger.warning("Live event %s not published: %s", payload["event"], type(exc).__name__)
        return
    if clinic_id is not None:
        _send(clinic_id, payload)


def _send(clinic_id: int, payload: dict[str, _Scalar]) -> None:
    try:
        layer = get_channel_layer()
        if layer is None:
            return  # no channel layer configured (a management command with other settings)
        async_to_sync(layer.group_send)(clinic_group(clinic_id), {"type": GROUP_MESSAGE_TYPE, "payload": payload})
    except Exception as exc:  # Redis down, a full channel: logged by type only (its text could quote the payload)
        logger.warning(
            "Live event %s for clinic %s not published: %s", payload.get("event"), clinic_id, type(exc).__name__
        )
