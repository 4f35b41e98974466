"""Log lines: JSON shape, correlation id, and the masking that keeps personal data and secrets out (Invariant 7).

Lines are captured from the handler settings.LOGGING configures (its filters and formatter), not from a copy.
"""

from __future__ import annotations

import io
import json
import logging
import random
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from celery.app.trace import LOG_RECEIVED
from django.test import RequestFactory

from cecilia.observability.context import correlation_scope
from cecilia.observability.logging import (
    ConsoleFormatter,
    CorrelationIdFilter,
    JsonFormatter,
    SensitiveDataFilter,
    mask_text,
)
from tests.logs import default_handler_output

logger = logging.getLogger("tests.observability")


class Captured:
    """What the configured handler wrote during one test."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    """Point the configured "default" handler at a buffer (JSON format, whatever LOG_FORMAT says) for the test."""
    logger.setLevel(logging.DEBUG)
    try:
        with default_handler_output() as stream:
            yield Captured(stream)
    finally:
        logger.setLevel(logging.NOTSET)


def test_the_configured_handler_carries_the_correlation_and_masking_filters() -> None:
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "default")
    kinds = [type(f) for f in handler.filters]
    assert kinds == [CorrelationIdFilter, SensitiveDataFilter]
    assert isinstance(handler.formatter, JsonFormatter | ConsoleFormatter)


@pytest.mark.parametrize(
    ("phone", "telltale"),
    [
        ("+5511987654321", "987654321"),
        ("5511987654321", "987654321"),
        ("5511987654321@s.whatsapp.net", "987654321"),
        ("5511987654321-1600000000@g.us", "987654321"),
        ("(11) 98765-4321", "98765"),
        ("11 98765-4321", "98765"),
        ("11 9 8765-4321", "8765-4321"),
        ("98765-4321", "98765"),
        ("3234-5678", "3234"),
        ("+55 (11) 98765-4321", "98765"),
        ("+1 (415) 555-2671", "555"),
        ("11987654321", "987654321"),
    ],
)
def test_it_masks_phone_numbers_in_any_format(captured: Captured, phone: str, telltale: str) -> None:
    logger.warning("Mensagem recebida de %s às 2026-11-23T15:01:02", phone)

    (line,) = captured.lines()
    assert telltale not in captured.text
    assert "[redacted" in line["message"]
    assert line["message"].endswith("às 2026-11-23T15:01:02")


@pytest.mark.parametrize(
    ("secret_line", "telltale"),
    [
        ("cpf 123.456.789-09", "456.789"),
        ("cpf=12345678909", "45678909"),
        ("e-mail maria.silva@gmail.com", "maria.silva"),
        ("GET /contato?email=maria%40gmail.com", "maria"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi"),
        ("headers={'Authorization': 'Bearer abcdef123456'}", "abcdef123456"),
        ('{"apikey": "EVO-KEY-123", "instance": "clinica"}', "EVO-KEY-123"),
        ("POST /message/sendText?apikey=EVOKEY42&x=1", "EVOKEY42"),
        ("api_key=sk-live-abcdef0123456789", "abcdef0123456789"),
        ("openai failed: Incorrect API key provided: sk-proj-abcdefghijklmnop1234", "abcdefghijklmnop"),
        ("hub.verify_token=vt-998877&hub.challenge=1", "vt-998877"),
        ("password: hunter2", "hunter2"),
        ('"client_secret":"gcp-secret-1"', "gcp-secret-1"),
        ("broker redis://:s3cr3tpw@redis:6379/0", "s3cr3tpw"),
        ("Cookie: sessionid=abc123session; csrftoken=tok987", "abc123session"),
        ("Cookie: sessionid=abc123session; csrftoken=tok987", "tok987"),
    ],
)
def test_it_masks_cpf_email_tokens_and_api_keys(captured: Captured, secret_line: str, telltale: str) -> None:
    logger.warning(secret_line)

    assert telltale not in captured.text
    assert "[redacted" in captured.lines()[0]["message"]


@pytest.mark.parametrize(
    "harmless",
    [
        "2026-11-23T15:01:02",
        "2026-11-23 15:01:02,123",
        "2026-11-23T15:01:02.123456+00:00",
        "patient_id=1234 appointment_id=98765",
        "status=200 duration=0.123s took 1532ms",
        "HTTP 404 in 12.5 ms",
        "succeeded in 0.012345678901s",
        "messageTimestamp=1732374062",
        "created_ms=1732374062123",
        "prompt_tokens: 1234 completion_tokens=56 token_count=3",
        "message_id=3EB0C767D26A1D8E2F8B",
        "task conversations.tasks.turn[550e8400-e29b-41d4-a716-446655440000] received",
        "correlation 3f2a9c7e6b1d4f0a8c9e2b1a0d3f4e5c",
        "redis at 127.0.0.1:6379 database cecilia on postgres://postgres@127.0.0.1:5432/cecilia",
        "agenda 2025-2026, retries 1000-2000 ms",
    ],
)
def test_it_leaves_timestamps_ids_status_codes_and_durations_alone(captured: Captured, harmless: str) -> None:
    logger.warning("%s", harmless)

    assert captured.lines()[0]["message"] == harmless


def test_it_never_alters_uuids_or_hex_ids() -> None:
    # A hex id is mostly digits; a dashed UUID has digit-only groups: neither may look like a phone number.
    rng = random.Random(20261123)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(3000)]

    altered = [str(u) for u in ids if mask_text(str(u)) != str(u)] + [u.hex for u in ids if mask_text(u.hex) != u.hex]

    assert altered == []


def test_it_redacts_extra_fields_named_after_personal_data_or_secrets(captured: Captured) -> None:
    logger.warning(
        "Inbound message stored",
        extra={
            "text": "Oi, quero marcar uma consulta",
            "phone": "5511987654321",
            "api_key": "EVO-KEY-123",
            "patient_id": 1234,
            "message_id": "3EB0C767D26A",
            "text_length": 29,
            "event": {"data": {"key": {"remoteJid": "5511987654321@s.whatsapp.net"}, "pushName": "Maria Silva"}},
            "payload": {"message": {"conversation": "Estou com dor"}},
            "to": 5511987654321,
        },
    )

    (line,) = captured.lines()
    for telltale in ("quero marcar", "987654321", "EVO-KEY", "Maria", "dor"):
        assert telltale not in captured.text
    assert line["text"] == "[redacted 29 chars]"
    assert line["phone"] == "[redacted]"
    assert line["api_key"] == "[redacted]"
    assert line["payload"] == "[redacted]"
    assert line["event"]["data"]["key"]["remoteJid"] == "[redacted]"
    assert line["to"] == "[redacted:number]"
    assert (line["patient_id"], line["message_id"], line["text_length"]) == (1234, "3EB0C767D26A", 29)


def test_it_masks_phone_numbers_in_args_of_dict_messages(captured: Captured) -> None:
    logger.warning("Sending %(kind)s to %(to)s", {"kind": "reminder", "to": "+5511987654321"})
    logger.warning({"event": "send", "number": "5511987654321", "body": "Lembrete da consulta"})

    first, second = captured.lines()
    assert first["message"] == "Sending reminder to [redacted:phone]"
    assert second["number"] == "[redacted:number]"
    assert second["body"] == "[redacted 20 chars]"
    assert "987654321" not in captured.text


def test_it_masks_exception_text_and_tracebacks(captured: Captured) -> None:
    try:
        raise ValueError("provider refused 5511987654321 with apikey=EVO-KEY-123 for maria@example.com")
    except ValueError:
        logger.exception("Send failed for +5511987654321")

    (line,) = captured.lines()
    assert line["message"] == "Send failed for [redacted:phone]"
    assert "Traceback (most recent call last)" in line["exception"]
    assert "ValueError: provider refused [redacted:number]" in line["exception"]
    for telltale in ("987654321", "EVO-KEY-123", "maria@"):
        assert telltale not in captured.text


def test_it_masks_query_strings_in_django_request_and_server_lines(captured: Captured) -> None:
    request = RequestFactory().get("/admin/patients/patient/", {"q": "11987654321"})
    logging.getLogger("django.request").warning(
        "Not Found: %s", request.get_full_path(), extra={"status_code": 404, "request": request}
    )
    logging.getLogger("django.server").warning(
        '"%s" %s %s', "GET /admin/patients/patient/?q=11987654321&o=1 HTTP/1.1", "200", "5120"
    )

    request_line, server_line = captured.lines()
    assert "987654321" not in captured.text
    assert request_line["message"] == "Not Found: /admin/patients/patient/?q=[redacted]"
    assert request_line["status_code"] == 404
    assert server_line["message"] == '"GET /admin/patients/patient/?q=[redacted]&o=1 HTTP/1.1" 200 5120'


def test_it_masks_task_arguments_in_celery_received_lines(captured: Captured) -> None:
    # Exactly how celery.worker.strategy logs a received task.
    context = {
        "id": "550e8400-e29b-41d4-a716-446655440000",
        "name": "conversations.tasks.message_receive",
        "args": "('5511987654321', 'Oi')",
        "kwargs": "{'phone': '+5511987654321'}",
        "eta": None,
    }
    logging.getLogger("celery.worker.strategy").warning(LOG_RECEIVED, context, extra={"data": context})

    (line,) = captured.lines()
    assert line["message"] == (
        "Task conversations.tasks.message_receive[550e8400-e29b-41d4-a716-446655440000] received"
    )
    assert line["data"]["args"] == "('[redacted:number]', 'Oi')"
    assert "987654321" not in captured.text


def test_json_lines_carry_time_level_logger_message_and_correlation_id(captured: Captured) -> None:
    with correlation_scope("abc-123"):
        logger.info("Turn finished", extra={"conversation_id": 42, "engine": "rules"})
    logger.info("Outside any request")

    inside, outside = captured.lines()
    assert inside["level"] == "INFO"
    assert inside["logger"] == "tests.observability"
    assert inside["message"] == "Turn finished"
    assert inside["correlation_id"] == "abc-123"
    assert (inside["conversation_id"], inside["engine"]) == (42, "rules")
    assert inside["timestamp"].endswith("Z")
    assert datetime.fromisoformat(inside["timestamp"]).utcoffset().total_seconds() == 0
    assert outside["correlation_id"] == "-"


def test_console_lines_are_single_readable_lines_with_the_correlation_id() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CorrelationIdFilter())
    handler.addFilter(SensitiveDataFilter())
    handler.setFormatter(ConsoleFormatter())
    console_logger = logging.getLogger("tests.observability.console")
    console_logger.addHandler(handler)
    console_logger.propagate = False
    try:
        with correlation_scope("abc-123"):
            console_logger.warning("Reply queued for %s", "5511987654321", extra={"conversation_id": 7})
    finally:
        console_logger.removeHandler(handler)
        console_logger.propagate = True

    output = stream.getvalue()
    assert output.count("\n") == 1
    assert (
        "WARNING tests.observability.console [abc-123] Reply queued for [redacted:number] conversation_id=7" in output
    )
    assert "987654321" not in output


def test_a_record_is_masked_once_even_when_two_handlers_filter_it() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None)
    record.text = "Oi, tudo bem?"
    mask = SensitiveDataFilter()

    mask.filter(record)
    mask.filter(record)

    assert record.text == "[redacted 13 chars]"


def test_a_log_call_with_mismatched_arguments_still_writes_a_masked_line(captured: Captured) -> None:
    logger.warning("Two placeholders %s %s, one argument", "5511987654321")

    (line,) = captured.lines()
    assert "987654321" not in captured.text
    assert "Two placeholders" in line["message"]


def test_masking_stays_linear_on_long_lines() -> None:
    # A base64 media blob in a payload: a backtracking rule would take minutes on this.
    blob = "".join(
        random.Random(1).choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", k=300_000)
    )
    typical = "Task conversations.tasks.turn[550e8400-e29b-41d4-a716-446655440000] succeeded in 0.0123s: None"

    started = time.perf_counter()
    mask_text(blob)
    for _ in range(5000):
        mask_text(typical)
    elapsed = time.perf_counter() - started

    assert elapsed < 2.0
