"""Asking staff to look at a conversation (the inbox orders by it): the one place that sets the flag and its reason."""

from __future__ import annotations

import datetime

from conversations.live import live_conversation
from conversations.models import AttentionReason, Conversation


def conversation_flag(*, conversation_id: int, reason: AttentionReason, now: datetime.datetime) -> None:
    """Flag the conversation for staff. An emergency outranks any other reason; otherwise the first reason stays
    (a failed send does not hide an unanswered patient, nor the other way round)."""
    flagged = Conversation.objects.filter(pk=conversation_id)
    if reason != AttentionReason.EMERGENCY:
        flagged = flagged.filter(needs_attention=False)
    if flagged.update(needs_attention=True, attention_reason=reason, updated_at=now):
        live_conversation(conversation_id=conversation_id, data={"needs_attention": True, "attention_reason": reason})
