"""Media of inbound messages (voice notes, photos, documents): fetched from the provider into Django's storage.

A patient's voice note goes on to be transcribed once stored (conversations.voice); one that can never be fetched is
marked not heard at once, so the turn waiting for it asks the patient to type instead of waiting out its bound.
"""

from __future__ import annotations

import logging
import mimetypes
import random

from celery import shared_task
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction

from conversations import voice
from conversations.models import Message
from integrations.whatsapp.base import InboundMessage, MediaRef, ProviderError

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6


def _media_ref(message: Message) -> MediaRef | None:
    """Find the message's media in the webhook it came from (the adapter's own description, opaque to us)."""
    from conversations.channel import channel_provider

    if message.inbound_event is None:
        return None
    for item in channel_provider(message.clinic).parse_webhook(message.inbound_event.payload):
        if isinstance(item, InboundMessage) and item.provider_message_id == message.provider_message_id:
            return item.media
    return None


def message_media_fetch(*, message_id: int) -> str:
    """Download and store one message's media. Returns "stored", "skipped" or "failed"; raises ProviderError when a
    temporary failure should be retried."""
    from conversations.channel import channel_provider

    message = Message.objects.select_related("clinic", "inbound_event").filter(pk=message_id).first()
    if message is None or message.media:
        return "skipped"
    ref = _media_ref(message)
    if ref is None:
        voice.voice_not_heard(message_id=message.pk, code=voice.MEDIA_NOT_FETCHED, why="o webhook não a descreve")
        return "skipped"
    try:
        content = channel_provider(message.clinic).download_media(ref, max_bytes=settings.WHATSAPP_MEDIA_MAX_BYTES)
    except ProviderError as exc:
        if not exc.permanent:
            raise
        media_fetch_failed(message_id=message.pk, why=exc.staff_message)
        return "failed"
    name = content.file_name or f"{message.provider_message_id}{mimetypes.guess_extension(content.mime_type) or ''}"
    with transaction.atomic():
        locked = Message.objects.select_for_update().get(pk=message.pk)
        if locked.media:
            return "skipped"  # a concurrent run stored it first
        locked.media.save(name[-100:], ContentFile(content.data), save=False)
        locked.media_mime_type = (content.mime_type or ref.mime_type)[:100]
        locked.error = ""
        locked.save(update_fields=["media", "media_mime_type", "error"])
        if voice.is_voice_note(locked) and voice.transcription_config(message.clinic) is not None:
            transaction.on_commit(lambda: voice.message_transcribe_enqueue(message.pk))
    return "stored"


def media_fetch_failed(*, message_id: int, why: str) -> None:
    """The media will not be fetched: staff read why; a voice note's turn stops waiting for it."""
    Message.objects.filter(pk=message_id).update(error=f"Mídia não baixada: {why}"[:2000])
    voice.voice_not_heard(message_id=message_id, code=voice.MEDIA_NOT_FETCHED, why=why)


@shared_task(bind=True, acks_late=True, max_retries=MAX_ATTEMPTS)
def message_media_fetch_task(self, message_id: int) -> str:
    try:
        return message_media_fetch(message_id=message_id)
    except ProviderError as exc:
        # Exponential backoff with jitter: 10 s, 20 s, 40 s… so a provider hiccup does not lose a voice note.
        delay = min(600, 10 * 2**self.request.retries) * (0.8 + 0.4 * random.random())  # noqa: S311
        if self.request.retries >= MAX_ATTEMPTS:
            media_fetch_failed(message_id=message_id, why=exc.staff_message)
            return "failed"
        raise self.retry(exc=exc, countdown=delay) from exc


def message_media_fetch_enqueue(message_id: int) -> None:
    try:
        message_media_fetch_task.delay(message_id)
    except Exception:  # the broker is down: the message text is safe; staff can still see the media is missing
        logger.warning("Media fetch for message %s not enqueued", message_id, exc_info=True)
