"""A language model behind the assistant: Chat Completions with tools, through the `openai` SDK.

Any OpenAI-compatible server works (`base_url`). One call, `LlmClient.chat(messages, tools) -> ChatResult`, with an
explicit timeout and retry limit (the SDK's defaults, 600 s and 2 retries, would leave a patient waiting minutes).
Every failure becomes one of three errors, each carrying one decision for the caller:

* `LlmUnavailable` — timeout, connection error, 5xx, an unreadable answer: try again later, answer some other way now;
* `LlmRateLimited` — 429 after the SDK's retries: the same, and the deployment's quota needs a look;
* `LlmRefused` — any other 4xx (bad key, unknown model, a request the server will never accept): a configuration
  problem; retrying will not help.

Dataclasses in, dataclasses out: messages and tools are the Chat Completions wire dicts, the answer is a `ChatResult`.
Nothing here logs message text, keys or tool arguments (ids, types and status codes only).

`LlmClient.transcribe(audio, …) -> TranscriptResult` turns a patient's voice note into text through the same
OpenAI-compatible server (`POST /audio/transcriptions`), with the same three errors and its own timeout.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import openai
from django.conf import settings
from openai.types.chat import ChatCompletion

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class LlmError(Exception):
    """The model gave no usable answer. `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LlmUnavailable(LlmError):
    """Timeout, connection error, 5xx or an unreadable answer: temporary."""


class LlmRateLimited(LlmError):
    """429: the deployment's (or the clinic's) quota at the provider is exhausted for now."""


class LlmRefused(LlmError):
    """Any other 4xx: the request or the configuration is wrong (bad key, unknown model); retrying will not help."""


@dataclass(frozen=True)
class LlmConfig:
    api_key: str
    model: str
    base_url: str = ""  # empty: OpenAI's
    timeout_seconds: float = 20.0
    max_retries: int = 1

    @classmethod
    def from_settings(cls, *, api_key: str = "", base_url: str = "", model: str = "") -> LlmConfig:
        """A clinic's own key, base URL and model where given, the deployment's settings for the rest."""
        return cls(
            api_key=api_key or settings.OPENAI_API_KEY,
            base_url=base_url or settings.OPENAI_BASE_URL,
            model=model or settings.OPENAI_MODEL,
            timeout_seconds=float(settings.OPENAI_TIMEOUT_SECONDS),
            max_retries=int(settings.OPENAI_MAX_RETRIES),
        )

    def __repr__(self) -> str:  # never print the key (tracebacks, debuggers)
        return f"LlmConfig(model={self.model!r}, base_url={self.base_url!r}, timeout={self.timeout_seconds})"


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the model's JSON text, unparsed: it may be malformed


@dataclass(frozen=True)
class ChatResult:
    content: str  # "" when the model only called tools
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_message(self) -> dict[str, Any]:
        """The assistant's message as the next request must repeat it (tool calls included, ids preserved)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                for call in self.tool_calls
            ]
        return message


@dataclass(frozen=True)
class TranscriptResult:
    text: str  # "" when the server heard no speech
    input_tokens: int = 0  # token-billed models report tokens…
    output_tokens: int = 0
    seconds: float = 0.0  # …duration-billed ones (whisper-1) the audio's length


class LlmClient:
    def __init__(self, config: LlmConfig) -> None:
        self.config = config
        try:
            self._sdk = _sdk_client(config.api_key, config.base_url, config.timeout_seconds, config.max_retries)
        except openai.OpenAIError as exc:  # no key, a malformed base URL
            raise LlmRefused(f"The model's client cannot be built ({type(exc).__name__}).") from exc

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> ChatResult:
        """One Chat Completions call (the SDK retries `max_retries` times on 408/409/429/5xx and network errors)."""
        body: dict[str, Any] = {"model": self.config.model, "messages": messages}
        if tools:
            body["tools"] = tools
        # The SDK's low-level POST (same client, retries, errors and typed answer as `chat.completions.create`),
        # because `create` first walks the whole request through its TypedDict transforms — 12 % of a turn's CPU in
        # bench/turn — and what we send is already the wire format.
        completion = _call(lambda: self._sdk.post("/chat/completions", cast_to=ChatCompletion, body=body))
        try:
            return _result(completion)
        except (AttributeError, TypeError, ValueError) as exc:  # a compatible server's answer missing fields
            raise LlmUnavailable(f"The model's answer could not be read ({type(exc).__name__}).") from exc

    def transcribe(
        self,
        audio: bytes,
        *,
        file_name: str,
        mime_type: str,
        model: str,
        timeout_seconds: float,
        language: str = "pt",
    ) -> TranscriptResult:
        """One transcription of an audio file (`POST /audio/transcriptions`, JSON answer).

        `file_name`'s extension tells the server the audio format (OpenAI accepts ogg, mp3, m4a, wav, webm…).
        `language` ("pt") spares the model guessing it from a few seconds of speech. The timeout applies to this call
        only: a voice note takes longer than a chat answer, and the patient's turn waits for it.
        """
        upload = (file_name, audio, mime_type or "application/octet-stream")
        transcription = _call(
            lambda: self._sdk.audio.transcriptions.create(
                file=upload, model=model, language=language, response_format="json", timeout=timeout_seconds
            )
        )
        text = getattr(transcription, "text", None)
        if not isinstance(text, str):
            raise LlmUnavailable("The transcription could not be read.")
        usage = getattr(transcription, "usage", None)
        tokens = getattr(usage, "type", "") == "tokens"
        return TranscriptResult(
            text=text.strip(),
            input_tokens=(getattr(usage, "input_tokens", 0) or 0) if tokens else 0,
            output_tokens=(getattr(usage, "output_tokens", 0) or 0) if tokens else 0,
            seconds=(getattr(usage, "seconds", 0.0) or 0.0) if usage is not None and not tokens else 0.0,
        )


def _call(request: Callable[[], _T]) -> _T:
    """Run one SDK request, turning every failure into LlmUnavailable, LlmRateLimited or LlmRefused."""
    try:
        return request()
    except openai.RateLimitError as exc:
        raise LlmRateLimited("The model's provider is rate limiting us.", status=429) from exc
    except openai.APITimeoutError as exc:
        raise LlmUnavailable("The model did not answer in time.") from exc
    except openai.APIConnectionError as exc:
        raise LlmUnavailable("The model's server cannot be reached.") from exc
    except openai.APIStatusError as exc:
        if exc.status_code >= 500 or exc.status_code in (408, 409):
            raise LlmUnavailable("The model's server failed.", status=exc.status_code) from exc
        raise LlmRefused("The model's server refused the request.", status=exc.status_code) from exc
    except openai.OpenAIError as exc:  # an answer the SDK could not read, and the like
        raise LlmUnavailable(f"The model's answer could not be read ({type(exc).__name__}).") from exc


def _result(completion: Any) -> ChatResult:
    choices = getattr(completion, "choices", None)
    if not choices:
        raise LlmUnavailable("The model answered without a choice.")
    choice = choices[0]
    message = choice.message
    calls = []
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)
        if function is None:  # a "custom" tool call: we declare none, so the engine answers it with an error
            custom = getattr(call, "custom", None)
            calls.append(ToolCall(id=call.id, name=getattr(custom, "name", "") or "", arguments=""))
            continue
        calls.append(ToolCall(id=call.id, name=function.name or "", arguments=function.arguments or ""))
    usage = completion.usage
    return ChatResult(
        content=message.content or "",
        tool_calls=tuple(calls),
        finish_reason=choice.finish_reason or "stop",
        prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
        completion_tokens=(usage.completion_tokens or 0) if usage else 0,
        model=getattr(completion, "model", "") or "",
    )


@functools.lru_cache(maxsize=32)
def _sdk_client(api_key: str, base_url: str, timeout: float, max_retries: int) -> openai.OpenAI:
    """One SDK client (and its connection pool) per configuration, reused across turns."""
    return openai.OpenAI(
        api_key=api_key,
        base_url=base_url or None,
        timeout=timeout,
        max_retries=max_retries,
    )
