"""Voice notes heard as text, photos and documents left to staff: through the webhook, the media fetch, the
transcription (the real `openai` SDK against a local fake server) and the turn."""

from __future__ import annotations

import base64
import datetime
import json
import time
from pathlib import Path
from typing import Any

import pytest
import respx
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cecilia.models import StaffRole
from conversations import tasks, voice
from conversations.engines import EngineReply, TurnInput
from conversations.engines.llm import LlmEngine
from conversations.llm_budget import llm_tokens_used
from conversations.media import message_media_fetch
from conversations.models import (
    AttentionReason,
    Conversation,
    Message,
    MessageAuthor,
    MessageDirection,
    Turn,
    TurnOutcome,
)
from conversations.services import inbound_event_process, inbound_event_store, message_receive
from conversations.turns import turn_run
from integrations.llm import LlmUnavailable
from integrations.whatsapp.base import InboundMessage, Kind
from tests import factories
from tests.fakes.openai_server import FakeOpenAI

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "evolution"
VOICE_NOTE = "2.2.3/messages_upsert_audio_ptt.json"
PHOTO = "2.3.6/messages_upsert_image.json"
API = "https://evolution.example"
MEDIA_URL = f"{API}/chat/getBase64FromMediaMessage/atendimento-sp"
OGG = b"OggS\x00\x02" + bytes(range(200))  # enough of an Ogg file for a fake server that only counts bytes
PHONE = "5511987654321"
SAID = "Oi, queria marcar uma limpeza pra amanhã de manhã"


class FakeEngine:
    """Answers like an engine would; records the text of each message it was given."""

    name = "fake"

    def __init__(self) -> None:
        self.reply = EngineReply(texts=["Claro! Tenho horário amanhã às 9h. Pode ser?"])
        self.calls: list[list[str]] = []

    def respond(self, turn: TurnInput) -> EngineReply:
        self.calls.append([message.text or f"[{message.kind}]" for message in turn.messages])
        return self.reply


@pytest.fixture
def fake():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def engine(monkeypatch):
    engine = FakeEngine()
    monkeypatch.setattr("conversations.engines.engine_for", lambda clinic, **_: engine)
    return engine


@pytest.fixture
def queued(monkeypatch):
    """What would have reached the broker: turns (conversation id, countdown), media fetches, transcriptions."""
    published: dict[str, list[Any]] = {"turns": [], "fetches": [], "transcriptions": []}
    monkeypatch.setattr(tasks, "turn_enqueue", lambda cid, countdown=None: published["turns"].append((cid, countdown)))
    monkeypatch.setattr("conversations.media.message_media_fetch_enqueue", published["fetches"].append)
    monkeypatch.setattr(voice, "message_transcribe_enqueue", published["transcriptions"].append)
    monkeypatch.setattr(tasks, "turn_holding_enqueue", lambda turn_id: None)
    return published


@pytest.fixture
def clinic(db, settings, tmp_path, fake):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TURN_DEBOUNCE_SECONDS = 4
    settings.TURN_VOICE_WAIT_SECONDS = 30
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_MAX_RETRIES = 0
    settings.OPENAI_TIMEOUT_SECONDS = 2
    settings.OPENAI_TRANSCRIPTION_MODEL = "gpt-transcribe"
    settings.OPENAI_TRANSCRIPTION_TIMEOUT_SECONDS = 0.5
    return factories.clinic(
        name="Clínica Sorriso",
        whatsapp_provider="evolution",
        whatsapp_instance="atendimento-sp",
        whatsapp_api_url=API,
        whatsapp_api_key="3F6A9C1E-7B2D-4E8F-A051-9C3D7E2B4F60",
        whatsapp_webhook_secret="segredo-com-mais-de-trinta-e-dois-caracteres",
        llm_api_key="sk-clinica-sorriso",
        llm_base_url=fake.url,
        llm_model="gpt-4o-mini",
        llm_daily_token_budget=0,  # the turn's engine is the test's own, unless a test says otherwise
    )


def webhook(clinic, fixture: str, django_capture_on_commit_callbacks, *, message_id: str = "") -> Message:
    """The provider's webhook for one message, stored and processed as in production."""
    payload = json.loads((FIXTURES / fixture).read_text())
    payload["data"]["messageTimestamp"] = int(time.time())  # sent just now, not history replayed
    if message_id:
        payload["data"]["key"]["id"] = message_id
    event = inbound_event_store(
        clinic=clinic,
        provider="evolution",
        event_type="messages.upsert",
        dedupe_key=message_id or fixture,
        payload=payload,
    )
    with django_capture_on_commit_callbacks(execute=True):
        inbound_event_process(event_id=event.pk)
    return Message.objects.get(provider_message_id=message_id or payload["data"]["key"]["id"])


def typed(clinic, text: str) -> Message:
    return message_receive(
        clinic=clinic,
        inbound=InboundMessage(
            provider_message_id=f"TXT-{abs(hash(text))}",
            chat_id=f"{PHONE}@s.whatsapp.net",
            phone=PHONE,
            lid=None,
            from_me=False,
            sender_name="Maria",
            kind=Kind.TEXT,
            text=text,
        ),
    )


def fetch(message: Message, django_capture_on_commit_callbacks, *, data: bytes = OGG, mime: str = "audio/ogg") -> None:
    """Evolution hands over the file (getBase64FromMediaMessage)."""
    body = {"mimetype": mime, "base64": base64.b64encode(data).decode(), "fileName": ""}
    with respx.mock() as wire, django_capture_on_commit_callbacks(execute=True):
        wire.post(MEDIA_URL).respond(201, json=body)
        assert message_media_fetch(message_id=message.pk) == "stored"


def transcribe(message: Message, django_capture_on_commit_callbacks) -> str:
    with django_capture_on_commit_callbacks(execute=True):
        return voice.message_transcribe(message_id=message.pk)


def at(message: Message, seconds: float) -> datetime.datetime:
    return message.created_at + datetime.timedelta(seconds=seconds)


def ai_texts() -> list[str]:
    return list(Message.objects.filter(author=MessageAuthor.AI).order_by("id").values_list("text", flat=True))


def attention(message: Message) -> tuple[bool, str]:
    conversation = Conversation.objects.get(pk=message.conversation_id)
    return conversation.needs_attention, conversation.attention_reason


# --- heard ----------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_voice_note_is_fetched_transcribed_and_answered_by_the_llm_from_its_transcript(
    clinic, fake, queued, monkeypatch, django_capture_on_commit_callbacks
):
    clinic.llm_daily_token_budget = 50_000
    clinic.save()
    monkeypatch.setattr("conversations.engines.engine_for", lambda clinic, **_: LlmEngine())
    note = webhook(clinic, VOICE_NOTE, django_capture_on_commit_callbacks)
    assert (note.kind, note.text) == ("audio", "")
    assert queued["fetches"] == [note.pk]

    # The chat went quiet, but the voice note is not heard yet: the turn waits for it (a bounded wait).
    waiting = turn_run(conversation_id=note.conversation_id, now=at(note, 5))
    assert waiting.turn_id is None and 0 < waiting.retry_in <= 25
    assert not Turn.objects.exists()

    fetch(note, django_capture_on_commit_callbacks)
    assert queued["transcriptions"] == [note.pk]
    fake.transcribe(SAID, input_tokens=60)
    assert transcribe(note, django_capture_on_commit_callbacks) == "transcribed"
    note.refresh_from_db()
    assert note.text == SAID
    assert queued["turns"][-1] == (note.conversation_id, 0), "the waiting turn runs as soon as the transcript lands"
    sent = fake.transcription_requests[0].body
    assert sent["model"] == "gpt-transcribe" and sent["language"] == "pt"
    assert sent["file"]["filename"].endswith(".ogg") and sent["file"]["size"] == len(OGG)
    assert fake.transcription_requests[0].authorization == "Bearer sk-clinica-sorriso"

    fake.reply("Claro, Maria! Amanhã de manhã tenho 9h ou 10h30. Qual prefere?")
    result = turn_run(conversation_id=note.conversation_id, now=at(note, 8))
    assert result.outcome == TurnOutcome.ANSWERED
    chat = [request for request in fake.requests if request.path == "/v1/chat/completions"]
    assert len(chat) == 1 and SAID in chat[0].raw, "the model reads what the patient said"
    assert ai_texts()[-1] == "Claro, Maria! Amanhã de manhã tenho 9h ou 10h30. Qual prefere?"
    assert voice.ASK_TO_TYPE not in ai_texts()
    assert attention(note) == (False, "")
    assert llm_tokens_used(clinic=clinic, day=result_day(clinic)) >= 60, "the transcription counts in the usage"


def result_day(clinic) -> datetime.date:
    return timezone.localdate(timezone.now(), timezone=clinic.tz)


@pytest.mark.django_db
def test_a_burst_of_a_voice_note_and_a_text_waits_for_the_transcript_and_is_answered_once(
    clinic, fake, engine, queued, django_capture_on_commit_callbacks
):
    note = webhook(clinic, VOICE_NOTE, django_capture_on_commit_callbacks)
    typed(clinic, "e quanto custa?")
    assert turn_run(conversation_id=note.conversation_id, now=at(note, 6)).retry_in is not None
    assert engine.calls == []

    fetch(note, django_capture_on_commit_callbacks)
    fake.transcribe(SAID)
    transcribe(note, django_capture_on_commit_callbacks)
    result = turn_run(conversation_id=note.conversation_id, now=at(note, 9))

    assert result.outcome == TurnOutcome.ANSWERED
    assert engine.calls == [[SAID, "e quanto custa?"]]
    assert ai_texts()[1:] == engine.reply.texts  # after the first contact's greeting, one answer
    assert set(Message.objects.filter(direction=MessageDirection.INBOUND).values_list("turn", flat=True)) == {
        result.turn_id
    }
    assert turn_run(conversation_id=note.conversation_id, now=at(note, 60)).turn_id is None
    assert Turn.objects.count() == 1


@pytest.mark.django_db
def test_an_emergency_said_in_a_voice_note_is_caught_like_a_typed_one(
    clinic, fake, engine, queued, django_capture_on_commit_callbacks
):
    note = webhook(clinic, VOICE_NOTE, django_capture_on_commit_callbacks)
    fetch(note, django_capture_on_commit_callbacks)
    fake.transcribe("tô com uma dor no peito muito forte e falta de ar")
    transcribe(note, django_capture_on_commit_callbacks)

    result = turn_run(conversation_id=note.conversation_id, now=at(note, 6))

    turn = Turn.objects.get(pk=result.turn_id)
    assert turn.engine == "guardrails" and engine.calls == []
    assert "192" in ai_texts()[-1]
    assert attention(note) == (True, AttentionReason.EMERGENCY)


# --- not heard -----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("why", ["switched_off", "no_model_key"])
def test_without_transcription_the_patient_is_asked_once_to_type_and_staff_are_flagged(
    why, clinic, fake, engine, queued, django_capture_on_commit_callbacks
):
    if why == "switched_off":
        clinic.transcribe_voice_notes = False
    else:
        clinic.llm_api_key = ""  # and the deployment has none (OPENAI_API_KEY = "")
    clinic.save()
    first = webhook(clinic, VOICE_NOTE, django_capture_on_commit_callbacks)
    webhook(clinic, VOICE_NOTE, django_capture_on_commit_callbacks, message_id="3A8C0E2F4A6B8C0D2E50")
    fetch(first, django_capture_on_commit_callbacks)
    assert queued["transcriptions"] == [], "nothing to transcribe with"

    # No waiting: nothing is coming.
    result = turn_run(conversation_id=first.conversation_id, now=at(first, 5))

    assert result.outcome == TurnOutcome.ANSWERED
    assert ai_texts().count(voice.ASK_TO_TYPE) == 1, "once per burst, not per voice note"
    assert engine.calls == [], "the engine is not asked about voice notes it cannot hear"
    assert attention(first) == (True, AttentionReason.UNANSWERED)
    assert fake.requests == []


@pytest.mark.django_db
def test_text_next_to_an_unheard_voice_note_is_still_answered_by_the_engine(
    clinic, engine, queued, django_capture_on_commit_callbacks
):
    clinic.transcribe_voice_notes = False
    clinic.save()
    note = webhook(clinic, VOICE_NOTE, django_capture_on_commit_callbacks)
    typed(clinic, "queria marcar uma limpeza")

    turn_run(conversation_id=note.conversation_id, now=at(note, 5))

    assert engine.calls == [["queria marcar uma limpeza"]], "the engine reads the text, never an '[Áudio]' to guess"
    assert ai_texts()[1:] == [voice.ASK_TO_TYPE, *engine.reply.texts]
    assert attention(note) == (True, AttentionReason.UNANSWERED)


@pytest.mark.django_db
def test_a_transcription_server_failing_is_retried_then_the_patient_is_asked_to_type_at_once(
    clinic, fake, engine, queued, django_capture_on_commit_callbacks
):
    note = webhook(clinic, VOICE_NOTE, django_capture_on_commit_callbacks)
    fetch(note, django_capture_on_commit_callbacks)
    fake.fail_transcription(503, times=voice.MAX_ATTEMPTS + 1)

    with django_capture_on_commit_callbacks(execute=True):
        outcome = voice.message_transcribe_task.apply(args=(note.pk,)).get()  # eager: its retries run in place

    assert outcome == "failed"
    assert len(fake.transcription_requests) == voice.MAX_ATTEMPTS + 1
    note.refresh_from_db()
    assert note.error_code == voice.TRANSCRIPTION_FAILED and note.error.startswith("Áudio não transcrito")
    assert queued["turns"][-1] == (note.conversation_id, 0), "no need to wait out the bound"
    result = turn_run(conversation_id=note.conversation_id, now=at(note, 6))
    assert result.outcome == TurnOutcome.ANSWERED
    assert ai_texts()[-1] == voice.ASK_TO_TYPE
    assert attention(note) == (True, AttentionReason.UNANSWERED)


@pytest.mark.django_db
def test_a_transcription_that_hangs_holds_the_turn_only_until_the_bound_and_a_late_transcript_is_for_staff(
    clinic, fake, engine, queued, django_capture_on_commit_callbacks
):
    note = webhook(clinic, VOICE_NOTE, django_capture_on_commit_callbacks)
    fetch(note, django_capture_on_commit_callbacks)
    fake.stall_transcription(2)
    with pytest.raises(LlmUnavailable):  # timed out after OPENAI_TRANSCRIPTION_TIMEOUT_SECONDS: retried later
        voice.message_transcribe(message_id=note.pk)

    still = turn_run(conversation_id=note.conversation_id, now=at(note, 20))
    assert still.turn_id is None and still.retry_in == pytest.approx(10, abs=0.01)
    result = turn_run(conversation_id=note.conversation_id, now=at(note, 31))
    assert result.outcome == TurnOutcome.ANSWERED
    assert ai_texts()[-1] == voice.ASK_TO_TYPE
    assert attention(note) == (True, AttentionReason.UNANSWERED)

    # The retry succeeds later: staff can read what was said; the patient gets no second answer.
    fake.transcribe(SAID)
    queued["turns"].clear()
    assert transcribe(note, django_capture_on_commit_callbacks) == "transcribed"
    note.refresh_from_db()
    assert note.text == SAID and note.turn_id == result.turn_id
    assert queued["turns"] == []
    assert turn_run(conversation_id=note.conversation_id, now=at(note, 60)).turn_id is None
    assert engine.calls == []


@pytest.mark.django_db
def test_an_emergency_in_a_transcript_that_comes_too_late_is_still_answered_with_samu(
    clinic, fake, engine, queued, django_capture_on_commit_callbacks
):
    note = webhook(clinic, VOICE_NOTE, django_capture_on_commit_callbacks)
    fetch(note, django_capture_on_commit_callbacks)
    fake.stall_transcription(2)
    with pytest.raises(LlmUnavailable):
        voice.message_transcribe(message_id=note.pk)
    assert turn_run(conversation_id=note.conversation_id, now=at(note, 31)).outcome == TurnOutcome.ANSWERED
    assert ai_texts()[-1] == voice.ASK_TO_TYPE

    fake.transcribe("meu pai desmaiou e não acorda")
    assert transcribe(note, django_capture_on_commit_callbacks) == "transcribed"

    assert "192" in ai_texts()[-1]
    assert attention(note) == (True, AttentionReason.EMERGENCY)
    assert engine.calls == []


@pytest.mark.django_db
def test_a_voice_note_whose_file_cannot_be_fetched_is_not_waited_for(
    clinic, fake, engine, queued, settings, django_capture_on_commit_callbacks
):
    note = webhook(clinic, VOICE_NOTE, django_capture_on_commit_callbacks)
    settings.WHATSAPP_MEDIA_MAX_BYTES = 10  # Evolution's answer is too large: a permanent failure
    with respx.mock(assert_all_called=False) as wire, django_capture_on_commit_callbacks(execute=True):
        wire.post(MEDIA_URL).respond(201, json={"mimetype": "audio/ogg", "base64": base64.b64encode(OGG).decode()})
        assert message_media_fetch(message_id=note.pk) == "failed"

    note.refresh_from_db()
    assert note.error_code == voice.MEDIA_NOT_FETCHED and note.error.startswith("Mídia não baixada")
    result = turn_run(conversation_id=note.conversation_id, now=at(note, 5))
    assert result.outcome == TurnOutcome.ANSWERED and ai_texts()[-1] == voice.ASK_TO_TYPE
    assert fake.requests == []


# --- photos and documents --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_photo_alone_goes_to_staff_and_is_never_interpreted(
    clinic, fake, engine, queued, django_capture_on_commit_callbacks
):
    photo = webhook(clinic, PHOTO, django_capture_on_commit_callbacks)
    assert photo.kind == "image" and queued["fetches"] == [photo.pk]
    assert photo.text == "Pedido médico do exame"  # its caption: about the file, for staff too

    result = turn_run(conversation_id=photo.conversation_id, now=at(photo, 5))

    assert result.outcome == TurnOutcome.ANSWERED
    assert Turn.objects.get(pk=result.turn_id).engine == "media"
    assert engine.calls == [] and fake.requests == [], "no engine and no model looks at it"
    assert ai_texts()[-1] == voice.media_received_text(["image"])
    assert ai_texts()[-1].startswith("Recebi sua foto")
    assert attention(photo) == (True, AttentionReason.UNANSWERED)
    assert queued["transcriptions"] == []


@pytest.mark.django_db
def test_a_photo_with_a_question_gets_the_engine_for_the_text_and_staff_for_the_photo(
    clinic, engine, queued, django_capture_on_commit_callbacks
):
    photo = webhook(clinic, PHOTO, django_capture_on_commit_callbacks)
    typed(clinic, "vocês atendem esse convênio?")

    turn_run(conversation_id=photo.conversation_id, now=at(photo, 5))

    [[placeholder, question]] = engine.calls
    assert placeholder in ("[image]", photo.text) and question == "vocês atendem esse convênio?"
    assert ai_texts()[1:] == [voice.media_received_text(["image"]), *engine.reply.texts]
    assert attention(photo) == (True, AttentionReason.UNANSWERED)


def test_what_arrived_is_named_and_nothing_about_what_it_shows():
    assert voice.media_received_text(["document"]).startswith("Recebi seu documento")
    assert voice.media_received_text(["video"]).startswith("Recebi seu vídeo")
    assert voice.media_received_text(["image", "document"]).startswith("Recebi seus arquivos")
    assert "equipe" in voice.media_received_text(["image"])


# --- staff ---------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_read_the_transcript_on_the_message_and_the_conversation_in_the_admin(
    clinic, fake, engine, queued, django_capture_on_commit_callbacks
):
    note = webhook(clinic, VOICE_NOTE, django_capture_on_commit_callbacks)
    fetch(note, django_capture_on_commit_callbacks)
    fake.transcribe(SAID)
    transcribe(note, django_capture_on_commit_callbacks)
    client = Client()
    client.force_login(factories.staff_user(clinic, role=StaffRole.RECEPTIONIST, username="recepcao"))

    message_page = client.get(reverse("admin:conversations_message_change", args=[note.pk]))
    conversation_page = client.get(reverse("admin:conversations_conversation_change", args=[note.conversation_id]))

    for page in (message_page, conversation_page):
        assert page.status_code == 200
        html = page.content.decode()
        assert SAID in html
        assert str(Message.objects.get(pk=note.pk).get_kind_display()) in html  # shown as an audio's text
