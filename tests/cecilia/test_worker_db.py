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

from conversations.models import Conversation, MessageAuthor
from conversations.outbox import message_queue_outbound
from tests.fakes import outbox as fakes
from tests.fakes.celery_worker import Worker, worker_starter
from tests.fakes.evolution_server import FakeEvolution

pytestmark = pytest.mark.django_db(transaction=True)

private_redis = fakes.private_redis
outbox_redis = fakes.outbox_redis
fake_evolution = fakes.fake_evolution
conversation = fakes.evolution_conversation

WAIT = 20.0


@pytest.fixture
def start_worker(settings: Any, tmp_path: Path, outbox_redis: Any) -> Iterator[Callable[..., Worker]]:
    settings.MEDIA_ROOT = tmp_path / "media"
    with worker_starter(redis_url=outbox_redis.url, log_dir=tmp_path) as start:
        yield start


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


def test_prefork_children_each_keep_their_own_connection(fake_evolution, conversation, start_worker):
    worker = start_worker(pool=("prefork", "2"))  # production's pool: connections must never cross a fork
    for number in range(1, 5):
        send_and_wait(conversation, fake_evolution, worker, f"Mensagem {number}")
    held = others_connections()
    assert 1 <= len(held) <= 2  # one per child that ran a task; none left behind by the main process

    for number in range(5, 9):
        send_and_wait(conversation, fake_evolution, worker, f"Mensagem {number}")
    assert len(others_connections() | held) <= 2  # the same backends, reused
    assert "Traceback" not in worker.log()


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
