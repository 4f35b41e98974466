"""Fixtures shared by the outbox's tests: a private Redis as broker and rate-limit store, and the Celery app of the
test process publishing to it (never to the shared Redis, where another suite's worker could take the tasks)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from kombu import pools

from cecilia.celery import app as celery_app
from conversations.outbox import pacing
from tests.fakes.redis_server import RedisServer


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
