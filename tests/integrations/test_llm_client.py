"""The model client, through the real `openai` SDK against a local server speaking Chat Completions."""

from __future__ import annotations

import socket
import time

import pytest

from integrations.llm import LlmClient, LlmConfig, LlmRateLimited, LlmRefused, LlmUnavailable
from tests.fakes.openai_server import FakeOpenAI

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "find_slots",
            "description": "Free times.",
            "parameters": {"type": "object", "properties": {"service_id": {"type": "integer"}}, "required": []},
        },
    }
]
HELLO = [{"role": "system", "content": "Seja breve."}, {"role": "user", "content": "oi"}]


@pytest.fixture
def fake():
    server = FakeOpenAI().start()
    yield server
    server.stop()


def _client(fake: FakeOpenAI, *, timeout: float = 2.0, retries: int = 1) -> LlmClient:
    return LlmClient(
        LlmConfig(
            api_key="sk-test-123", base_url=fake.url, model="modelo-x", timeout_seconds=timeout, max_retries=retries
        )
    )


def test_it_returns_the_answer_and_its_token_usage(fake):
    fake.reply("Olá! Como posso ajudar?", prompt_tokens=42, completion_tokens=7)

    result = _client(fake).chat(HELLO, TOOLS)

    assert (result.content, result.tool_calls, result.finish_reason) == ("Olá! Como posso ajudar?", (), "stop")
    assert (result.prompt_tokens, result.completion_tokens, result.total_tokens) == (42, 7, 49)
    [request] = fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.authorization == "Bearer sk-test-123"
    assert request.body["model"] == "modelo-x"
    assert request.body["messages"] == HELLO
    assert request.body["tools"] == TOOLS


def test_it_returns_tool_calls_with_their_raw_arguments_and_repeats_them_as_the_next_message(fake):
    fake.call_tools(("find_slots", {"service_id": 3}), ("find_slots", '{"service_id": '))

    result = _client(fake).chat(HELLO, TOOLS)

    assert result.finish_reason == "tool_calls"
    assert [(call.name, call.arguments) for call in result.tool_calls] == [
        ("find_slots", '{"service_id": 3}'),
        ("find_slots", '{"service_id": '),  # broken JSON is the engine's to answer, not the client's to crash on
    ]
    message = result.as_message()
    assert message["role"] == "assistant"
    assert [call["id"] for call in message["tool_calls"]] == [call.id for call in result.tool_calls]
    assert message["tool_calls"][0]["function"] == {"name": "find_slots", "arguments": '{"service_id": 3}'}


def test_a_server_error_is_retried_once_then_answers(fake):
    fake.fail(500)
    fake.reply("Voltei!")

    assert _client(fake, retries=1).chat(HELLO).content == "Voltei!"
    assert len(fake.requests) == 2


def test_repeated_server_errors_are_unavailable_after_the_retries(fake):
    fake.fail(503, times=2)

    with pytest.raises(LlmUnavailable) as caught:
        _client(fake, retries=1).chat(HELLO)

    assert caught.value.status == 503
    assert len(fake.requests) == 2


def test_429_is_rate_limited_after_the_retries(fake):
    fake.fail(429, times=3, error_type="rate_limit_exceeded")

    with pytest.raises(LlmRateLimited):
        _client(fake, retries=2).chat(HELLO)

    assert len(fake.requests) == 3


def test_a_bad_key_is_refused_without_retrying(fake):
    fake.fail(401, error_type="invalid_request_error")

    with pytest.raises(LlmRefused) as caught:
        _client(fake, retries=3).chat(HELLO)

    assert caught.value.status == 401
    assert len(fake.requests) == 1


def test_a_slow_server_times_out_within_the_configured_time(fake):
    fake.stall(3, times=2)

    started = time.monotonic()
    with pytest.raises(LlmUnavailable):
        _client(fake, timeout=0.3, retries=1).chat(HELLO)

    # Two attempts of 0.3 s and the SDK's short backoff between them, far from the SDK's default of 600 s.
    assert time.monotonic() - started < 2.5
    assert len(fake.requests) == 2


def test_a_server_that_is_not_there_is_unavailable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    config = LlmConfig(api_key="k", base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout_seconds=1, max_retries=0)

    with pytest.raises(LlmUnavailable):
        LlmClient(config).chat(HELLO)


def test_the_configuration_falls_back_to_settings_and_never_shows_the_key(settings):
    settings.OPENAI_API_KEY = "sk-deployment-secret"
    settings.OPENAI_BASE_URL = "http://llm.internal/v1"
    settings.OPENAI_MODEL = "modelo-padrao"
    settings.OPENAI_TIMEOUT_SECONDS = 7
    settings.OPENAI_MAX_RETRIES = 0

    deployment = LlmConfig.from_settings()
    clinic_own = LlmConfig.from_settings(api_key="sk-clinic", model="modelo-da-clinica")

    assert (deployment.api_key, deployment.base_url, deployment.model) == (
        "sk-deployment-secret",
        "http://llm.internal/v1",
        "modelo-padrao",
    )
    assert (deployment.timeout_seconds, deployment.max_retries) == (7.0, 0)
    assert (clinic_own.api_key, clinic_own.model, clinic_own.base_url) == (
        "sk-clinic",
        "modelo-da-clinica",
        "http://llm.internal/v1",
    )
    assert "sk-" not in repr(deployment) and "sk-" not in repr(clinic_own)
