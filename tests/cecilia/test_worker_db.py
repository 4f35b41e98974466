"""The Celery worker keeps its PostgreSQL connection between tasks, and recovers when PostgreSQL drops it.

A real worker (`celery -A cecilia worker`) sends messages through the outbox to the fake Evolution API; PostgreSQL's
own `pg_stat_activity` says which connections it holds. "Sent" is "the fake received it".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from cecilia.models import WhatsAppProvider
from conversations.models import Conversation, MessageAuthor
from conversations.outbox import message_queue_outbound
from tests import factories
from tests.fakes import outbox as fakes
from tests.fakes.celery_worker import Worker
from tests.fakes.evolution_server import FakeEvolution

pytestmark = pytest.mark.django_db(transaction=True)

private_redis = fakes.private_redis
outbox_redis = fakes.outbox_redis

INSTANCE = "clinica-teste"
TOKEN = "9B1F3C5A-2E4D-4A6B-8C0D-1E2F3A4B5C6D"
WAIT = 20.0


@pytest.fixture
def fake_evolution() -> Iterator[FakeEvolution]:
    fake = FakeEvolution(instance=INSTANCE, api_key=TOKEN)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def conversation(fake_evolution: FakeEvolution) -> Conversation:
    clinic = factories.clinic(
        whatsapp_provider=WhatsAppProvider.EVOLUTION,
        whatsapp_instance=INSTANCE,
        whatsapp_api_url=fake_evolution.url,
        whatsapp_api_key=TOKEN,
    )
    patient = factories.patient(clinic, phone="+5511987654321", full_name="Maria Souza")
    return Conversation.objects.create(clinic=clinic, patient=patient, last_inbound_at=timezone.now())


@pytest.fixture
def start_worker(settings: Any, tmp_path: Path, outbox_redis: Any) -> Iterator[Callable[..., Worker]]:
    settings.MEDIA_ROOT = tmp_path / "media"
    workers: list[Worker] = []

    def start(env: dict[str, str] | None = None) -> Worker:
        worker = Worker(redis_url=outbox_redis.url, log_path=tmp_path / f"worker-{len(workers) + 1}.log", env=env)
        workers.append(worker)
        worker.start()
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.kill()


def others_connections() -> set[tuple[int, str]]:
    """(pid, backend start) of every connection to the test database but this test's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start::text FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return set(cursor.fetchall())


def send_and_wait(conversation: Conversation, fake: FakeEvolution, worker: Worker, text: str) -> None:
    before = len(fake.requests_to("sendText"))
    message_queue_outbound(conversation=conversation, text=text, author=MessageAuthor.AI)
    if not fake.wait_for_requests(before + 1, timeout=WAIT):
        pytest.fail(f"The worker did not send {text!r}.\n--- worker log ---\n{worker.log()}")
    # The send task records the provider's answer after the request; wait for the task to end.
    wait_for(lambda: worker.log().count("succeeded in") >= before + 1, worker, "the send task ended")


def wait_for(condition: Callable[[], bool], worker: Worker, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out waiting until {what}.\n--- worker log ---\n{worker.log()}")
        time.sleep(0.05)


def test_the_worker_keeps_one_connection_across_tasks(fake_evolution, conversation, start_worker):
    worker = start_worker()
    send_and_wait(conversation, fake_evolution, worker, "Primeira mensagem")
    held = others_connections()
    assert len(held) == 1  # the idle worker still holds the connection its task used

    for number in range(2, 6):
        send_and_wait(conversation, fake_evolution, worker, f"Mensagem {number}")
    assert others_connections() == held  # the same backend served every task: no reconnect per task


def test_a_connection_postgresql_dropped_is_replaced_and_the_next_task_still_runs(
    fake_evolution, conversation, start_worker
):
    worker = start_worker()
    send_and_wait(conversation, fake_evolution, worker, "Antes da queda")
    (pid, _started), *_ = others_connections()
    with connection.cursor() as cursor:  # what a PostgreSQL restart or an idle-connection killer does to it
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

    send_and_wait(conversation, fake_evolution, worker, "Depois da queda")

    sent = [request.body["text"] for request in fake_evolution.requests_to("sendText")]
    assert sent == ["Antes da queda", "Depois da queda"]
    assert pid not in {held_pid for held_pid, _ in others_connections()}
    assert "Traceback" not in worker.log()


def test_a_deployment_that_sets_db_conn_max_age_0_gets_a_connection_per_task(
    fake_evolution, conversation, start_worker
):
    worker = start_worker(env={"DB_CONN_MAX_AGE": "0"})
    send_and_wait(conversation, fake_evolution, worker, "Uma mensagem")
    wait_for(lambda: not others_connections(), worker, "the worker closed its connection after the task")
