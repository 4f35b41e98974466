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
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import openai
from django.conf import settings

logger = logging.getLogger(__name__)


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


class LlmClient:
    def __init__(self, config: LlmConfig) -> None:
        self.config = config
        try:
            self._sdk = _sdk_client(config.api_key, config.base_url, config.timeout_seconds, config.max_retries)
        except openai.OpenAIError as exc:  # no key, a malformed base URL
            raise LlmRefused(f"The model's client cannot be built ({type(exc).__name__}).") from exc

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> ChatResult:
        """One Chat Completions call (the SDK retries `max_retries` times on 408/409/429/5xx and network errors)."""
        kwargs: dict[str, Any] = {"model": self.config.model, "messages": messages}
        if tools:
            kwargs["tools"] = tools
        try:
            completion = self._sdk.chat.completions.create(**kwargs)
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
        try:
            return _result(completion)
        except (AttributeError, TypeError, ValueError) as exc:  # a compatible server's answer missing fields
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
