"""Putting messages in the outbox: a queued row, written in the caller's transaction, sent after it commits."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

from django.core.files import File
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from cecilia.models import WhatsAppProvider
from conversations.live import live_message
from conversations.models import (
    Conversation,
    Message,
    MessageAuthor,
    MessageDirection,
    MessageKind,
    MessageStatus,
)
from conversations.outbox.sending import reminder_step_follow
from integrations.whatsapp.base import Template

if TYPE_CHECKING:
    from scheduling.models import ReminderStep

logger = logging.getLogger(__name__)

# Meta's customer service window: after this long without a message from the patient, only templates may be sent.
WHATSAPP_WINDOW = datetime.timedelta(hours=24)


class OutsideWhatsAppWindow(Exception):
    """Free text refused: the clinic uses Meta's official API and the patient has not written for 24 hours.

    `message` is for staff (translated); send an approved template (`template=`) instead.
    """

    message = _(
        "More than 24 hours have passed since the patient's last message. On WhatsApp's official API only an "
        "approved message template can be sent until the patient writes again."
    )

    def __init__(self) -> None:
        super().__init__(str(self.message))


def window_open(conversation: Conversation, *, now: datetime.datetime | None = None) -> bool:
    """Whether free text may be sent in this conversation now (always, except on Meta after 24 h of silence)."""
    if conversation.clinic.whatsapp_provider != WhatsAppProvider.META:
        return True
    last = conversation.last_inbound_at
    return last is not None and (now or timezone.now()) - last < WHATSAPP_WINDOW


def message_queue_outbound(
    *,
    conversation: Conversation,
    text: str,
    author: MessageAuthor | str,
    author_user: object | None = None,
    kind: MessageKind | str = MessageKind.TEXT,
    media: File | None = None,
    media_mime_type: str = "",
    quoted: Message | None = None,
    template: Template | None = None,
    buttons: Sequence[tuple[str, str]] = (),
    reminder_step: ReminderStep | None = None,
) -> Message:
    """Queue one message to the conversation's patient: the only way a message leaves Cecilia.

    The row is written in the caller's transaction (so it exists exactly when the state it describes does) and the
    send is enqueued when that transaction commits; a broker outage then is logged, and the relay sends it later.
    `text` is the message, or the caption of `media`; with a `template` it is what staff read in the transcript (and
    what Evolution sends: templates exist on Meta only). `buttons` are (id, title) reply buttons, shown where the
    provider has them (the text must list the same options). `reminder_step`: the reminder or follow-up this message
    is; the database allows one message per step (a second one raises IntegrityError). Raises OutsideWhatsAppWindow
    for free text on Meta after 24 hours of silence from the patient, and ValueError for a message that cannot be
    sent as asked.
    """
    from conversations.outbox import tasks

    message = message_build(
        conversation=conversation,
        text=text,
        author=author,
        author_user=author_user,
        kind=kind,
        media=media,
        media_mime_type=media_mime_type,
        quoted=quoted,
        template=template,
        buttons=buttons,
        reminder_step=reminder_step,
    )
    with transaction.atomic():
        if media is not None:
            message.media.save(media.name or "arquivo", media, save=False)
        message.save()
        transaction.on_commit(lambda: tasks.message_send_enqueue(message.pk))
        live_message(message=message)  # an open transcript shows it queued (bulk sweeps do not: nobody is watching)
    return message


def message_build(
    *,
    conversation: Conversation,
    text: str,
    author: MessageAuthor | str,
    author_user: object | None = None,
    kind: MessageKind | str = MessageKind.TEXT,
    media: File | None = None,
    media_mime_type: str = "",
    quoted: Message | None = None,
    template: Template | None = None,
    buttons: Sequence[tuple[str, str]] = (),
    reminder_step: ReminderStep | None = None,
    now: datetime.datetime | None = None,
) -> Message:
    """The unsaved queued row `message_queue_outbound` writes, after its checks (same arguments and errors).

    For `messages_queue_outbound`, which writes many at once; `now` is the moment the Meta window is judged at.
    """
    author = MessageAuthor(author)
    kind = MessageKind(kind)
    if author == MessageAuthor.PATIENT:
        raise ValueError("Patients do not send outbound messages")
    if author_user is not None and author != MessageAuthor.STAFF:
        raise ValueError("Only staff messages name a staff member")
    if kind == MessageKind.TEXT and not text.strip() and template is None:
        raise ValueError("A text message needs text")
    if kind in (MessageKind.IMAGE, MessageKind.VIDEO, MessageKind.DOCUMENT, MessageKind.AUDIO):
        if media is None:
            raise ValueError(f"A {kind} message needs its file")
    elif kind != MessageKind.TEXT:
        raise ValueError(f"{kind} messages cannot be sent")
    if quoted is not None and quoted.conversation_id != conversation.pk:
        raise ValueError("A reply can only quote a message of its own conversation")
    if any(not str(button_id).strip() or not str(title).strip() for button_id, title in buttons):
        raise ValueError("A reply button needs an id and a title")
    if template is None and not window_open(conversation, now=now):
        raise OutsideWhatsAppWindow
    return Message(
        clinic_id=conversation.clinic_id,
        conversation=conversation,
        direction=MessageDirection.OUTBOUND,
        author=author,
        author_user=author_user,
        kind=kind,
        text=text,
        status=MessageStatus.QUEUED,
        quoted=quoted,
        template=_template_json(template),
        buttons=[{"id": str(button_id), "title": str(title)} for button_id, title in buttons],
        reminder_step=reminder_step,
        media_mime_type=(media_mime_type or getattr(media, "content_type", "") or "")[:100],
    )


def messages_queue_outbound(messages: Sequence[Message]) -> list[Message]:
    """Queue many text messages built by `message_build` (the reminder sweep's): one INSERT, then after commit one
    publish each. Returns the rows written.

    A message whose reminder step already has one (the database allows one per step) is not written and not
    returned; any other refusal raises. A broker outage stops the publishing at its first failure (the relay sends
    the rest), so a sweep never waits out the publish retries of hundreds of messages.
    """
    if any(message.media for message in messages):
        raise ValueError("Messages with a file are queued one at a time (message_queue_outbound)")
    if not messages:
        return []
    with transaction.atomic():
        try:
            with transaction.atomic():
                written = Message.objects.bulk_create(messages)
        except IntegrityError:
            written = _write_one_by_one(messages)
        ids = [message.pk for message in written]
        transaction.on_commit(lambda: _publish(ids))
    return written


def _write_one_by_one(messages: Sequence[Message]) -> list[Message]:
    """The rare batch in which some step has its message already (a sweep that lost its locks, staff): the others."""
    written = []
    for message in messages:
        message.pk = None
        message._state.adding = True
        try:
            with transaction.atomic():
                message.save(force_insert=True)
        except IntegrityError:
            step_id = message.reminder_step_id
            if step_id is None or not Message.objects.filter(reminder_step_id=step_id).exists():
                raise
            continue
        written.append(message)
    return written


def _publish(ids: Sequence[int]) -> None:
    from conversations.outbox import tasks

    for done, message_id in enumerate(ids):
        try:
            tasks.message_send_task.apply_async((message_id,))
        except Exception:  # kombu raises many kinds; the rows are safe in PostgreSQL and the relay sends them
            logger.warning(
                "%s queued messages not enqueued (broker unavailable); the relay will send them",
                len(ids) - done,
                exc_info=True,
            )
            return


def message_retry(*, message: Message) -> bool:
    """Queue a failed outbound message again (staff's "retry sending"). False when it is not a failed outbound one.

    Staff decide this after reading the reason; for a message marked "not confirmed", after checking on the phone
    that the patient did not get it. The Meta window is not re-checked here: Meta refuses, and says why.
    """
    from conversations.outbox import tasks

    with transaction.atomic():
        retried = Message.objects.filter(
            pk=message.pk, direction=MessageDirection.OUTBOUND, status=MessageStatus.FAILED
        ).update(
            status=MessageStatus.QUEUED,
            attempts=0,
            next_attempt_at=timezone.now(),  # due now; the relay counts its task as lost from here, not from creation
            claimed_at=None,
            send_started_at=None,
            error="",
            error_code="",
            failed_at=None,
        )
        if retried:
            # Its reminder step is on its way again too (the step's id never changes: the instance's is current).
            reminder_step_follow(step_id=message.reminder_step_id, status=MessageStatus.QUEUED, at=timezone.now())
            transaction.on_commit(lambda: tasks.message_send_enqueue(message.pk))
    return bool(retried)


def _template_json(template: Template | None) -> dict:
    if template is None:
        return {}
    data = asdict(template)
    data["body_parameters"] = list(template.body_parameters)
    return data
