"""What staff do from the desk (the inbox and the conversation page): take over, give back, assign, close, mark read,
answer, leave a note. The only writers of those changes; the views validate and call these.

Each runs atomically on the locked conversation, publishes a live event on commit (conversations.live) and, where it
changes who handles the patient, leaves an audit entry (patients.audit). Staff answers leave through the same outbox
as everything else (conversations.outbox.message_queue_outbound).
"""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from cecilia.models import StaffMembership
from conversations.live import live_conversation
from conversations.models import (
    AttentionReason,
    Conversation,
    ConversationNote,
    ConversationOwner,
    Message,
    MessageAuthor,
)
from conversations.outbox import OutsideWhatsAppWindow, message_queue_outbound
from patients.audit import audit_changes, audit_record, audit_snapshot
from patients.models import AuditAction

# WhatsApp's own limit for a text message.
REPLY_MAX_LENGTH = 4096
NOTE_MAX_LENGTH = 2000


class DeskError(Exception):
    """A desk action refused, with a message for staff (translated)."""


def _locked(conversation_id: int) -> Conversation:
    return Conversation.objects.select_for_update().get(pk=conversation_id)


# What the desk's actions change; a snapshot of these before an action gives its audit entry's before and after.
_TRACKED = (
    "owner", "owner_since", "assigned_to", "needs_attention", "attention_reason", "closed_at", "unread_count",
)  # fmt: skip


def _snapshot(conversation: Conversation) -> dict[str, Any]:
    """The tracked fields as the audit trail shows them (patients.audit: names, labels, clinic-local times)."""
    return audit_snapshot(conversation, fields=_TRACKED)


def _save(conversation: Conversation, before: dict[str, Any], now: datetime.datetime) -> dict[str, list[Any]]:
    """Save the tracked fields that changed since `before` and publish them live; return the changes."""
    changes = audit_changes(before, _snapshot(conversation))
    if changes:
        conversation.updated_at = now
        conversation.save(update_fields=[*changes, "updated_at"])
        live_conversation(
            conversation_id=conversation.pk,
            data={"owner": conversation.owner, "needs_attention": conversation.needs_attention},
            clinic_id=conversation.clinic_id,
        )
    return changes


def _audit(conversation: Conversation, user: Any, action_name: str, changes: dict[str, list[Any]]) -> None:
    """One audit entry for a desk action that changed something beyond the read marker."""
    changes = {name: values for name, values in changes.items() if name != "unread_count"}
    if not changes:
        return
    audit_record(
        actor=user,
        clinic_id=conversation.clinic_id,
        action=AuditAction.ACTION,
        obj=conversation,
        patient_id=conversation.patient_id,
        changes=changes,
        action_name=action_name,
    )


def _clear_flag(conversation: Conversation) -> None:
    conversation.needs_attention = False
    conversation.attention_reason = AttentionReason.NONE


def conversation_take_over(*, conversation_id: int, user: Any, now: datetime.datetime | None = None) -> Conversation:
    """Staff handle the patient from now on: the assistant stays silent until given back (or the idle hand-back).

    The conversation is assigned to `user` when nobody has it yet.
    """
    now = now or timezone.now()
    with transaction.atomic():
        conversation = _locked(conversation_id)
        before = _snapshot(conversation)
        if conversation.owner != ConversationOwner.HUMAN:
            conversation.owner = ConversationOwner.HUMAN
            conversation.owner_since = now
        if conversation.assigned_to_id is None:
            conversation.assigned_to_id = user.pk
        conversation.closed_at = None
        _audit(conversation, user, "take_over", _save(conversation, before, now))
    return conversation


def _to_assistant(conversation: Conversation, now: datetime.datetime) -> None:
    """Back to the assistant, unassigned and unflagged: what giving back and closing share."""
    if conversation.owner != ConversationOwner.AI:
        conversation.owner = ConversationOwner.AI
        conversation.owner_since = now
    conversation.assigned_to_id = None
    _clear_flag(conversation)


def conversation_give_back(*, conversation_id: int, user: Any, now: datetime.datetime | None = None) -> Conversation:
    """The assistant answers the patient's next message again. Staff have dealt with it: the flag is cleared."""
    now = now or timezone.now()
    with transaction.atomic():
        conversation = _locked(conversation_id)
        before = _snapshot(conversation)
        _to_assistant(conversation, now)
        _audit(conversation, user, "give_back", _save(conversation, before, now))
    return conversation


def conversation_close(*, conversation_id: int, user: Any, now: datetime.datetime | None = None) -> Conversation:
    """Nothing left to do: out of the inbox until the patient writes again, then the assistant answers."""
    now = now or timezone.now()
    with transaction.atomic():
        conversation = _locked(conversation_id)
        before = _snapshot(conversation)
        _to_assistant(conversation, now)
        conversation.closed_at = now
        conversation.unread_count = 0
        _audit(conversation, user, "close", _save(conversation, before, now))
    return conversation


def conversation_assign(
    *, conversation_id: int, user: Any, assignee_id: int | None, now: datetime.datetime | None = None
) -> Conversation:
    """Give the conversation to a colleague of its clinic (or to nobody). Raises DeskError for anyone else."""
    now = now or timezone.now()
    with transaction.atomic():
        conversation = _locked(conversation_id)
        if assignee_id is not None and not _works_at(assignee_id, conversation.clinic_id):
            raise DeskError(_("Choose someone who works at this clinic."))
        before = _snapshot(conversation)
        conversation.assigned_to_id = assignee_id
        _audit(conversation, user, "assign", _save(conversation, before, now))
    return conversation


def _works_at(user_id: int, clinic_id: int) -> bool:
    if StaffMembership.objects.filter(user_id=user_id, clinic_id=clinic_id, user__is_active=True).exists():
        return True
    return get_user_model().objects.filter(pk=user_id, is_superuser=True, is_active=True).exists()


def conversation_mark_read(*, conversation_id: int) -> bool:
    """Staff opened the conversation: its patient messages are read. True when the count changed."""
    updated = Conversation.objects.filter(pk=conversation_id, unread_count__gt=0).update(unread_count=0)
    if updated:
        live_conversation(conversation_id=conversation_id, data={"unread_count": 0})
    return bool(updated)


def staff_reply_send(*, conversation_id: int, user: Any, text: str, now: datetime.datetime | None = None) -> Message:
    """Answer the patient as staff, through the outbox. Answering takes the conversation over (the assistant stays
    silent) and clears its flag: a person is on it. Raises DeskError with a message for staff."""
    now = now or timezone.now()
    text = (text or "").strip()
    if not text:
        raise DeskError(_("Write a message first."))
    if len(text) > REPLY_MAX_LENGTH:
        too_long = _("The message is too long for WhatsApp (at most %(max)d characters).")
        raise DeskError(too_long % {"max": REPLY_MAX_LENGTH})
    with transaction.atomic():
        conversation = _locked(conversation_id)
        if conversation.patient.anonymised_at is not None or not conversation.patient.phone:
            raise DeskError(_("This patient has no WhatsApp number any more: the message cannot be sent."))
        took_over = conversation.owner != ConversationOwner.HUMAN
        try:
            message = message_queue_outbound(
                conversation=conversation, text=text, author=MessageAuthor.STAFF, author_user=user
            )
        except OutsideWhatsAppWindow as exc:
            raise DeskError(str(exc.message)) from None
        before = _snapshot(conversation)
        if took_over:
            conversation.owner = ConversationOwner.HUMAN
            conversation.owner_since = now
        if conversation.assigned_to_id is None:
            conversation.assigned_to_id = user.pk
        conversation.closed_at = None
        conversation.unread_count = 0
        _clear_flag(conversation)
        changes = _save(conversation, before, now)
        if took_over:
            _audit(conversation, user, "take_over", changes)
    return message


def conversation_note_add(*, conversation_id: int, user: Any, text: str) -> ConversationNote:
    """An internal note on the conversation: for staff only, never sent, never shown to the assistant."""
    text = (text or "").strip()
    if not text:
        raise DeskError(_("Write the note first."))
    if len(text) > NOTE_MAX_LENGTH:
        raise DeskError(_("The note is too long (at most %(max)d characters).") % {"max": NOTE_MAX_LENGTH})
    with transaction.atomic():
        conversation = Conversation.objects.only("pk", "clinic_id").get(pk=conversation_id)
        note = ConversationNote.objects.create(
            clinic_id=conversation.clinic_id,
            conversation=conversation,
            author=user,
            author_label=user.get_full_name() or user.get_username(),
            text=text,
        )
        live_conversation(conversation_id=conversation.pk, data={"note_id": note.pk}, clinic_id=note.clinic_id)
    return note
