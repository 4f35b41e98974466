"""The assistant's turn: each patient message handled by one turn, bursts together, staff and old messages respected."""

from __future__ import annotations

import datetime
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from conversations import tasks
from conversations.engines import EngineReply, TurnInput
from conversations.models import (
    AttentionReason,
    Conversation,
    ConversationOwner,
    InboundEvent,
    Message,
    MessageAuthor,
    MessageDirection,
    MessageStatus,
    Turn,
    TurnOutcome,
)
from conversations.services import inbound_event_process, message_receive
from conversations.turns import awaiting_turn, turn_run, turns_due, turns_recover
from integrations.whatsapp.base import InboundMessage, Kind
from tests import factories

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INSTANCE = "atendimento-sp"
TOKEN = "3F6A9C1E-7B2D-4E8F-A051-9C3D7E2B4F60"
SECRET = "segredo-estatico-do-webhook-de-teste"


class FakeEngine:
    """Answers like an engine would; records what it was asked."""

    name = "fake"

    def __init__(self, reply: EngineReply | None = None, *, error: Exception | None = None, during: Any = None):
        self.reply = reply or EngineReply(texts=["Oi! Como posso ajudar? 😊"])
        self.error = error
        self.during = during  # something that happens while the engine "thinks"
        self.calls: list[list[str]] = []

    def respond(self, turn: TurnInput) -> EngineReply:
        self.calls.append([message.text for message in turn.messages])
        if self.during is not None:
            self.during()
        if self.error is not None:
            raise self.error
        return self.reply


@pytest.fixture
def engine(monkeypatch):
    fake = FakeEngine()
    monkeypatch.setattr("conversations.engines.engine_for", lambda clinic, **_: fake)
    return fake


@pytest.fixture
def enqueued(monkeypatch):
    """Turn tasks published (conversation id, countdown) instead of reaching the broker."""
    published: list[tuple[int, float | None]] = []
    monkeypatch.setattr(tasks, "turn_enqueue", lambda cid, countdown=None: published.append((cid, countdown)))
    return published


@pytest.fixture
def clinic(db):
    return factories.clinic(name="Clínica Turnos")


_ids = iter(range(10**6))


def receive(clinic, text: str, *, phone: str = "5511987654321", from_me: bool = False, sent_at=None) -> Message | None:
    return message_receive(
        clinic=clinic,
        inbound=InboundMessage(
            provider_message_id=f"MSG{next(_ids):06d}",
            chat_id=f"{phone}@s.whatsapp.net",
            phone=phone,
            lid=None,
            from_me=from_me,
            sender_name="Maria",
            kind=Kind.TEXT,
            text=text,
            timestamp=sent_at,
        ),
    )


def ai_texts() -> list[str]:
    return list(Message.objects.filter(author=MessageAuthor.AI).order_by("id").values_list("text", flat=True))


def later(seconds: float = 30) -> datetime.datetime:
    return timezone.now() + datetime.timedelta(seconds=seconds)


# --- one turn per message (Invariant 1) --------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_burst_is_answered_once_together_after_the_chat_goes_quiet(clinic, engine, enqueued):
    first = receive(clinic, "oi")
    receive(clinic, "queria marcar")
    receive(clinic, "pra amanhã")

    early = turn_run(conversation_id=first.conversation_id, now=timezone.now())
    assert early.turn_id is None and early.retry_in is not None and 0 < early.retry_in <= 4
    assert engine.calls == []

    result = turn_run(conversation_id=first.conversation_id, now=later())
    assert result.outcome == TurnOutcome.ANSWERED
    assert engine.calls == [["oi", "queria marcar", "pra amanhã"]]
    # First contact: who is talking and the privacy notice, then the engine's answer.
    greeting, reply = Message.objects.filter(direction=MessageDirection.OUTBOUND).order_by("id")
    assert greeting.text.startswith("Olá! Eu sou a *Cecília*, assistente virtual da Clínica Turnos")
    assert (reply.author, reply.status, reply.text) == (MessageAuthor.AI, MessageStatus.QUEUED, engine.reply.texts[0])
    assert set(Message.objects.filter(direction=MessageDirection.INBOUND).values_list("turn", flat=True)) == {
        result.turn_id
    }

    # The same task again (a redelivery) finds nothing to do.
    again = turn_run(conversation_id=first.conversation_id, now=later(60))
    assert again.turn_id is None and again.retry_in is None
    assert Turn.objects.count() == 1 and len(engine.calls) == 1


@pytest.mark.django_db
def test_each_patient_message_schedules_a_turn_on_commit_and_staff_messages_do_not(
    clinic, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        message = receive(clinic, "bom dia")
    assert enqueued == [(message.conversation_id, 4.0)]
    with django_capture_on_commit_callbacks(execute=True):
        receive(clinic, "Bom dia, Maria! Aqui é a Ana da recepção.", from_me=True)
    assert len(enqueued) == 1


@pytest.mark.django_db
def test_one_webhook_delivered_three_times_makes_one_message_and_one_turn(client: Client, engine, enqueued):
    factories.clinic(
        name="Clínica Evolution",
        whatsapp_provider="evolution",
        whatsapp_instance=INSTANCE,
        whatsapp_api_url="https://evolution.example",
        whatsapp_api_key=TOKEN,
        whatsapp_webhook_secret=SECRET,
    )
    body = json.loads((FIXTURES / "evolution" / "2.3.7" / "messages_upsert_text.json").read_text())
    body["data"]["messageTimestamp"] = int(time.time())  # written just now: a fresh message, answered
    for _ in range(3):
        answer = client.post(
            "/webhooks/whatsapp/evolution/",
            data=json.dumps(body),
            content_type="application/json",
            headers={"X-Cecilia-Webhook-Secret": SECRET},
        )
        assert answer.status_code == 200
    # Each copy processed (twice over, as a redelivered task would), and a turn task run for each.
    for _ in range(2):
        for event_id in InboundEvent.objects.values_list("pk", flat=True):
            inbound_event_process(event_id=event_id)
    conversation = Conversation.objects.get()
    for _ in range(3):
        turn_run(conversation_id=conversation.pk, now=later())
    assert Message.objects.filter(direction=MessageDirection.INBOUND).count() == 1
    assert Turn.objects.count() == 1
    assert ai_texts()[1:] == [engine.reply.texts[0]]  # after the first-contact greeting


@pytest.mark.django_db(transaction=True)
def test_two_workers_running_the_turn_at_once_answer_once(clinic, monkeypatch):
    gate = threading.Event()
    engine = FakeEngine(during=lambda: gate.wait(timeout=5))
    monkeypatch.setattr("conversations.engines.engine_for", lambda clinic, **_: engine)
    monkeypatch.setattr(tasks, "turn_enqueue", lambda *args, **kwargs: None)
    message = receive(clinic, "quero marcar uma limpeza")
    results = []

    def work() -> None:
        try:
            results.append(turn_run(conversation_id=message.conversation_id, now=later()))
        finally:
            connection.close()

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    # The engine holds the first worker until the other has found the conversation taken and been told to retry.
    deadline = time.monotonic() + 10
    while not results and time.monotonic() < deadline:
        time.sleep(0.02)
    gate.set()
    for worker in workers:
        worker.join(timeout=10)
    outcomes = sorted((r.outcome or "", r.retry_in is not None) for r in results)
    assert outcomes == [("", True), (TurnOutcome.ANSWERED, False)]
    assert len(engine.calls) == 1
    assert ai_texts()[1:] == [engine.reply.texts[0]]  # after the first-contact greeting


@pytest.mark.django_db
def test_a_message_that_arrives_during_a_turn_gets_the_next_turn(clinic, monkeypatch, enqueued):
    holder: dict[str, Any] = {}
    engine = FakeEngine(during=lambda: holder.setdefault("late", receive(clinic, "ah, e pode ser à tarde?")))
    monkeypatch.setattr("conversations.engines.engine_for", lambda clinic, **_: engine)
    message = receive(clinic, "queria remarcar")

    first = turn_run(conversation_id=message.conversation_id, now=later())
    assert first.outcome == TurnOutcome.ANSWERED and engine.calls == [["queria remarcar"]]
    assert list(awaiting_turn(message.conversation_id)) == [holder["late"]]

    second = turn_run(conversation_id=message.conversation_id, now=later(60))
    assert second.outcome == TurnOutcome.ANSWERED and engine.calls[1] == ["ah, e pode ser à tarde?"]
    assert Turn.objects.count() == 2


@pytest.mark.django_db
def test_the_task_schedules_the_next_turn_for_messages_that_came_meanwhile(clinic, monkeypatch, enqueued):
    engine = FakeEngine(during=lambda: receive(clinic, "e outra coisa"))
    monkeypatch.setattr("conversations.engines.engine_for", lambda clinic, **_: engine)
    message = receive(clinic, "oi")
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - datetime.timedelta(seconds=30))
    tasks.conversation_turn(message.conversation_id)
    assert Turn.objects.count() == 1
    assert enqueued == [(message.conversation_id, 4.0)]


# --- when the assistant keeps quiet ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_own_the_conversation_so_the_assistant_stays_silent(clinic, engine, enqueued):
    receive(clinic, "Bom dia, Maria! Aqui é a Ana.", from_me=True)  # typed on the clinic's phone
    message = receive(clinic, "oi Ana, tudo bem?")
    assert Conversation.objects.get().owner == ConversationOwner.HUMAN

    result = turn_run(conversation_id=message.conversation_id, now=later())
    assert result.outcome == TurnOutcome.STAFF_OWNS
    assert engine.calls == []
    assert not Message.objects.filter(author=MessageAuthor.AI).exists()


@pytest.mark.django_db
def test_staff_taking_over_while_the_engine_thinks_have_the_last_word(clinic, monkeypatch, enqueued):
    def staff_take_over() -> None:
        Conversation.objects.update(owner=ConversationOwner.HUMAN)

    engine = FakeEngine(during=staff_take_over)
    monkeypatch.setattr("conversations.engines.engine_for", lambda clinic, **_: engine)
    message = receive(clinic, "preciso de um atestado")
    result = turn_run(conversation_id=message.conversation_id, now=later())
    assert result.outcome == TurnOutcome.STAFF_OWNS
    assert len(engine.calls) == 1
    assert not Message.objects.filter(author=MessageAuthor.AI).exists()


@pytest.mark.django_db
def test_old_messages_replayed_after_a_reconnect_are_left_to_staff(clinic, engine, enqueued):
    two_hours_ago = timezone.now() - datetime.timedelta(hours=2)
    message = receive(clinic, "alguém aí?", sent_at=two_hours_ago)
    result = turn_run(conversation_id=message.conversation_id, now=later())
    assert result.outcome == TurnOutcome.STALE
    assert engine.calls == []
    conversation = Conversation.objects.get()
    assert (conversation.needs_attention, conversation.attention_reason) == (True, AttentionReason.STALE)


@pytest.mark.django_db
def test_a_fresh_message_after_old_ones_is_answered_with_all_of_them(clinic, engine, enqueued):
    receive(clinic, "alguém aí?", sent_at=timezone.now() - datetime.timedelta(hours=2))
    message = receive(clinic, "oi de novo")
    result = turn_run(conversation_id=message.conversation_id, now=later())
    assert result.outcome == TurnOutcome.ANSWERED
    assert engine.calls == [["alguém aí?", "oi de novo"]]


@pytest.mark.django_db
def test_a_clinic_that_switched_the_assistant_off_gets_no_automatic_answer(clinic, engine, enqueued):
    clinic.ai_enabled = False
    clinic.save()
    message = receive(clinic, "oi")
    assert turn_run(conversation_id=message.conversation_id, now=later()).outcome == TurnOutcome.ASSISTANT_OFF
    assert engine.calls == []
    conversation = Conversation.objects.get()
    assert (conversation.needs_attention, conversation.attention_reason) == (True, AttentionReason.UNANSWERED)
    assert not Message.objects.filter(direction=MessageDirection.OUTBOUND).exists()


@pytest.mark.django_db
def test_an_engine_that_fails_leaves_the_patient_to_staff_not_unseen(clinic, monkeypatch, enqueued, caplog):
    engine = FakeEngine(error=TimeoutError("model took too long"))
    monkeypatch.setattr("conversations.engines.engine_for", lambda clinic, **_: engine)
    message = receive(clinic, "meu telefone é 11 98765-4321")
    result = turn_run(conversation_id=message.conversation_id, now=later())
    assert result.outcome == TurnOutcome.FAILED
    turn = Turn.objects.get()
    assert (turn.error, turn.engine) == ("TimeoutError", "fake")
    conversation = Conversation.objects.get()
    assert (conversation.needs_attention, conversation.attention_reason) == (True, AttentionReason.UNANSWERED)
    assert not Message.objects.filter(direction=MessageDirection.OUTBOUND).exists()
    assert "98765" not in caplog.text


@pytest.mark.django_db
def test_a_handoff_passes_the_conversation_to_staff_with_the_summary(clinic, monkeypatch, enqueued):
    engine = FakeEngine(
        EngineReply(
            texts=["Vou chamar alguém da recepção pra te ajudar, tá? 😊"],
            handoff=True,
            handoff_summary="Quer saber se o plano cobre clareamento.",
            state={"flow": None},
        )
    )
    monkeypatch.setattr("conversations.engines.engine_for", lambda clinic, **_: engine)
    message = receive(clinic, "meu plano cobre clareamento?")
    result = turn_run(conversation_id=message.conversation_id, now=later())
    assert result.outcome == TurnOutcome.HANDED_OFF
    conversation = Conversation.objects.get()
    assert conversation.owner == ConversationOwner.HUMAN
    assert conversation.handoff_summary == "Quer saber se o plano cobre clareamento."
    assert (conversation.needs_attention, conversation.attention_reason) == (True, AttentionReason.HANDOFF)
    assert conversation.state == {"flow": None}
    assert ai_texts()[1:] == ["Vou chamar alguém da recepção pra te ajudar, tá? 😊"]


@pytest.mark.django_db
def test_an_emergency_outranks_a_reason_already_there(clinic, monkeypatch, enqueued):
    engine = FakeEngine(
        EngineReply(texts=["Ligue agora para o SAMU: *192*."], attention_reason=AttentionReason.EMERGENCY)
    )
    monkeypatch.setattr("conversations.engines.engine_for", lambda clinic, **_: engine)
    message = receive(clinic, "dor forte no peito")
    Conversation.objects.update(needs_attention=True, attention_reason=AttentionReason.FAILED_SEND)
    turn_run(conversation_id=message.conversation_id, now=later())
    assert Conversation.objects.get().attention_reason == AttentionReason.EMERGENCY


# --- crashes and lost tasks (Invariant 3) ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_turn_left_running_by_a_dead_worker_is_closed_for_staff_and_never_rerun(clinic, engine, enqueued):
    message = receive(clinic, "quero cancelar")
    started = timezone.now() - datetime.timedelta(minutes=10)
    turn = Turn.objects.create(clinic=clinic, conversation_id=message.conversation_id, started_at=started)
    Message.objects.filter(pk=message.pk).update(turn=turn)
    Conversation.objects.update(turn_lease_until=started + datetime.timedelta(seconds=150))

    assert turns_recover(now=timezone.now()) == 1
    turn.refresh_from_db()
    assert (turn.outcome, turn.error) == (TurnOutcome.FAILED, "WorkerLost")
    assert Conversation.objects.get().attention_reason == AttentionReason.UNANSWERED
    assert turn_run(conversation_id=message.conversation_id, now=later()).turn_id is None
    assert engine.calls == []
    assert turns_recover(now=timezone.now()) == 0


@pytest.mark.django_db
def test_a_turn_still_holding_its_lease_is_not_closed(clinic, enqueued):
    message = receive(clinic, "oi")
    turn = Turn.objects.create(
        clinic=clinic, conversation_id=message.conversation_id, started_at=timezone.now() - datetime.timedelta(hours=1)
    )
    Conversation.objects.update(turn_lease_until=timezone.now() + datetime.timedelta(seconds=60))
    assert turns_recover(now=timezone.now()) == 0
    turn.refresh_from_db()
    assert turn.outcome == TurnOutcome.RUNNING


@pytest.mark.django_db
def test_the_relay_finds_patient_messages_whose_turn_task_was_lost(clinic, enqueued):
    lost = receive(clinic, "oi", phone="5511911112222")
    Message.objects.filter(pk=lost.pk).update(created_at=timezone.now() - datetime.timedelta(minutes=5))
    receive(clinic, "acabei de escrever", phone="5511933334444")  # still within its debounce: its task is pending
    held = receive(clinic, "oi", phone="5511955556666")
    Message.objects.filter(pk=held.pk).update(created_at=timezone.now() - datetime.timedelta(minutes=5))
    Conversation.objects.filter(pk=held.conversation_id).update(
        turn_lease_until=timezone.now() + datetime.timedelta(seconds=60)
    )
    assert turns_due(now=timezone.now()) == [lost.conversation_id]

    assert tasks.turns_relay() == 1
    assert enqueued == [(lost.conversation_id, None)]


# --- guardrails, first contact, hand-back and the holding message --------------------------------------------------


@pytest.mark.django_db
def test_an_emergency_is_answered_with_samu_even_when_staff_own_the_chat_and_flagged_above_all(
    clinic, engine, enqueued
):
    receive(clinic, "Bom dia, Maria! Aqui é a Ana.", from_me=True)
    Conversation.objects.update(needs_attention=True, attention_reason=AttentionReason.UNANSWERED)
    message = receive(clinic, "to com uma dor no peito muito forte e falta de ar")

    result = turn_run(conversation_id=message.conversation_id, now=later())

    assert result.outcome == TurnOutcome.HANDED_OFF
    assert engine.calls == []
    [reply] = ai_texts()
    assert "192" in reply
    conversation = Conversation.objects.get()
    assert (conversation.needs_attention, conversation.attention_reason) == (True, AttentionReason.EMERGENCY)


@pytest.mark.django_db
def test_asking_for_a_person_hands_the_chat_over_and_the_assistant_goes_quiet(clinic, engine, enqueued):
    message = receive(clinic, "quero falar com uma atendente por favor")
    assert turn_run(conversation_id=message.conversation_id, now=later()).outcome == TurnOutcome.HANDED_OFF
    conversation = Conversation.objects.get()
    assert conversation.owner == ConversationOwner.HUMAN
    assert conversation.attention_reason == AttentionReason.ASKED_FOR_HUMAN
    assert conversation.handoff_summary  # what staff read first
    assert len(ai_texts()) == 1 and engine.calls == []

    follow_up = receive(clinic, "oi? alguém?")
    assert turn_run(conversation_id=follow_up.conversation_id, now=later(60)).outcome == TurnOutcome.STAFF_OWNS
    assert len(ai_texts()) == 1


@pytest.mark.django_db
def test_opting_out_stops_automated_messages_and_voltar_brings_them_back(clinic, engine, enqueued):
    message = receive(clinic, "parar")
    turn_run(conversation_id=message.conversation_id, now=later())
    patient = Conversation.objects.get().patient
    patient.refresh_from_db()
    assert patient.opt_out_automated
    assert "voltar" in ai_texts()[-1]

    Conversation.objects.update(owner=ConversationOwner.AI)  # staff gave the chat back
    again = receive(clinic, "Voltar")
    turn_run(conversation_id=again.conversation_id, now=later(60))
    patient.refresh_from_db()
    assert not patient.opt_out_automated
    assert ai_texts()[-1].startswith("Pronto! Você voltou a receber")


@pytest.mark.django_db
def test_a_question_about_medicines_gets_the_fixed_answer_and_a_yes_starts_booking(clinic, enqueued):
    # The real (rule-based) receptionist, as a clinic without a language model has it.
    factories.service(clinic, name="Extração", professionals=[factories.professional(clinic, name="Dra. Ana")])
    message = receive(clinic, "posso tomar dipirona antes da extração?")
    result = turn_run(conversation_id=message.conversation_id, now=later())
    assert result.outcome == TurnOutcome.ANSWERED
    _greeting, fixed = ai_texts()
    assert "orientação médica" in fixed and "horário" in fixed
    assert "dipirona" not in fixed.lower()

    yes = receive(clinic, "sim")
    Message.objects.filter(pk=yes.pk).update(created_at=timezone.now() + datetime.timedelta(seconds=40))
    turn_run(conversation_id=yes.conversation_id, now=later(90))
    # The receptionist took it from there: it looked for a time for the only service (none free: no hours set).
    assert len(ai_texts()) == 3 and "*Extração*" in ai_texts()[-1]


@pytest.mark.django_db
def test_the_privacy_notice_is_sent_once_and_acknowledged_when_the_patient_writes_again(clinic, engine, enqueued):
    from patients.models import PrivacyAcknowledgement

    clinic.privacy_notice = "Tratamos seus dados só para o atendimento."
    clinic.privacy_notice_url = "https://clinica.example/privacidade"
    clinic.save()
    first = receive(clinic, "oi")
    turn_run(conversation_id=first.conversation_id, now=later())
    greeting = ai_texts()[0]
    assert "Tratamos seus dados" in greeting and "https://clinica.example/privacidade" in greeting
    record = PrivacyAcknowledgement.objects.get()
    assert record.acknowledged_at is None

    second = receive(clinic, "queria marcar")
    Message.objects.filter(pk=second.pk).update(created_at=timezone.now() + datetime.timedelta(seconds=40))
    turn_run(conversation_id=second.conversation_id, now=later(90))
    record.refresh_from_db()
    assert record.acknowledged_at is not None
    assert sum("Tratamos seus dados" in text for text in ai_texts()) == 1


@pytest.mark.django_db
def test_the_assistant_answers_again_after_staff_went_quiet_for_the_hand_back_time(clinic, engine, enqueued):
    clinic.assistant_handback_minutes = 60
    clinic.save()
    receive(clinic, "Oi Maria, é a Ana da recepção.", from_me=True)
    Message.objects.update(created_at=timezone.now() - datetime.timedelta(hours=2))
    message = receive(clinic, "oi, queria marcar outra limpeza")

    result = turn_run(conversation_id=message.conversation_id, now=later())

    assert result.outcome == TurnOutcome.ANSWERED
    assert Conversation.objects.get().owner == ConversationOwner.AI


@pytest.mark.django_db
def test_staff_who_answered_recently_keep_the_conversation(clinic, engine, enqueued):
    clinic.assistant_handback_minutes = 60
    clinic.save()
    receive(clinic, "Oi Maria, é a Ana da recepção.", from_me=True)
    message = receive(clinic, "obrigada, Ana!")
    assert turn_run(conversation_id=message.conversation_id, now=later()).outcome == TurnOutcome.STAFF_OWNS


@pytest.mark.django_db
def test_a_slow_turn_tells_the_patient_to_wait_once_and_a_finished_one_does_not(clinic, enqueued):
    from conversations.turns import HOLDING_MESSAGE, turn_holding_send

    message = receive(clinic, "oi")
    turn = Turn.objects.create(clinic=clinic, conversation_id=message.conversation_id)
    assert turn_holding_send(turn_id=turn.pk) is True
    assert turn_holding_send(turn_id=turn.pk) is False  # once
    assert ai_texts() == [HOLDING_MESSAGE]

    turn.outcome, turn.finished_at = TurnOutcome.ANSWERED, timezone.now()
    turn.save()
    other = Turn.objects.create(
        clinic=clinic, conversation_id=message.conversation_id, outcome=TurnOutcome.ANSWERED, finished_at=timezone.now()
    )
    assert turn_holding_send(turn_id=other.pk) is False
    assert ai_texts() == [HOLDING_MESSAGE]


def receive_voice_note(clinic, *, phone: str = "5511987654321") -> Message:
    return message_receive(
        clinic=clinic,
        inbound=InboundMessage(
            provider_message_id=f"VOZ{next(_ids):06d}",
            chat_id=f"{phone}@s.whatsapp.net",
            phone=phone,
            lid=None,
            from_me=False,
            sender_name="Maria",
            kind=Kind.AUDIO,
            text="",
        ),
    )


@pytest.mark.django_db
def test_a_voice_note_whose_media_task_was_lost_holds_the_turn_only_until_the_bound(clinic, engine, enqueued, settings):
    from conversations.voice import ASK_TO_TYPE

    settings.OPENAI_API_KEY = "sk-deployment"  # the clinic transcribes: the turn waits for the transcript
    settings.TURN_VOICE_WAIT_SECONDS = 30
    note = receive_voice_note(clinic)
    receive(clinic, "bom dia")

    waiting = turn_run(conversation_id=note.conversation_id, now=note.created_at + datetime.timedelta(seconds=10))
    assert waiting.turn_id is None and waiting.retry_in == pytest.approx(20, abs=0.5)

    result = turn_run(conversation_id=note.conversation_id, now=note.created_at + datetime.timedelta(seconds=31))
    assert result.outcome == TurnOutcome.ANSWERED
    assert engine.calls == [["bom dia"]]
    assert ai_texts()[1:] == [ASK_TO_TYPE, *engine.reply.texts]
    conversation = Conversation.objects.get(pk=note.conversation_id)
    assert (conversation.needs_attention, conversation.attention_reason) == (True, AttentionReason.UNANSWERED)


@pytest.mark.django_db
@pytest.mark.parametrize("slow", [True, False])
def test_the_one_moment_message_is_scheduled_only_for_an_engine_that_may_be_slow(clinic, monkeypatch, enqueued, slow):
    engine = FakeEngine()
    engine.may_be_slow = slow
    monkeypatch.setattr("conversations.engines.engine_for", lambda clinic, **_: engine)
    scheduled: list[int] = []
    monkeypatch.setattr(tasks, "turn_holding_enqueue", scheduled.append)
    message = receive(clinic, "oi")
    result = turn_run(conversation_id=message.conversation_id, now=later())
    assert scheduled == ([result.turn_id] if slow else [])
