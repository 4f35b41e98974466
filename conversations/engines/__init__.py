"""The receptionist engines behind one interface: what a turn asks of them and what they answer.

A turn (conversations.turns) hands an engine the patient's new messages and applies what it answers: texts queued
through the outbox, a hand-off to staff, the engine's working memory (`Conversation.state`). Engines never write
replies themselves; booking and the like go through the scheduling services.

`engine_for` picks the engine of a clinic: the LLM receptionist when a model is configured for it (a key and a
token budget), which falls back to the rule-based receptionist by itself when the model fails, is slow or the budget
runs out; the rule-based Portuguese receptionist otherwise.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cecilia.models import Clinic
    from conversations.models import AttentionReason, Conversation, Message


@dataclass(frozen=True)
class TurnInput:
    clinic: Clinic
    conversation: Conversation
    messages: list[Message]  # the patient's new messages, oldest first
    now: datetime.datetime


@dataclass
class EngineReply:
    texts: list[str] = field(default_factory=list)  # sent in this order, as the assistant
    handoff: bool = False  # the conversation passes to staff (the assistant goes quiet)
    handoff_summary: str = ""  # what the patient wants and what was tried, for staff
    attention_reason: AttentionReason | None = None  # e.g. an emergency; HANDOFF when handing off without one
    state: dict[str, Any] | None = None  # the engine's new working memory; None leaves it as it is


class Engine(Protocol):
    name: str
    # True for engines that may take seconds (a model): the turn then tells the patient "one moment" if the answer
    # is not out by TURN_HOLDING_AFTER_SECONDS. The rule-based engine answers in milliseconds and leaves it False.
    may_be_slow: bool

    def respond(self, turn: TurnInput) -> EngineReply: ...


def engine_for(
    clinic: Clinic, *, conversation: Conversation | None = None, now: datetime.datetime | None = None
) -> Engine:
    """The engine that answers this clinic's patients.

    An answer to Cecília's own question (a reminder's "1", a rating, a waitlist offer's "quero") and the flow it
    starts are the rule engine's even where a model is configured: fixed choices, read exactly, no tokens spent.
    """
    from conversations.engines.llm import LlmEngine, llm_configured
    from conversations.engines.rules import RuleEngine

    if not llm_configured(clinic):
        return RuleEngine()
    if conversation is not None and _answering_followup(conversation, now):
        return RuleEngine()
    return LlmEngine()


def _answering_followup(conversation: Conversation, now: datetime.datetime | None) -> bool:
    from django.utils import timezone

    from conversations.followups import pending_followup

    state = conversation.state or {}
    if state.get("via_followup") and state.get("flow"):
        return True
    return pending_followup(conversation, now=now or timezone.now()) is not None
