"""Correlation ids: one per request (WSGI and ASGI), echoed in X-Request-ID, on every log line, carried into tasks.

Celery tests publish through the project's Celery app to the real Redis broker, read the message back from Redis,
and run it through Celery's worker request/tracer (what a worker's pool does with each message), so the real
`before_task_publish`, `task_prerun` and `task_postrun` signals fire.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from celery.worker.request import Request
from django.http import Http404, HttpRequest, JsonResponse
from django.test import AsyncClient, Client
from django.urls import path
from kombu import Connection

from cecilia.celery import app as celery_app
from cecilia.observability.celery import HEADER
from cecilia.observability.context import correlation_scope, get_correlation_id
from tests.logs import default_handler_output

logger = logging.getLogger("tests.correlation")
HEX_ID = re.compile(r"[0-9a-f]{32}")


# --- A few views, routed by this module (pytest.mark.urls) ------------------------------------------------------
def logging_view(request: HttpRequest) -> JsonResponse:
    logger.warning("Handling request for %s", "5511987654321")
    return JsonResponse({"correlation_id": get_correlation_id()})


def failing_view(request: HttpRequest) -> JsonResponse:
    raise RuntimeError("boom")


def missing_view(request: HttpRequest) -> JsonResponse:
    raise Http404


async def async_view(request: HttpRequest) -> JsonResponse:
    await asyncio.sleep(0.05)  # let concurrent requests interleave
    logger.warning("Async handling")
    return JsonResponse({"correlation_id": get_correlation_id()})


urlpatterns = [
    path("log", logging_view),
    path("fail", failing_view),
    path("missing", missing_view),
    path("async", async_view),
]
pytestmark = pytest.mark.urls(__name__)


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    def lines(self, logger_name: str | None = None) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self._stream.getvalue().splitlines() if line.strip()]
        return [line for line in lines if logger_name is None or line["logger"] == logger_name]


@pytest.fixture
def captured() -> Iterator[Captured]:
    """Point the configured "default" handler at a buffer, in JSON, for the test."""
    access = logging.getLogger("cecilia.access")
    access.setLevel(logging.INFO)  # whatever LOG_LEVEL says
    try:
        with default_handler_output() as stream:
            yield Captured(stream)
    finally:
        access.setLevel(logging.NOTSET)


# --- HTTP ----------------------------------------------------------------------------------------------------------
def test_it_echoes_a_sane_incoming_request_id_and_tags_log_lines_with_it(captured: Captured) -> None:
    response = Client().get("/log", headers={"X-Request-ID": "abc-123"})

    assert response["X-Request-ID"] == "abc-123"
    assert response.json() == {"correlation_id": "abc-123"}
    (line,) = captured.lines("tests.correlation")
    assert line["correlation_id"] == "abc-123"
    assert "987654321" not in json.dumps(line)


def test_it_generates_an_id_when_the_request_has_none(captured: Captured) -> None:
    response = Client().get("/log")

    cid = response["X-Request-ID"]
    assert HEX_ID.fullmatch(cid)
    assert response.json() == {"correlation_id": cid}
    assert captured.lines("tests.correlation")[0]["correlation_id"] == cid


@pytest.mark.parametrize(
    "unsafe",
    ["a" * 65, "abc 123", "<script>alert(1)</script>", "abc;rm", "5511987654321", "ação", ""],
)
def test_it_replaces_an_incoming_id_that_is_too_long_or_unsafe(unsafe: str) -> None:
    response = Client().get("/log", headers={"X-Request-ID": unsafe})

    assert HEX_ID.fullmatch(response["X-Request-ID"])


def test_it_resets_the_id_after_each_request() -> None:
    client = Client()
    first = client.get("/log", headers={"X-Request-ID": "first-1"})
    second = client.get("/log")

    assert first.json()["correlation_id"] == "first-1"
    assert second.json()["correlation_id"] not in (None, "first-1")
    assert get_correlation_id() is None


def test_a_failing_view_still_gets_the_header_and_its_error_line_the_id(captured: Captured) -> None:
    response = Client(raise_request_exception=False).get("/fail", headers={"X-Request-ID": "fail-1"})

    assert response.status_code == 500
    assert response["X-Request-ID"] == "fail-1"
    (error_line,) = captured.lines("django.request")
    assert error_line["correlation_id"] == "fail-1"
    assert "RuntimeError: boom" in error_line["exception"]
    assert get_correlation_id() is None


def test_djangos_not_found_line_carries_the_id_although_it_is_written_after_the_middleware(
    captured: Captured,
) -> None:
    response = Client().get("/missing", headers={"X-Request-ID": "nf-1"})

    assert response.status_code == 404
    (line,) = captured.lines("django.request")
    assert line["message"] == "Not Found: /missing"
    assert line["correlation_id"] == "nf-1"


def test_it_works_under_asgi_for_async_and_sync_views(captured: Captured) -> None:
    client = AsyncClient()

    async_response = async_to_sync(client.get)("/async", headers={"X-Request-ID": "asgi-1"})
    sync_response = async_to_sync(client.get)("/log", headers={"X-Request-ID": "asgi-2"})

    assert (async_response["X-Request-ID"], async_response.json()["correlation_id"]) == ("asgi-1", "asgi-1")
    assert (sync_response["X-Request-ID"], sync_response.json()["correlation_id"]) == ("asgi-2", "asgi-2")
    assert [line["correlation_id"] for line in captured.lines("tests.correlation")] == ["asgi-1", "asgi-2"]


def test_each_request_writes_one_access_line_without_its_query_string(captured: Captured) -> None:
    # What staff searched for travels in query strings, often URL-encoded past any masking pattern.
    Client().get(
        "/log", {"q": "11987654321", "_changelist_filters": "q=11+98765-4321"}, headers={"X-Request-ID": "acc-1"}
    )
    async_to_sync(AsyncClient().get)("/missing", headers={"X-Request-ID": "acc-2"})

    sync_line, async_line = captured.lines("cecilia.access")
    assert sync_line["message"].startswith("GET /log 200 ")
    assert (sync_line["status"], sync_line["method"], sync_line["correlation_id"]) == (200, "GET", "acc-1")
    assert isinstance(sync_line["duration_ms"], float)
    assert (async_line["status"], async_line["correlation_id"]) == (404, "acc-2")
    assert "987654321" not in json.dumps(sync_line) and "98765" not in json.dumps(sync_line)


@pytest.mark.urls("cecilia.urls")
def test_health_probes_write_no_access_line_at_info(captured: Captured) -> None:
    response = Client().get("/health/live")

    assert response.status_code == 200
    assert captured.lines("cecilia.access") == []


def test_concurrent_asgi_requests_keep_their_own_ids() -> None:
    async def both() -> list[Any]:
        client = AsyncClient()
        return await asyncio.gather(*(client.get("/async", headers={"X-Request-ID": f"req-{n}"}) for n in range(5)))

    responses = async_to_sync(both)()

    assert [r.json()["correlation_id"] for r in responses] == [f"req-{n}" for n in range(5)]
    assert [r["X-Request-ID"] for r in responses] == [f"req-{n}" for n in range(5)]


# --- Celery --------------------------------------------------------------------------------------------------------
seen_ids: list[str | None] = []


@celery_app.task(name="tests.correlation.child")
def child_task() -> None:
    seen_ids.append(get_correlation_id())


@celery_app.task(name="tests.correlation.parent", bind=True)
def parent_task(self: Any, phone: str) -> None:
    seen_ids.append(get_correlation_id())
    child_task.apply_async(queue=self.request.delivery_info["routing_key"], retry=False)


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue of our own on the real broker, deleted afterwards."""
    name = f"tests.correlation.{uuid.uuid4().hex}"
    seen_ids.clear()
    yield name
    with Connection(celery_app.conf.broker_url) as conn:
        conn.default_channel.queue_delete(name)
    # kombu keeps the binding of the same-named exchange Celery declared in these keys; leave Redis as we found it.
    redis.Redis.from_url(celery_app.conf.broker_url).delete(
        f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}"
    )


def _receive(queue: str) -> Any:
    """Take the next message off `queue` on the real broker, as a worker would."""
    with Connection(celery_app.conf.broker_url) as conn:
        message = conn.default_channel.basic_get(queue, no_ack=True)
    assert message is not None, "nothing was published"
    return message


def _run_like_a_worker(message: Any) -> None:
    """Run a received message through Celery's worker request and tracer (what the pool does)."""
    task = celery_app.tasks[message.headers["task"]]
    Request(message, app=celery_app, task=task).execute()


def test_publishing_a_task_puts_the_current_id_in_the_message_headers(queue: str) -> None:
    with correlation_scope("req-abc"):
        parent_task.apply_async(args=["5511987654321"], queue=queue, retry=False)

    message = _receive(queue)

    assert message.headers[HEADER] == "req-abc"
    assert "987654321" not in message.headers["argsrepr"]  # what the worker prints in its "received" line
    assert message.payload[0] == ["5511987654321"]  # the task itself still gets its real argument


def test_a_task_runs_under_the_id_it_was_published_with_and_passes_it_to_its_children(queue: str) -> None:
    with correlation_scope("req-abc"):
        parent_task.apply_async(args=["5511987654321"], queue=queue, retry=False)

    _run_like_a_worker(_receive(queue))
    child_message = _receive(queue)
    _run_like_a_worker(child_message)

    assert child_message.headers[HEADER] == "req-abc"
    assert seen_ids == ["req-abc", "req-abc"]
    assert get_correlation_id() is None  # task_postrun restored the worker's (empty) context


def test_a_task_published_without_an_id_runs_under_a_fresh_one(queue: str) -> None:
    child_task.apply_async(queue=queue, retry=False)

    message = _receive(queue)
    _run_like_a_worker(message)

    assert HEADER not in message.headers
    assert HEX_ID.fullmatch(seen_ids[0] or "")
    assert get_correlation_id() is None


def test_an_eager_task_keeps_the_callers_id() -> None:
    seen_ids.clear()
    with correlation_scope("req-eager"):
        child_task.apply()
        after = get_correlation_id()

    assert seen_ids == ["req-eager"]
    assert after == "req-eager"
