"""The outbox under faults, with real processes: a Celery worker (`celery -A cecilia worker`) killed with SIGKILL, a
private redis-server stopped and started again, and a fake Evolution API on a local socket that counts every request
it receives — "the patient got exactly one copy" is "the fake received exactly one send".

The worker reads the committed rows of pytest-django's test database (hence `transaction=True`) and its own private
Redis, so it never takes another suite's tasks. A beat tick of the relay is `outbox_relay(now=…)` called here, with
`now` as late as the rule needs (the thresholds are minutes).
"""

from __future__ import annotations

import datetime
import errno
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from conversations.models import AttentionReason, Conversation, Message, MessageAuthor, MessageKind, MessageStatus
from conversations.outbox import UNCONFIRMED, message_queue_outbound, outbox_relay
from conversations.outbox.relay import CLAIM_EXPIRES_AFTER, LOST_AFTER, unconfirmed_after
from tests import factories
from tests.fakes import outbox as fakes
from tests.fakes.celery_worker import Worker, worker_starter

pytestmark = pytest.mark.django_db(transaction=True)

private_redis = fakes.private_redis
outbox_redis = fakes.outbox_redis
fake_evolution = fakes.fake_evolution
conversation = fakes.evolution_conversation

TEXT = "Olá Maria! Sua consulta está confirmada para amanhã às 9h."
WAIT = 20.0  # the most any step may take before the test fails (it normally takes well under a second)


@pytest.fixture
def start_worker(settings: Any, tmp_path: Path, outbox_redis: Any) -> Iterator[Callable[..., Worker]]:
    """Start a worker (several may be started in turn); every one is SIGKILLed when the test ends, whatever happens."""
    settings.MEDIA_ROOT = tmp_path / "media"
    with worker_starter(redis_url=outbox_redis.url, log_dir=tmp_path) as start:

        def start_with(*, visibility_timeout: int = 3600) -> Worker:
            return start(
                {
                    "TEST_BROKER_VISIBILITY_TIMEOUT": str(visibility_timeout),
                    "WHATSAPP_SEND_RETRY_BASE_SECONDS": "0.2",
                }
            )

        yield start_with


def queue(conversation: Conversation, **kwargs: Any) -> Message:
    return message_queue_outbound(conversation=conversation, author=MessageAuthor.AI, **{"text": TEXT, **kwargs})


def wait_until(condition: Callable[[], bool], worker: Worker | None, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out waiting until {what}.\n--- worker log ---\n{worker.log() if worker else ''}")
        time.sleep(0.05)


def status_of(message: Message) -> str:
    return Message.objects.values_list("status", flat=True).get(pk=message.pk)


def ran_a_send_task(worker: Worker) -> bool:
    """A send task ran to the end on this worker (for a new worker: the killed one's task, delivered again)."""
    log = worker.log()
    return "message_send_task[" in log and "succeeded in" in log


def later(delta: datetime.timedelta) -> datetime.datetime:
    return timezone.now() + delta + datetime.timedelta(seconds=1)


def test_a_worker_killed_while_the_provider_holds_the_send_leaves_the_patient_with_exactly_one_copy(
    fake_evolution, conversation, start_worker
):
    fake_evolution.hold_next()
    first = start_worker(visibility_timeout=2)
    message = queue(conversation)

    wait_until(lambda: fake_evolution.wait_for_requests(1, timeout=0.1), first, "the send reached the provider")
    first.kill()
    fake_evolution.release()
    row = Message.objects.get(pk=message.pk)
    assert row.status == MessageStatus.SENDING and row.send_started_at is not None

    second = start_worker(visibility_timeout=2)  # acks_late: the killed worker's task is delivered again
    wait_until(lambda: ran_a_send_task(second), second, "the redelivered task ran")
    assert len(fake_evolution.requests_to("sendText")) == 1  # the rerun did not resend it…
    assert "'skipped'" in second.log() and status_of(message) == MessageStatus.SENDING  # …nor settle it blindly

    assert outbox_relay(now=later(unconfirmed_after())).unconfirmed == 1  # the next beat tick settles it
    time.sleep(0.5)  # anything wrongly enqueued would reach the provider by now

    assert len(fake_evolution.requests_to("sendText")) == 1
    row.refresh_from_db()
    assert (row.status, row.error_code) == (MessageStatus.FAILED, UNCONFIRMED)
    assert Conversation.objects.get(pk=conversation.pk).attention_reason == AttentionReason.FAILED_SEND


def test_a_worker_killed_after_claiming_but_before_calling_the_provider_sends_the_message_exactly_once(
    fake_evolution, conversation, start_worker, settings
):
    message = queue(
        conversation,
        text="Segue o seu pedido de exame",
        kind=MessageKind.DOCUMENT,
        media=ContentFile(b"%PDF-1.7 pedido", name="pedido-exame.pdf"),
        media_mime_type="application/pdf",
    )
    # The worker reads the file between its claim and the provider call. A FIFO instead of the file stops it there,
    # deterministically: its open() waits for a writer, and our non-blocking open for writing succeeds exactly when
    # the worker is waiting on it.
    path = Path(settings.MEDIA_ROOT) / message.media.name
    path.unlink()
    os.mkfifo(path)
    first = start_worker(visibility_timeout=2)
    writer = open_fifo_when_read(path, first)
    try:
        row = Message.objects.get(pk=message.pk)
        assert (row.status, row.send_started_at, row.attempts) == (MessageStatus.SENDING, None, 1)
        first.kill()
    finally:
        os.close(writer)
    path.unlink()
    path.write_bytes(b"%PDF-1.7 pedido")
    assert fake_evolution.received == []

    second = start_worker(visibility_timeout=2)
    wait_until(lambda: ran_a_send_task(second), second, "the redelivered task ran")
    assert fake_evolution.received == [] and "'skipped'" in second.log()  # the row is claimed: the rerun waits
    assert outbox_relay(now=later(CLAIM_EXPIRES_AFTER)).requeued == 1  # the next beat tick: nothing left, send it
    wait_until(lambda: status_of(message) == MessageStatus.SENT, second, "the message was sent")
    time.sleep(0.5)

    sends = fake_evolution.requests_to("sendMedia")
    assert len(sends) == 1 and sends[0].body["fileName"] == "pedido-exame.pdf"
    assert Message.objects.get(pk=message.pk).attempts == 2


def open_fifo_when_read(path: Path, worker: Worker) -> int:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
        if time.monotonic() > deadline:
            pytest.fail(f"The worker never read the file.\n--- worker log ---\n{worker.log()}")
        time.sleep(0.02)


def test_a_provider_answering_500_twice_is_retried_and_the_message_delivered_once(
    fake_evolution, conversation, start_worker
):
    fake_evolution.answer(500, "error_500_connection_closed.json")
    fake_evolution.answer(500, "error_500_connection_closed.json")
    worker = start_worker()

    message = queue(conversation)
    wait_until(lambda: status_of(message) == MessageStatus.SENT, worker, "the message was sent")
    time.sleep(0.5)

    sends = fake_evolution.requests_to("sendText")
    assert [send.body["text"] for send in sends] == [TEXT] * 3
    row = Message.objects.get(pk=message.pk)
    assert (row.attempts, row.error) == (3, "")
    assert row.provider_message_id.startswith("3EB0C4F2A91D7E5B")


def test_a_number_not_on_whatsapp_fails_without_retrying_and_shows_in_the_admin(
    fake_evolution, conversation, start_worker, client
):
    fake_evolution.answer(400, "send_text_error_400_not_on_whatsapp.json")
    worker = start_worker()

    message = queue(conversation)
    wait_until(lambda: status_of(message) == MessageStatus.FAILED, worker, "the message failed")
    outbox_relay(now=later(datetime.timedelta(hours=1)))
    time.sleep(0.5)

    assert len(fake_evolution.requests_to("sendText")) == 1
    client.force_login(factories.staff_user(conversation.clinic))
    page = client.get(reverse("admin:conversations_message_changelist"), {"status__exact": "failed"}).content.decode()
    assert "Este número não tem WhatsApp." in page and "Maria Souza" in page


def test_with_redis_down_a_message_stays_queued_without_hanging_and_the_relay_sends_it_when_redis_is_back(
    fake_evolution, conversation, start_worker, private_redis
):
    private_redis.stop()
    started = time.monotonic()
    try:
        message = queue(conversation)
        elapsed = time.monotonic() - started
    finally:
        private_redis.start()

    assert elapsed < 5
    assert status_of(message) == MessageStatus.QUEUED
    worker = start_worker()
    time.sleep(0.5)
    assert fake_evolution.received == []  # its task was never published: nothing to run

    assert outbox_relay(now=later(LOST_AFTER)).enqueued == 1
    wait_until(lambda: status_of(message) == MessageStatus.SENT, worker, "the message was sent")
    assert len(fake_evolution.requests_to("sendText")) == 1
