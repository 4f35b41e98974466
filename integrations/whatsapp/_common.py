"""Helpers the provider adapters share: wire numbers and timestamps, base64, capped reads, transport errors.

Private to integrations.whatsapp. Nothing here logs: errors travel as ProviderError codes, never with a number, a
text or a key in them.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hmac
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from integrations.whatsapp.base import MalformedPayload, ProviderError

# WhatsApp's own ceiling for media other than documents is 16 MB; a clinic has no use for bigger files.
DEFAULT_MAX_MEDIA_BYTES = 16 * 1024 * 1024

# What a receptionist reads next to a failed message (pt-BR). Keyed by ProviderError.code; adapters may override.
STAFF_MESSAGES: dict[str, str] = {
    "timeout": "O servidor do WhatsApp demorou a responder. O sistema tentará de novo em instantes.",
    "provider_unavailable": (
        "O servidor do WhatsApp está indisponível no momento. O sistema tentará de novo em instantes."
    ),
    "rate_limited": "Muitas mensagens em pouco tempo. O sistema tentará de novo em instantes.",
    "invalid_config": "As configurações do canal de WhatsApp da clínica estão incompletas ou inválidas.",
    "unauthorized": "A chave da API do WhatsApp foi recusada. Verifique as configurações do canal da clínica.",
    "invalid_request": "O WhatsApp recusou esta mensagem por um erro no pedido.",
    "unsupported_kind": "Este tipo de mensagem não pode ser enviado por este canal de WhatsApp.",
    "media_too_large": "O arquivo é grande demais para ser enviado ou guardado.",
    "media_unavailable": "A mídia não está mais disponível no WhatsApp.",
    "unexpected_response": (
        "O WhatsApp respondeu de forma inesperada. Confira no celular da clínica se a mensagem foi entregue."
    ),
}


def provider_error(code: str, *, permanent: bool, status: int | None = None, staff_message: str = "") -> ProviderError:
    return ProviderError(code, staff_message or STAFF_MESSAGES[code], permanent=permanent, status=status)


# Failures before a single byte of the request reached the provider: no connection was ever made.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol, httpx.InvalidURL)


@contextmanager
def transport_errors() -> Iterator[None]:
    """Turn httpx's failures to reach the provider into ProviderErrors: a bad URL is permanent, the rest temporary.

    Each error also says whether the request may have reached the provider (`maybe_sent`): True after the connection
    was made (a read timeout, a dropped connection), when the provider may have acted on it — a message may have gone
    out, so the outbox must not send it again blindly; False when the connection was never made (safe to retry).
    Errors built from an HTTP answer carry no such attribute: the provider answered, and refused.
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        raise _transport_error("timeout", exc, permanent=False) from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise _transport_error("invalid_config", exc, permanent=True) from exc
    except httpx.TransportError as exc:
        raise _transport_error("provider_unavailable", exc, permanent=False) from exc


def _transport_error(code: str, exc: Exception, *, permanent: bool) -> ProviderError:
    error = provider_error(code, permanent=permanent)
    error.maybe_sent = not isinstance(exc, _NEVER_SENT)  # type: ignore[attr-defined]
    return error


def int64(value: object) -> int | None:
    """A 64-bit integer in every JSON form Evolution 2.2–2.3.7 writes; None when absent (null).

    ≤2.3.2 writes decimal strings (`"183245"`), 2.3.3–2.3.5 numbers, 2.3.6+ protobufjs Longs
    (`{"low": 183245, "high": 0, "unsigned": true}`, with `low`/`high` as signed 32-bit halves).
    Raises ValueError for anything else.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    if isinstance(value, Mapping) and {"low", "high"} <= value.keys():
        low, high = value["low"], value["high"]
        if not all(isinstance(half, int) and not isinstance(half, bool) for half in (low, high)):
            raise ValueError("Long halves must be integers")
        low, high = low & 0xFFFFFFFF, high & 0xFFFFFFFF
        if value.get("unsigned") is not True and high & 0x80000000:
            high -= 1 << 32  # a signed Long: the high half carries the sign
        return high * (1 << 32) + low
    raise ValueError("not an integer")


def unix_datetime(value: object) -> datetime.datetime | None:
    """Unix seconds (any int64 form) as an aware UTC datetime; None when absent. ValueError when out of range."""
    seconds = int64(value)
    if seconds is None:
        return None
    if not 0 < seconds < 32503680000:  # 3000-01-01: anything later is milliseconds or garbage
        raise ValueError("timestamp out of range")
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)


def decode_base64(value: str) -> bytes:
    """Raw base64 or a `data:…;base64,` URL to bytes. ValueError when it is not base64."""
    text = value.strip()
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc


def base64_fits(value: str, max_bytes: int) -> bool:
    """Whether base64 text can decode to at most `max_bytes`, checked before decoding (3 bytes per 4 characters)."""
    return len(value) // 4 * 3 <= max_bytes + 3


def read_capped(response: httpx.Response, max_bytes: int) -> bytes | None:
    """The body of a streamed response, or None as soon as it grows past `max_bytes` (nothing more is read)."""
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(content: bytes) -> Any:
    """A body's JSON, or None when it has none (empty, or not JSON: proxies answer HTML error pages)."""
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets; an empty expected secret never matches."""
    if not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    """HTTP header names are case-insensitive: index them in lower case."""
    return {str(name).lower(): value for name, value in headers.items() if isinstance(value, str)}


# --- reading untrusted JSON ------------------------------------------------------------------------------------------


def fail(path: str, problem: str = "is missing or has the wrong type") -> MalformedPayload:
    """The error for a body that lacks what its event needs; `details.field` names the JSON path."""
    return MalformedPayload(f"{path} {problem}", {"field": path})


def mapping(parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if not isinstance(value, Mapping):
        raise fail(path)
    return value


def text_field(parent: Mapping[str, Any], key: str, path: str) -> str:
    """A required, non-empty string."""
    value = parent.get(key)
    if not isinstance(value, str) or not value:
        raise fail(path)
    return value


def optional_text(parent: object, key: str) -> str:
    """A string when `parent` is an object holding one at `key`, else ""."""
    value = parent.get(key) if isinstance(parent, Mapping) else None
    return value if isinstance(value, str) else ""


def items(parent: Mapping[str, Any], key: str, path: str) -> list[Any]:
    """An optional list (absent or null → empty)."""
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(path, "is not a list")
    return value
