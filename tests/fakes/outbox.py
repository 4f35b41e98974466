"""Fixtures shared by the outbox's tests: a private Redis as broker and rate-limit store, and the Celery app of the
test process publishing to it (never to the shared Redis, where another suite's worker could take the tasks); a fake
Evolution API on a local socket and a conversation of a clinic that sends through it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from django.utils import timezone
from kombu import pools

from cecilia.celery import app as celery_app
from cecilia.models import WhatsAppProvider
from conversations.models import Conversation
from conversations.outbox import pacing
from tests import factories
from tests.fakes.evolution_server import FakeEvolution
from tests.fakes.redis_server import RedisServer

EVOLUTION_INSTANCE = "clinica-teste"
EVOLUTION_TOKEN = "3F6A9C1E-7B2D-4E8F-A051-9C3D7E2B4F60"


@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Publish this process's tasks to `url` for the block."""
    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = url
    _drop_broker_connections()
    try:
        yield
    finally:
        celery_app.conf.broker_url = previous
        _drop_broker_connections()


def _drop_broker_connections() -> None:
    # kombu keeps one process-wide pool per broker URL; closed ones must leave that registry too.
    pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def _forget_rate_limit_client() -> None:
    pacing._redis.cache_clear()
    pacing._script.cache_clear()


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def outbox_redis(private_redis: RedisServer, settings: Any) -> Iterator[RedisServer]:
    settings.REDIS_URL = private_redis.url
    _forget_rate_limit_client()
    with celery_broker(private_redis.url):
        yield private_redis
    _forget_rate_limit_client()
    if private_redis.process is not None:
        redis.Redis.from_url(private_redis.url).flushdb()


def queued_tasks(server: RedisServer) -> list[tuple[str, list[Any]]]:
    """(task name, args) of every task waiting in the broker's default queue, oldest first."""
    client = redis.Redis.from_url(server.url)
    tasks = []
    for raw in reversed(client.lrange("celery", 0, -1)):  # LPUSH: newest first
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        tasks.append((message["headers"]["task"], args))
    return tasks


@pytest.fixture
def fake_evolution() -> Iterator[FakeEvolution]:
    fake = FakeEvolution(instance=EVOLUTION_INSTANCE, api_key=EVOLUTION_TOKEN)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def evolution_conversation(fake_evolution: FakeEvolution) -> Conversation:
    """Maria's open conversation with a clinic whose WhatsApp is the fake Evolution."""
    clinic = factories.clinic(
        whatsapp_provider=WhatsAppProvider.EVOLUTION,
        whatsapp_instance=EVOLUTION_INSTANCE,
        whatsapp_api_url=fake_evolution.url,
        whatsapp_api_key=EVOLUTION_TOKEN,
    )
    patient = factories.patient(clinic, phone="+5511987654321", full_name="Maria Souza")
    return Conversation.objects.create(clinic=clinic, patient=patient, last_inbound_at=timezone.now())
