"""A patient's photo or voice note: the text path never waits for it, and its bytes end up in our storage."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
import respx

from conversations.media import message_media_fetch
from conversations.models import Message
from conversations.services import inbound_event_process, inbound_event_store
from integrations.whatsapp.base import ProviderError
from tests import factories

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "evolution"
API = "https://evolution.example"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@pytest.fixture
def clinic(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return factories.clinic(
        whatsapp_provider="evolution",
        whatsapp_instance="atendimento-sp",
        whatsapp_api_url=API,
        whatsapp_api_key="3F6A9C1E-7B2D-4E8F-A051-9C3D7E2B4F60",
        whatsapp_webhook_secret="segredo-com-mais-de-trinta-e-dois-caracteres",
    )


def receive(clinic, fixture: str, django_capture_on_commit_callbacks) -> Message:
    payload = json.loads((FIXTURES / fixture).read_text())
    event = inbound_event_store(
        clinic=clinic, provider="evolution", event_type="messages.upsert", dedupe_key=fixture, payload=payload
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        inbound_event_process(event_id=event.pk)
    message = Message.objects.get()
    assert not message.media, "the message is recorded before any media is fetched"
    assert len(callbacks) == 3, "the live event, the turn and the media fetch are sent after commit"
    return message


@pytest.mark.django_db
def test_a_photo_is_recorded_at_once_and_its_bytes_fetched_from_evolution_afterwards(
    clinic, django_capture_on_commit_callbacks
):
    message = receive(clinic, "2.3.6/messages_upsert_image.json", django_capture_on_commit_callbacks)
    assert message.kind == "image"
    with respx.mock(assert_all_called=True) as wire:
        route = wire.post(f"{API}/chat/getBase64FromMediaMessage/atendimento-sp").respond(
            201,
            json={
                "mediaType": "imageMessage",
                "fileName": "foto.png",
                "mimetype": "image/png",
                "base64": base64.b64encode(PNG).decode(),
                "size": {"fileLength": len(PNG)},
                "buffer": None,
            },
        )
        assert message_media_fetch(message_id=message.pk) == "stored"
    sent = json.loads(route.calls.last.request.content)
    assert sent["message"]["key"]["id"] == message.provider_message_id
    message.refresh_from_db()
    assert message.media.read() == PNG
    assert message.media_mime_type == "image/png"
    assert message_media_fetch(message_id=message.pk) == "skipped"  # a rerun does nothing


@pytest.mark.django_db
def test_media_already_in_the_webhook_is_kept_without_asking_evolution(clinic, django_capture_on_commit_callbacks):
    message = receive(clinic, "2.3.6/messages_upsert_image_base64.json", django_capture_on_commit_callbacks)
    with respx.mock(assert_all_mocked=True):  # any HTTP call would fail the test
        assert message_media_fetch(message_id=message.pk) == "stored"
    message.refresh_from_db()
    assert message.media.size > 0


@pytest.mark.django_db
def test_a_provider_hiccup_is_retried_and_a_file_too_large_is_noted_for_staff(
    clinic, settings, django_capture_on_commit_callbacks
):
    message = receive(clinic, "2.3.6/messages_upsert_image.json", django_capture_on_commit_callbacks)
    url = f"{API}/chat/getBase64FromMediaMessage/atendimento-sp"
    with respx.mock() as wire:
        wire.post(url).mock(side_effect=httpx.ConnectError("down"))
        with pytest.raises(ProviderError) as excinfo:
            message_media_fetch(message_id=message.pk)
    assert not excinfo.value.permanent, excinfo.value.code  # the task retries it with backoff

    settings.WHATSAPP_MEDIA_MAX_BYTES = 10
    # The webhook already says how big the file is: too large is refused without downloading it.
    with respx.mock(assert_all_called=False) as wire:
        wire.post(url).respond(
            201, json={"mimetype": "image/png", "fileName": "foto.png", "base64": base64.b64encode(PNG).decode()}
        )
        assert message_media_fetch(message_id=message.pk) == "failed"
    message.refresh_from_db()
    assert not message.media
    assert message.error.startswith("Mídia não baixada")


@pytest.mark.django_db
@pytest.mark.parametrize("transcribes", [True, False])
def test_a_stored_voice_note_goes_on_to_transcription_only_when_the_clinic_transcribes(
    clinic, settings, monkeypatch, transcribes, django_capture_on_commit_callbacks
):
    settings.OPENAI_API_KEY = "sk-deployment"
    clinic.transcribe_voice_notes = transcribes
    clinic.save()
    transcriptions: list[int] = []
    monkeypatch.setattr("conversations.voice.message_transcribe_enqueue", transcriptions.append)
    message = receive(clinic, "2.2.3/messages_upsert_audio_ptt.json", django_capture_on_commit_callbacks)
    assert message.kind == "audio"
    with respx.mock() as wire, django_capture_on_commit_callbacks(execute=True):
        wire.post(f"{API}/chat/getBase64FromMediaMessage/atendimento-sp").respond(
            201, json={"mimetype": "audio/ogg; codecs=opus", "base64": base64.b64encode(b"OggS-voz").decode()}
        )
        assert message_media_fetch(message_id=message.pk) == "stored"
    assert transcriptions == ([message.pk] if transcribes else [])


@pytest.mark.django_db
def test_a_photo_is_never_sent_to_transcription(clinic, settings, monkeypatch, django_capture_on_commit_callbacks):
    settings.OPENAI_API_KEY = "sk-deployment"
    transcriptions: list[int] = []
    monkeypatch.setattr("conversations.voice.message_transcribe_enqueue", transcriptions.append)
    message = receive(clinic, "2.3.6/messages_upsert_image_base64.json", django_capture_on_commit_callbacks)
    with respx.mock(assert_all_mocked=True), django_capture_on_commit_callbacks(execute=True):
        assert message_media_fetch(message_id=message.pk) == "stored"
    assert transcriptions == []
