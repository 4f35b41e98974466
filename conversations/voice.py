"""Patients' voice notes, heard as text; their photos and documents, left to staff.

A voice note (`Message.kind == "audio"`) is fetched like any media (conversations.media), then transcribed by the
clinic's OpenAI-compatible server when the clinic transcribes (`Clinic.transcribe_voice_notes` and a model key, the
clinic's or the deployment's). Where the transcript lives: **`Message.text`**. A WhatsApp voice note has no caption,
so an audio message's text is always its transcript; the engines and the guardrails read it as they read any text
(an emergency said out loud is caught like a typed one), and staff see it in the admin next to the kind "Audio".
A voice note that will never be heard is marked with `Message.error_code` (one of `NOT_HEARD_CODES`) and, for staff,
`Message.error` says why.

The turn (conversations.turns) waits for a voice note still on its way (`voice_wait_seconds`), at most
TURN_VOICE_WAIT_SECONDS after it arrived; when the transcript lands, or the voice note fails for good, the turn is
enqueued at once. What the turn then does with a burst's media (`burst_media`):

* a voice note not heard (transcription off, no model, failed, or still pending past the bound) → one request to type
  per burst (`ASK_TO_TYPE`) and the conversation flagged for staff, who can listen to it; the engine never sees it;
* a photo, video or document → never interpreted (an exam or a prescription is for staff, never for the assistant):
  one "our team will look at it" per burst and a flag. The engine is not asked at all when the burst has nothing
  else (a caption does not count: it speaks about its file); when the patient also typed something, the engine
  answers that and sees the file beside it as its caption or a placeholder ("[Imagem]");
* stickers and other expressions (kind "other"), locations, contacts: as before, for the engine.

The text of everything else in the burst is still answered by the engine in the same turn.
"""

from __future__ import annotations

import datetime
import logging
import mimetypes
import random
from dataclasses import dataclass

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cecilia.models import Clinic
from conversations.models import Message, MessageDirection, MessageKind
from integrations.llm import LlmClient, LlmConfig, LlmRateLimited, LlmRefused, LlmUnavailable

logger = logging.getLogger(__name__)

ASK_TO_TYPE = "Ainda não consigo ouvir áudios por aqui 😊 Pode me escrever em texto?"

# Why a voice note will never be heard (Message.error_code); the turn stops waiting for it.
MEDIA_NOT_FETCHED = "media_not_fetched"
TRANSCRIPTION_FAILED = "transcription_failed"
NOT_HEARD_CODES = (MEDIA_NOT_FETCHED, TRANSCRIPTION_FAILED)

# Kinds whose content only staff may read: a photo of an exam, a prescription, a referral letter.
STAFF_MEDIA_KINDS = (MessageKind.IMAGE, MessageKind.VIDEO, MessageKind.DOCUMENT)

MAX_ATTEMPTS = 4

# OpenAI tells the audio format from the file name; WhatsApp's "audio/ogg" would become ".oga", which it refuses.
_AUDIO_EXTENSIONS = {
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mp4": "m4a",
    "audio/m4a": "m4a",
    "audio/x-m4a": "m4a",
    "audio/aac": "m4a",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/webm": "webm",
    "audio/flac": "flac",
}


# --- settings --------------------------------------------------------------------------------------------------------
def _wait_bound() -> float:
    return float(settings.TURN_VOICE_WAIT_SECONDS)


def _transcription_model() -> str:
    return settings.OPENAI_TRANSCRIPTION_MODEL or "gpt-transcribe"


def _transcription_timeout() -> float:
    return float(settings.OPENAI_TRANSCRIPTION_TIMEOUT_SECONDS)


# --- what the turn asks ----------------------------------------------------------------------------------------------
def transcription_config(clinic: Clinic) -> LlmConfig | None:
    """The clinic's model server for transcription, or None when its voice notes are not transcribed."""
    from conversations.engines.llm import llm_config

    if not clinic.transcribe_voice_notes:
        return None
    return llm_config(clinic)


def is_voice_note(message: Message) -> bool:
    return message.kind == MessageKind.AUDIO and message.direction == MessageDirection.INBOUND


def is_heard(message: Message) -> bool:
    """A voice note whose transcript is in its text."""
    return bool(message.text.strip())


def voice_wait_seconds(*, clinic: Clinic, messages: list[Message], now: datetime.datetime) -> float | None:
    """How long the turn should still wait for these messages' voice notes to be heard; None: do not wait.

    Only for a clinic that transcribes, only for voice notes neither heard nor failed, and never past
    TURN_VOICE_WAIT_SECONDS after the voice note arrived (after that the turn treats it as not heard).
    """
    bound = _wait_bound()
    waits = [
        bound - (now - message.created_at).total_seconds()
        for message in messages
        if is_voice_note(message) and not is_heard(message) and message.error_code not in NOT_HEARD_CODES
    ]
    waits = [seconds for seconds in waits if seconds > 0]
    if not waits or transcription_config(clinic) is None:
        return None
    return max(waits)


@dataclass(frozen=True)
class BurstMedia:
    for_engine: list[Message]  # what the engine reads: the burst without its unheard voice notes
    notes: list[str]  # the turn's own replies about the media, before the engine's
    engine_needed: bool  # False: the burst has nothing the engine could answer (only media for staff, unheard audio)

    @property
    def needs_staff(self) -> bool:
        return bool(self.notes)


def burst_media(messages: list[Message]) -> BurstMedia:
    """What the turn does with a burst's voice notes, photos and documents (the rules in this module's docstring)."""
    unheard = [message for message in messages if is_voice_note(message) and not is_heard(message)]
    for_engine = [message for message in messages if message not in unheard]
    staff_media = [message for message in for_engine if message.kind in STAFF_MEDIA_KINDS]
    notes = []
    if unheard:
        notes.append(ASK_TO_TYPE)
    if staff_media:
        notes.append(media_received_text([message.kind for message in staff_media]))
    # A caption ("pedido médico do exame") is about its file, which is for staff: a photo never summons the engine.
    readable = [message for message in for_engine if message.kind not in STAFF_MEDIA_KINDS]
    return BurstMedia(for_engine=for_engine, notes=notes, engine_needed=bool(readable) or not notes)


def media_received_text(kinds: list[str]) -> str:
    """ "Got your photo; our team will look" in pt-BR, naming what arrived. Never a word about what it shows."""
    if len(kinds) > 1:
        what = "Recebi seus arquivos"
    else:
        what = {MessageKind.IMAGE: "Recebi sua foto", MessageKind.VIDEO: "Recebi seu vídeo"}.get(
            kinds[0], "Recebi seu documento"
        )
    return f"{what} 📎 Vou deixar com a nossa equipe, que vai dar uma olhada e te responde por aqui."


# --- transcription ---------------------------------------------------------------------------------------------------
def message_transcribe(*, message_id: int) -> str:
    """Transcribe one stored voice note into its text. Returns "transcribed", "skipped" or "failed"; raises
    LlmUnavailable or LlmRateLimited when a later attempt may work (the task retries)."""
    message = Message.objects.select_related("clinic").filter(pk=message_id).first()
    if message is None or not is_voice_note(message) or is_heard(message) or message.error_code or not message.media:
        return "skipped"
    config = transcription_config(message.clinic)
    if config is None:
        return "skipped"  # switched off since the voice note arrived: the turn asks the patient to type
    with message.media.open("rb") as file:
        audio = file.read()
    try:
        result = LlmClient(config).transcribe(
            audio,
            file_name=_upload_name(message),
            mime_type=message.media_mime_type,
            model=_transcription_model(),
            timeout_seconds=_transcription_timeout(),
        )
    except LlmRefused as exc:
        voice_not_heard(message_id=message.pk, code=TRANSCRIPTION_FAILED, why=f"recusado pelo servidor ({exc.status})")
        return "failed"
    if not result.text:
        voice_not_heard(message_id=message.pk, code=TRANSCRIPTION_FAILED, why="nenhuma fala reconhecida")
        return "failed"
    with transaction.atomic():
        stored = Message.objects.filter(pk=message.pk, text="", error_code="").update(text=result.text)
        if stored:
            _turn_now(message)
            if message.turn_id is not None:
                # Its turn already ran without it (past TURN_VOICE_WAIT_SECONDS): the guardrails still hear it.
                from conversations.turns import late_message_guard

                late_message_guard(message_id=message.pk)
    if stored:
        _usage_add(message.clinic, input_tokens=result.input_tokens, output_tokens=result.output_tokens)
    logger.info("Voice note %s transcribed (%s)", message.pk, "stored" if stored else "already there")
    return "transcribed" if stored else "skipped"


def voice_not_heard(*, message_id: int, code: str, why: str) -> None:
    """Mark a voice note as never to be heard (staff read why) and let its turn go on now."""
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(pk=message_id).first()
        if message is None or not is_voice_note(message) or is_heard(message):
            return
        message.error_code = code
        prefix = "Mídia não baixada" if code == MEDIA_NOT_FETCHED else "Áudio não transcrito"
        message.error = message.error or f"{prefix}: {why}"[:2000]
        message.save(update_fields=["error_code", "error"])
        _turn_now(message)
    logger.info("Voice note %s will not be transcribed (%s)", message_id, code)


def _turn_now(message: Message) -> None:
    """The turn waiting for this voice note runs as soon as this commits (not at the end of its wait)."""
    from conversations import tasks

    if message.turn_id is None:
        conversation_id = message.conversation_id
        transaction.on_commit(lambda: tasks.turn_enqueue(conversation_id, countdown=0))


def _upload_name(message: Message) -> str:
    mime = message.media_mime_type.split(";")[0].strip().lower()
    extension = _AUDIO_EXTENSIONS.get(mime) or (mimetypes.guess_extension(mime) or ".ogg").lstrip(".")
    return f"voice-{message.pk}.{extension}"


def _usage_add(clinic: Clinic, *, input_tokens: int, output_tokens: int) -> None:
    """The call (and its tokens, for models billed by token) counts in the clinic's daily usage: the same bill.

    Transcription is not refused when the budget is spent: a voice note nobody hears is worse than a small overrun.
    """
    from conversations.llm_budget import llm_usage_add

    day = timezone.localdate(timezone.now(), timezone=clinic.tz)
    try:
        llm_usage_add(clinic=clinic, day=day, prompt_tokens=input_tokens, completion_tokens=output_tokens)
    except Exception:  # accounting must never lose a transcript already stored
        logger.warning("Transcription usage of clinic %s not counted", clinic.pk, exc_info=True)


@shared_task(bind=True, acks_late=True, max_retries=MAX_ATTEMPTS, soft_time_limit=60, time_limit=90)
def message_transcribe_task(self, message_id: int) -> str:
    try:
        return message_transcribe(message_id=message_id)
    except (LlmUnavailable, LlmRateLimited) as exc:
        if self.request.retries >= MAX_ATTEMPTS:
            voice_not_heard(message_id=message_id, code=TRANSCRIPTION_FAILED, why=str(exc))
            return "failed"
        # 5 s, 10 s, 20 s… with jitter: a hiccup at the server does not lose the voice note (staff still read it late).
        delay = 5 * 2**self.request.retries * (0.8 + 0.4 * random.random())  # noqa: S311
        raise self.retry(exc=exc, countdown=delay) from exc


def message_transcribe_enqueue(message_id: int) -> None:
    try:
        message_transcribe_task.delay(message_id)
    except Exception:  # no broker: the turn stops waiting after TURN_VOICE_WAIT_SECONDS and asks the patient to type
        logger.warning("Transcription of message %s not enqueued", message_id, exc_info=True)
