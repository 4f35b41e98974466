"""The assistant's turn: the patient's new messages, considered once, in order, one conversation at a time.

Every inbound patient message is taken by exactly one `Turn` (`Message.turn`), so a redelivered webhook or a task
that runs twice finds nothing left to do. A turn runs holding a lease on its conversation (`turn_lease_until`, a
conditional UPDATE): two workers never answer the same chat at once, and a worker that dies frees it when the lease
runs out. Bursts ("oi" / "queria marcar" / "pra amanhã") are answered together: a turn waits until the chat has been
quiet for TURN_DEBOUNCE_SECONDS. Messages older than TURN_STALE_AFTER_MINUTES (history replayed after the phone
reconnects) get no automatic answer; staff are asked to look. The engine runs outside any transaction (it may call
a model for seconds); what it answers is applied in one transaction, after checking staff did not take over meanwhile.

At most one reply per message, even after a crash: a turn a dead worker left running is never re-run (the engine may
have booked or answered already); it is closed as failed and staff are asked to look (`turns_recover`).

Voice notes, photos and documents (conversations.voice): a burst with a voice note still being fetched or transcribed
waits for it, at most TURN_VOICE_WAIT_SECONDS after it arrived; its transcript is then read like typed text. A voice
note not heard gets one request to type per burst; a photo or document one "our team will look at it"; both flag the
conversation for staff, and the engine still answers whatever else the patient wrote.

The order within a turn: the privacy acknowledgement and "voltar" (opt back in); the guardrails (conversations.
guardrails), which no engine can overrule — an emergency is answered even in a conversation staff own; hand-back to
the assistant after the clinic's idle time; then the engine (engines.engine_for), preceded on first contact by the
greeting and privacy notice (conversations.privacy), with a "one moment" message scheduled when it may be slow.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

from conversations import engines, guardrails, privacy, voice
from conversations.attention import conversation_flag
from conversations.guardrails import GuardKind
from conversations.live import live_conversation
from conversations.models import (
    AttentionReason,
    Conversation,
    ConversationOwner,
    Message,
    MessageAuthor,
    MessageDirection,
    Turn,
    TurnOutcome,
)
from conversations.nlu.text import normalize
from patients.services import patient_automated_messages_set

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnResult:
    turn_id: int | None = None  # the turn that ran, if one did
    outcome: TurnOutcome | None = None
    retry_in: float | None = None  # seconds: run again then (the chat is still busy, or another turn holds it)


def turn_run(*, conversation_id: int, now: datetime.datetime | None = None) -> TurnResult:
    """Consider the conversation's new patient messages, if any, and answer them (or leave them to staff)."""
    now = now or timezone.now()
    lease = _lease_claim(conversation_id, now)
    if lease is None:
        # Another turn holds the chat: it will see these messages, or schedule a turn for them when it ends.
        return TurnResult(retry_in=float(settings.TURN_DEBOUNCE_SECONDS))
    try:
        return _turn_with_lease(conversation_id, now)
    finally:
        Conversation.objects.filter(pk=conversation_id, turn_lease_until=lease).update(turn_lease_until=None)


def awaiting_turn(conversation_id: int):  # -> QuerySet[Message]
    """The patient's messages in this conversation that no turn has taken yet, oldest first."""
    return Message.objects.filter(
        conversation_id=conversation_id, direction=MessageDirection.INBOUND, turn__isnull=True
    ).order_by("created_at", "id")


def _lease_claim(conversation_id: int, now: datetime.datetime) -> datetime.datetime | None:
    until = now + datetime.timedelta(seconds=settings.TURN_LEASE_SECONDS)
    claimed = (
        Conversation.objects.filter(pk=conversation_id)
        .filter(Q(turn_lease_until__isnull=True) | Q(turn_lease_until__lt=now))
        .update(turn_lease_until=until)
    )
    return until if claimed else None


def _turn_with_lease(conversation_id: int, now: datetime.datetime) -> TurnResult:
    pending = list(awaiting_turn(conversation_id))
    if not pending:
        return TurnResult()  # a redelivered task, or a turn already took them
    quiet_for = (now - max(message.created_at for message in pending)).total_seconds()
    if quiet_for < settings.TURN_DEBOUNCE_SECONDS:
        return TurnResult(retry_in=settings.TURN_DEBOUNCE_SECONDS - quiet_for)

    conversation = Conversation.objects.select_related("clinic", "patient").get(pk=conversation_id)
    # A voice note on its way may say what the patient wants (or an emergency): wait for it, within a bound. The
    # transcription task enqueues this turn again as soon as the transcript lands or the voice note fails.
    voice_wait = voice.voice_wait_seconds(clinic=conversation.clinic, messages=pending, now=now)
    if voice_wait is not None:
        return TurnResult(retry_in=voice_wait)
    with transaction.atomic():
        turn = Turn.objects.create(clinic_id=conversation.clinic_id, conversation=conversation, started_at=now)
        Message.objects.filter(pk__in=[message.pk for message in pending], turn__isnull=True).update(turn=turn)
    privacy.acknowledge_if_replying(conversation=conversation, pending=pending)
    if _opt_back_in(conversation, pending, turn, now):
        return TurnResult(turn_id=turn.pk, outcome=TurnOutcome.ANSWERED)

    # Guardrails first, whoever owns the conversation and whatever the clinic set: no engine can overrule them.
    guard = _guard(conversation, pending)
    if guard is not None and guard.kind != GuardKind.MEDICAL_ADVICE:
        return _apply_guard(conversation, turn, guard, now)

    _hand_back_if_idle(conversation, now)
    outcome = _decide(conversation, pending, turn, now)
    if outcome is not None:
        _finish(turn, outcome, now=now, conversation=conversation)
        return TurnResult(turn_id=turn.pk, outcome=outcome)
    # Unheard voice notes and photos/documents get the turn's own reply and go to staff; the engine reads the rest.
    media = voice.burst_media(pending)
    attention = AttentionReason.UNANSWERED if media.needs_staff else None
    if guard is not None:
        # A question about medicines, doses or exams: the fixed answer, which offers an appointment; a "sim" next
        # starts booking (the rule engine's offer_book step) unless the patient was already in the middle of one.
        state = dict(conversation.state or {})
        offer = None if state.get("flow") else {**state, "flow": "offer_book"}
        return _answer(
            conversation, [], turn, now, preface=[guard.reply, *media.notes], engine_needed=False,
            state=offer, attention=attention,
        )  # fmt: skip
    return _answer(
        conversation,
        media.for_engine,
        turn,
        now,
        preface=media.notes,
        engine_needed=media.engine_needed,
        attention=attention,
    )


_OPT_IN_WORDS = {"voltar", "quero voltar", "voltar a receber", "pode voltar a mandar"}
OPT_IN_REPLY = "Pronto! Você voltou a receber nossos lembretes e mensagens automáticas. 😊"


def _opt_back_in(conversation: Conversation, pending: list[Message], turn: Turn, now: datetime.datetime) -> bool:
    """A patient who opted out writes "voltar" (the opt-out reply tells them to): automated messages resume."""
    from conversations.outbox import message_queue_outbound

    patient = conversation.patient
    if not patient.opt_out_automated:
        return False
    if not any(normalize(message.text) in _OPT_IN_WORDS for message in pending if message.text):
        return False
    turn.engine = "guardrails"
    with transaction.atomic():
        patient_automated_messages_set(patient_id=patient.pk, allowed=True)
        patient.opt_out_automated = False
        message_queue_outbound(conversation=conversation, text=OPT_IN_REPLY, author=MessageAuthor.AI)
        _finish(turn, TurnOutcome.ANSWERED, now=now, conversation=conversation)
    return True


def _guard(conversation: Conversation, pending: list[Message]) -> guardrails.Guard | None:
    """The most serious guard any of the new messages trips (one reply for the burst)."""
    found = [
        guard
        for message in pending
        if message.text
        and (guard := guardrails.check(message.text, clinic_name=conversation.clinic.name,
                                       clinic_phone=conversation.clinic.phone))
    ]  # fmt: skip
    return min(found, key=lambda guard: _GUARD_RANK[guard.kind], default=None)


# The most serious first, as guardrails.check ranks them within one message.
_GUARD_RANK = {kind: rank for rank, kind in enumerate(guardrails.PRECEDENCE)}
_GUARD_ATTENTION = {
    GuardKind.SUICIDE: AttentionReason.EMERGENCY,
    GuardKind.EMERGENCY: AttentionReason.EMERGENCY,
    GuardKind.HUMAN: AttentionReason.ASKED_FOR_HUMAN,
    GuardKind.ABUSE: AttentionReason.HANDOFF,
}


def _apply_guard(conversation: Conversation, turn: Turn, guard: guardrails.Guard, now: datetime.datetime) -> TurnResult:
    from conversations.outbox import message_queue_outbound

    urgent = guard.kind in (GuardKind.EMERGENCY, GuardKind.SUICIDE)
    turn.engine = "guardrails"
    with transaction.atomic():
        current = Conversation.objects.select_for_update().select_related("clinic").get(pk=conversation.pk)
        staff_there = current.owner == ConversationOwner.HUMAN
        # An emergency is answered even in a conversation staff own: they may not be looking right now.
        if urgent or not staff_there:
            message_queue_outbound(conversation=current, text=guard.reply, author=MessageAuthor.AI)
        if guard.kind == GuardKind.OPT_OUT:
            patient_automated_messages_set(patient_id=current.patient_id, allowed=False)
        fields = ["updated_at"]
        if guard.stop_assistant and not staff_there:
            current.owner = ConversationOwner.HUMAN
            current.owner_since = now
            current.handoff_summary = guard.summary
            fields += ["owner", "owner_since", "handoff_summary"]
            live_conversation(conversation_id=current.pk, data={"owner": current.owner}, clinic_id=current.clinic_id)
        current.save(update_fields=fields)
        outcome = TurnOutcome.HANDED_OFF if guard.stop_assistant else TurnOutcome.ANSWERED
        _finish(turn, outcome, now=now, conversation=current, reason=_GUARD_ATTENTION.get(guard.kind))
    if urgent:
        logger.warning("Emergency guardrail in conversation %s (%s): staff alerted", conversation.pk, guard.kind)
    return TurnResult(turn_id=turn.pk, outcome=outcome)


def late_message_guard(*, message_id: int) -> bool:
    """Run the emergency guardrails on a message whose text arrived after its turn (a late voice-note transcript).

    Only the urgent kinds act this late — an emergency or suicidal talk still gets its fixed message and the urgent
    flag; anything else is already with staff (the turn flagged the unheard voice note). True when a guard fired.
    """
    message = Message.objects.select_related("conversation__clinic").filter(pk=message_id).first()
    if message is None or not message.text or message.turn_id is None:
        return False
    conversation = message.conversation
    guard = guardrails.check(message.text, clinic_name=conversation.clinic.name, clinic_phone=conversation.clinic.phone)
    if guard is None or guard.kind not in (GuardKind.EMERGENCY, GuardKind.SUICIDE):
        return False
    now = timezone.now()
    turn = Turn.objects.create(clinic_id=conversation.clinic_id, conversation=conversation, started_at=now)
    _apply_guard(conversation, turn, guard, now)
    return True


def _hand_back_if_idle(conversation: Conversation, now: datetime.datetime) -> None:
    """Staff took the conversation and then went quiet for the clinic's hand-back time: the assistant answers again."""
    minutes = conversation.clinic.assistant_handback_minutes
    if conversation.owner != ConversationOwner.HUMAN or not minutes:
        return
    last_staff = (
        Message.objects.filter(conversation=conversation, author=MessageAuthor.STAFF)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    handed_over = (
        Turn.objects.filter(conversation=conversation, outcome=TurnOutcome.HANDED_OFF)
        .order_by("-started_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    # Staff taking over from the desk count as staff activity: the hand-back waits from the take-over at the earliest.
    activity = [last_staff, handed_over, conversation.owner_since]
    quiet_since = max(filter(None, activity), default=conversation.updated_at)
    if now - quiet_since < datetime.timedelta(minutes=minutes):
        return
    # Never over an emergency nobody has looked at yet.
    if conversation.needs_attention and conversation.attention_reason == AttentionReason.EMERGENCY:
        return
    updated = Conversation.objects.filter(pk=conversation.pk, owner=ConversationOwner.HUMAN).update(
        owner=ConversationOwner.AI, owner_since=now, updated_at=now
    )
    if updated:
        conversation.owner = ConversationOwner.AI
        live_conversation(
            conversation_id=conversation.pk, data={"owner": ConversationOwner.AI}, clinic_id=conversation.clinic_id
        )


def _decide(
    conversation: Conversation, pending: list[Message], turn: Turn, now: datetime.datetime
) -> TurnOutcome | None:
    """The outcome when the engine is not asked at all; None when it is."""
    if conversation.owner == ConversationOwner.HUMAN:
        return TurnOutcome.STAFF_OWNS
    stale_before = now - datetime.timedelta(minutes=settings.TURN_STALE_AFTER_MINUTES)
    if all((message.sent_at or message.created_at) < stale_before for message in pending):
        return TurnOutcome.STALE
    if not conversation.clinic.ai_enabled or conversation.patient.opt_out_ai:
        return TurnOutcome.ASSISTANT_OFF
    return None


_ATTENTION = {
    TurnOutcome.STALE: AttentionReason.STALE,
    TurnOutcome.ASSISTANT_OFF: AttentionReason.UNANSWERED,
    TurnOutcome.FAILED: AttentionReason.UNANSWERED,
}


def _answer(
    conversation: Conversation,
    pending: list[Message],
    turn: Turn,
    now: datetime.datetime,
    *,
    preface: list[str],
    engine_needed: bool = True,
    attention: AttentionReason | None = None,
    state: dict | None = None,
) -> TurnResult:
    """Ask the engine (unless the burst holds nothing it could answer) and apply its reply after `preface`.

    `attention` flags the conversation for staff even when the engine answered (a voice note to listen to, a photo
    to look at); an engine's own reason (an emergency, a handoff) comes first.
    """
    from conversations.outbox import message_queue_outbound

    try:
        if engine_needed:
            reply = _engine_reply(conversation, pending, turn, now)
        else:
            turn.engine = "guardrails" if state is not None else "media"
            reply = engines.EngineReply(state=state)
    except Exception as exc:  # any engine failure leaves the patient to staff, never unanswered and unseen
        logger.exception("Assistant engine %s failed in conversation %s", turn.engine, conversation.pk)
        _finish(turn, TurnOutcome.FAILED, now=now, conversation=conversation, error=type(exc).__name__)
        return TurnResult(turn_id=turn.pk, outcome=TurnOutcome.FAILED)

    try:
        with transaction.atomic():
            # Staff may have taken over while the engine was thinking: they have the last word.
            current = (
                Conversation.objects.select_for_update().select_related("clinic", "patient").get(pk=conversation.pk)
            )
            if current.owner == ConversationOwner.HUMAN:
                _finish(turn, TurnOutcome.STAFF_OWNS, now=now, conversation=current)
                return TurnResult(turn_id=turn.pk, outcome=TurnOutcome.STAFF_OWNS)
            texts = [*privacy.first_contact_texts(conversation=current, now=now), *preface, *reply.texts]
            for text in texts:
                if text.strip():
                    message_queue_outbound(conversation=current, text=text, author=MessageAuthor.AI)
            fields = ["updated_at"]
            if reply.state is not None:
                current.state = reply.state
                fields.append("state")
            if reply.handoff:
                current.owner = ConversationOwner.HUMAN
                current.owner_since = now
                current.handoff_summary = reply.handoff_summary
                fields += ["owner", "owner_since", "handoff_summary"]
                live_conversation(
                    conversation_id=current.pk, data={"owner": current.owner}, clinic_id=current.clinic_id
                )
            current.save(update_fields=fields)
            outcome = TurnOutcome.HANDED_OFF if reply.handoff else TurnOutcome.ANSWERED
            reason = reply.attention_reason or (AttentionReason.HANDOFF if reply.handoff else None) or attention
            _finish(turn, outcome, now=now, conversation=current, reason=reason)
    except Exception as exc:
        logger.exception("Assistant reply not applied in conversation %s", conversation.pk)
        _finish(turn, TurnOutcome.FAILED, now=now, conversation=conversation, error=type(exc).__name__)
        return TurnResult(turn_id=turn.pk, outcome=TurnOutcome.FAILED)
    return TurnResult(turn_id=turn.pk, outcome=outcome)


def _engine_reply(
    conversation: Conversation, messages: list[Message], turn: Turn, now: datetime.datetime
) -> engines.EngineReply:
    from conversations.tasks import turn_holding_enqueue

    engine = engines.engine_for(conversation.clinic, conversation=conversation, now=now)
    turn.engine = engine.name[:40]
    # A model can take seconds: if the answer is not out by then, the patient hears from us anyway.
    if getattr(engine, "may_be_slow", False):
        turn_holding_enqueue(turn.pk)
    return engine.respond(
        engines.TurnInput(clinic=conversation.clinic, conversation=conversation, messages=messages, now=now)
    )


def turn_holding_send(*, turn_id: int) -> bool:
    """If the turn is still thinking, tell the patient we are on it (once). True when a message was queued."""
    from conversations.outbox import message_queue_outbound

    with transaction.atomic():
        turn = Turn.objects.select_for_update().select_related("conversation").filter(pk=turn_id).first()
        if turn is None or turn.outcome != TurnOutcome.RUNNING or turn.holding_sent_at is not None:
            return False
        conversation = turn.conversation
        if conversation.owner == ConversationOwner.HUMAN:
            return False
        message_queue_outbound(conversation=conversation, text=HOLDING_MESSAGE, author=MessageAuthor.AI)
        turn.holding_sent_at = timezone.now()
        turn.save(update_fields=["holding_sent_at"])
    return True


HOLDING_MESSAGE = "Só um instantinho, já te respondo 😊"


def _finish(
    turn: Turn,
    outcome: TurnOutcome,
    *,
    now: datetime.datetime,
    conversation: Conversation,
    error: str = "",
    reason: AttentionReason | None = None,
) -> None:
    with transaction.atomic():
        turn.outcome, turn.finished_at, turn.error = outcome, now, error[:200]
        turn.save(update_fields=["outcome", "finished_at", "error", "engine"])
        reason = reason or _ATTENTION.get(outcome)
        if reason is not None:
            conversation_flag(conversation_id=conversation.pk, reason=reason, now=now)


def turns_due(*, now: datetime.datetime, limit: int = 500) -> list[int]:
    """Conversations with patient messages no turn has taken, quiet for a while and not held by a live turn.

    Their task was lost (a Redis outage, a crash between commit and publish); beat's relay enqueues them again.
    """
    quiet_since = now - datetime.timedelta(seconds=settings.TURN_DEBOUNCE_SECONDS + settings.TURN_RELAY_AFTER_SECONDS)
    waiting = (
        Message.objects.filter(direction=MessageDirection.INBOUND, turn__isnull=True)
        .values("conversation_id")
        .annotate(newest=Max("created_at"))
        .filter(newest__lt=quiet_since)
    )
    free = Q(turn_lease_until__isnull=True) | Q(turn_lease_until__lt=now)
    return list(
        Conversation.objects.filter(free, pk__in=waiting.values("conversation_id")).values_list("pk", flat=True)[:limit]
    )


def turns_recover(*, now: datetime.datetime) -> int:
    """Close the turns a dead worker left running (their lease ran out) as failed, and ask staff to look.

    Never re-run: the engine may have answered or booked before the worker died, and a patient must not get the same
    answer twice. Returns how many were closed.
    """
    expired = now - datetime.timedelta(seconds=settings.TURN_LEASE_SECONDS)
    live_lease = Conversation.objects.filter(pk=OuterRef("conversation_id"), turn_lease_until__gte=now)
    closed = 0
    for turn in Turn.objects.filter(outcome=TurnOutcome.RUNNING, started_at__lt=expired).exclude(Exists(live_lease)):
        with transaction.atomic():
            updated = Turn.objects.filter(pk=turn.pk, outcome=TurnOutcome.RUNNING).update(
                outcome=TurnOutcome.FAILED, finished_at=now, error="WorkerLost"
            )
            if updated:
                conversation_flag(conversation_id=turn.conversation_id, reason=AttentionReason.UNANSWERED, now=now)
                closed += updated
    if closed:
        logger.warning("Closed %s assistant turns left running by a dead worker", closed)
    return closed
