"""What the bench adds to the worker (through `bench.turn.settings`' CELERY_IMPORTS): the empty task of the floor, and
a record of every task the worker runs — name, start and end on the machine's monotonic clock, SQL queries — pushed
to a Redis list the bench reads, so a turn's time can be split into its tasks and the waits between them.

`time.perf_counter()` is CLOCK_MONOTONIC on Linux in every process, so the worker's timestamps and the bench's are on
the same clock. The record is pushed in `task_postrun`, after the task's work (the provider call included), so it
does not delay what it measures; it costs the worker one Redis round trip per task, floor and turns alike.
"""

from __future__ import annotations

import json
import time
from functools import cache
from typing import Any

import redis
from celery import shared_task, signals
from django.conf import settings
from django.db import connection

TIMELINE_KEY = "bench:turn:tasks"  # list of JSON records, one per task run, oldest first


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)


@shared_task(name="bench.turn.ping", ignore_result=True)
def ping(done_key: str, hops: int = 1) -> None:
    """The floor: nothing but Celery. With hops > 1 it publishes itself again (as the turn's tasks publish the next
    one), and the last hop pushes to `done_key`, where the bench waits with BLPOP."""
    if hops > 1:
        ping.delay(done_key, hops - 1)
    else:
        _redis().rpush(done_key, "1")


class _QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


_running: dict[str, tuple[float, _QueryCounter]] = {}


@signals.task_prerun.connect
def _task_started(task_id: str | None = None, **_: Any) -> None:
    counter = _QueryCounter()
    connection.execute_wrappers.append(counter)
    _running[task_id or ""] = (time.perf_counter(), counter)


@signals.task_postrun.connect
def _task_ended(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    ended = time.perf_counter()
    started, counter = _running.pop(task_id or "", (ended, None))
    if counter is None:
        return
    if counter in connection.execute_wrappers:
        connection.execute_wrappers.remove(counter)
    record = {"name": getattr(task, "name", "?"), "start": started, "end": ended, "queries": counter.count}
    _redis().rpush(TIMELINE_KEY, json.dumps(record))
