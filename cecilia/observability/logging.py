"""Log filters and formatters: a correlation id on every line, and no personal data or secret on any (Invariant 7).

Settings attach `CorrelationIdFilter` then `SensitiveDataFilter` to the one handler, and format with `JsonFormatter`
(production: one JSON object per line) or `ConsoleFormatter` (terminals: one readable line).

What `SensitiveDataFilter` masks, in the final message (args merged in), every `extra` field, the exception text and
the stack text:
- phone numbers: E.164 (`+5511987654321`), bare 11–15 digit runs (`5511987654321`, also an unformatted CPF),
  WhatsApp JIDs (`...@s.whatsapp.net`, `@c.us`, `@g.us`, `@lid`), `(11) 98765-4321`, `11 98765-4321`, `98765-4321`;
- CPF (`123.456.789-09`), e-mail addresses (also `%40`-encoded), `Bearer`/`Basic` credentials, URL passwords,
  OpenAI keys (`sk-…`), Google tokens (`ya29.…`), JWTs;
- the value of any `key=value`, `key: value` or `"key": "value"` pair whose key ends in api_key, token, secret,
  password, authorization, signature, cookie or sessionid; free-text query parameters (`?q=`, `&text=`, ...);
- the value of any `extra` field (at any depth) whose key names personal data or a secret (`text`, `body`, `message`,
  `caption`, `phone`, `cpf`, `email`, `payload`, `token`, `api_key`, `password`, ...), by key alone.
Deliberately not masked, so logs stay useful: ISO timestamps, 10-digit numbers (epoch seconds look like landlines
without area-code punctuation), 13-digit numbers starting with 1 (epoch milliseconds: no phone has that shape), ids
and counts (`message_id`, `text_length`, `prompt_tokens`), UUIDs and hex ids, status codes and durations.
Free text interpolated into a message ("got %s" % text) cannot be recognised: pass it as `extra={"text": ...}`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from uuid import UUID

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from cecilia.observability.context import get_correlation_id

REDACTED = "[redacted]"

# --- Free-text rules ---------------------------------------------------------------------------------------------
# One alternation, one pass per string. Each rule is (name, pattern, marker): when the pattern has a group named
# `<name>_v`, only that group is replaced (the key or scheme stays readable); otherwise the whole match is.
# Every rule starts with a lookbehind pinning it to the start of a token: without it, a rule like `\w*token` would
# retry at every character of a long base64 blob (quadratic time on every log line).
_HIDDEN_VALUE_KEYS = (
    r"[A-Za-z0-9_.-]*?(?:api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key|token|secret|password|passwd"
    r"|authorization|signature|cookie|sessionid)"
)
_KV_VALUE = r"""\\"[^"]*?\\"|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|(?:(?:bearer|basic|token)\s+)?[^\s&,;"'<>(){}\[\]]+"""
_RULES: tuple[tuple[str, str, str], ...] = (
    ("url", r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://[^\s/:@]*:(?P<url_v>[^\s/@]+)@", REDACTED),
    ("bearer", r"\b(?:bearer|basic)\s+(?P<bearer_v>[A-Za-z0-9._~+/-]{8,}=*)", REDACTED),
    ("kv", rf"(?<![A-Za-z0-9_.-]){_HIDDEN_VALUE_KEYS}\\?[\"']?\s*[:=]\s*(?P<kv_v>{_KV_VALUE})", REDACTED),
    ("qs", r"(?<=[?&])(?:q|query|search|text|body|message|msg|caption)=(?P<qs_v>[^&\s\"'#]+)", REDACTED),
    (
        "secret",
        r"(?<![A-Za-z0-9_-])(?:sk-[A-Za-z0-9_-]{16,}|ya29\.[A-Za-z0-9_.-]{10,}"
        r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)",
        "[redacted:secret]",
    ),
    (
        "jid",
        r"(?<![A-Za-z0-9-])\d[\d-]{5,40}(?::\d+)?@(?:s\.whatsapp\.net|c\.us|g\.us|lid|broadcast)",
        "[redacted:jid]",
    ),
    (
        "email",
        r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
        r"(?![A-Za-z0-9-])",
        "[redacted:email]",
    ),
    ("cpf", r"(?<![A-Za-z0-9.])\d{3}\.\d{3}\.\d{3}-\d{2}(?![A-Za-z0-9])", "[redacted:cpf]"),
    ("intl", r"(?<![A-Za-z0-9+])\+\d(?:[\s().-]{0,2}\d){7,14}(?!\d)", "[redacted:phone]"),
    # Brazilian numbers with an area code and punctuation: (11) 98765-4321, 11 98765-4321, 11 9 8765-4321.
    (
        "br",
        r"(?<![A-Za-z0-9.+-])(?:\(\d{2}\)\s?|\d{2}[\s.-])(?:9[\s.]?)?\d{4}[\s.-]?\d{4}(?![A-Za-z0-9-])",
        "[redacted:phone]",
    ),
    # Local numbers: 98765-4321, 3234-5678 (never 1xxx, and a year range like 2025-2026 is not a phone).
    (
        "local",
        r"(?<![A-Za-z0-9.-])(?!(?:19|20)\d\d-(?:19|20)\d\d(?!\d))9?[2-9]\d{3}-\d{4}(?![A-Za-z0-9-])",
        "[redacted:phone]",
    ),
    # Bare digit runs: phones with or without country code, unformatted CPFs. Letters or dashes around them mean a
    # hex id or a UUID, a dot before means a fraction; 13 digits starting with 1 are epoch milliseconds.
    ("number", r"(?<![A-Za-z0-9.-])(?!1\d{12}(?!\d))\d{11,15}(?![A-Za-z0-9-])", "[redacted:number]"),
)
_MASK_RE = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern, _ in _RULES), re.IGNORECASE)
_MARKERS = {name: marker for name, _, marker in _RULES}


def _replace(match: re.Match[str]) -> str:
    name = match.lastgroup or ""
    marker = _MARKERS[name]
    value_group = f"{name}_v"
    if value_group not in _MASK_RE.groupindex or match.start(value_group) < 0:
        return marker
    value = match.group(value_group)
    quote = value[0] if value[0] in "\"'" else ""  # keep JSON-ish text JSON-ish
    text, start = match.group(name), match.start(name)
    before, after = text[: match.start(value_group) - start], text[match.end(value_group) - start :]
    return before + quote + marker + quote + after


def mask_text(text: str) -> str:
    """Return `text` with every phone number, CPF, e-mail, credential and secret value replaced by a marker."""
    return _MASK_RE.sub(_replace, text)


# --- Structured values (extra fields, dict messages) ---------------------------------------------------------------
# The word lists read better packed than one word per line.
# fmt: off
_TEXT_WORDS = frozenset({
    "text", "body", "message", "messages", "caption", "content", "transcript", "transcription", "prompt", "completion",
})
_SENSITIVE_WORDS = _TEXT_WORDS | frozenset({
    "phone", "phones", "msisdn", "jid", "cpf", "email", "emails", "payload", "token", "secret", "password", "passwd",
    "authorization", "cookie", "cookies", "signature", "apikey", "sessionid", "credentials",
})
_SENSITIVE_COMPOUNDS = ("apikey", "accesskey", "secretkey", "privatekey", "waid", "remotejid", "pushname", "fullname")
# A key ending in one of these describes the data (an id, a size, a type) rather than holding it.
_DESCRIPTIVE_ENDINGS = frozenset({
    "id", "ids", "pk", "count", "type", "status", "length", "len", "size", "bytes", "at", "kind", "format", "tokens",
    "ms", "seconds",
})
# fmt: on
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
_SAFE_SCALARS = (bool, float, type(None), datetime, date, time, timedelta, UUID, Decimal)
_MAX_DEPTH = 8


@lru_cache(maxsize=2048)
def _key_kind(key: str) -> str | None:
    """Classify a field name: "text" (a message text), "secret" (any other sensitive value) or None (harmless)."""
    words = [w for w in _WORD_SPLIT.split(_CAMEL.sub(r"\1_\2", key).lower()) if w]
    if not words or words[-1] in _DESCRIPTIVE_ENDINGS:
        return None
    if any(w in _TEXT_WORDS for w in words):
        return "text"
    joined = "".join(words)
    if any(w in _SENSITIVE_WORDS for w in words) or any(c in joined for c in _SENSITIVE_COMPOUNDS):
        return "secret"
    return None


def is_sensitive_key(key: str) -> bool:
    """True when a field named `key` holds personal data or a secret and its value must never be logged."""
    return _key_kind(key) is not None


def _redact(value: Any, kind: str) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if kind == "text" and isinstance(value, str):
        return f"[redacted {len(value)} chars]"
    return REDACTED


def mask_value(value: Any, key: str | None = None, _depth: int = 0) -> Any:
    """Return a JSON-friendly copy of `value` with sensitive fields redacted by name and free text masked.

    Mappings and sequences are walked (keys decide, then values are masked); objects become their masked `str()`.
    """
    kind = _key_kind(key) if isinstance(key, str) else None
    if kind is not None:
        return _redact(value, kind)
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        # A phone number passed as an int; small ids and epoch seconds stay numbers.
        return value if abs(value) < 10**10 or mask_text(str(value)) == str(value) else "[redacted:number]"
    if isinstance(value, _SAFE_SCALARS):
        return value
    if _depth >= _MAX_DEPTH:
        return "[truncated]"
    if isinstance(value, Mapping):
        return {str(k): mask_value(v, str(k), _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_value(v, None, _depth + 1) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return mask_value(dataclasses.asdict(value), None, _depth + 1)
    return mask_text(str(value))


# --- Filters -------------------------------------------------------------------------------------------------------
_MASKED_FLAG = "_cecilia_masked"
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "correlation_id",
    _MASKED_FLAG,
}
_TRACEBACKS = logging.Formatter()


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return the fields a record got through `extra=` (masked already when `SensitiveDataFilter` ran)."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class CorrelationIdFilter(logging.Filter):
    """Set `record.correlation_id`: the current id, else the id of the request the record is about, else "-".

    The fallback matters for Django's "Not Found: /path" lines: Django writes them after every middleware returned,
    when the context variable is already reset, but it passes the request along.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        cid = get_correlation_id() or getattr(record, "correlation_id", None)
        if not isinstance(cid, str) or cid == "-":
            cid = getattr(getattr(record, "request", None), "correlation_id", None)
        record.correlation_id = cid if isinstance(cid, str) and cid else "-"
        return True


class SensitiveDataFilter(logging.Filter):
    """Mask personal data and secrets in a record before any formatter sees it; never drops a record.

    The message is rendered once (args merged) and masked, so no formatter can put the raw args back; extra fields,
    exception and stack text are masked too. A record is masked once even when several handlers carry this filter.
    If masking itself fails the line is replaced by a notice rather than written unmasked.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _MASKED_FLAG, False):
            return True
        try:
            _mask_record(record)
        except Exception:  # a log call must never raise, nor leak what it could not mask
            _blank_record(record)
        setattr(record, _MASKED_FLAG, True)
        return True


def _mask_record(record: logging.LogRecord) -> None:
    if isinstance(record.msg, Mapping) and not record.args:
        record.msg = mask_value(record.msg)  # python-json-logger's dict messages stay dicts
    else:
        record.msg = mask_text(_render_message(record))
        record.args = ()
    for key, value in extra_fields(record).items():
        setattr(record, key, mask_value(value, key))
    cid = getattr(record, "correlation_id", None)
    if isinstance(cid, str):
        record.correlation_id = mask_text(cid)
    if record.exc_info and not record.exc_text:
        record.exc_text = _TRACEBACKS.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask_text(record.exc_text)
    if record.stack_info:
        record.stack_info = mask_text(record.stack_info)


def _render_message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError, KeyError):  # a format/args mismatch must not cost the line (nor raise)
        return f"{record.msg} {record.args!r}"


def _blank_record(record: logging.LogRecord) -> None:
    record.msg, record.args = "[log line withheld: masking failed]", ()
    record.exc_info = record.exc_text = record.stack_info = None
    for key in extra_fields(record):
        setattr(record, key, REDACTED)


# --- Formatters ----------------------------------------------------------------------------------------------------
def _utc_iso(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_default(value: Any) -> Any:
    """Encode what json cannot (a backstop: the filter has already turned extras into JSON-friendly values)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return mask_value(value) if dataclasses.is_dataclass(value) else mask_text(str(value))


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per line: timestamp (ISO-8601 UTC), level, logger, message, correlation_id, the extra fields,
    and `exception` (the traceback text) when there is one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, *_STANDARD_ATTRS])
        kwargs.setdefault("rename_fields", {"exc_info": "exception"})
        kwargs.setdefault("json_default", _json_default)
        kwargs.setdefault("json_ensure_ascii", False)  # pt-BR stays readable
        super().__init__(*args, **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["timestamp"] = _utc_iso(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        log_data["correlation_id"] = getattr(record, "correlation_id", None) or "-"
        super().add_fields(log_data, record, message_dict)

    def formatException(self, ei: Any) -> str:
        # python-json-logger formats from exc_info, not from the masked exc_text: mask here too.
        return mask_text(str(super().formatException(ei)))


class ConsoleFormatter(logging.Formatter):
    """One readable line for terminals: `<UTC time> <LEVEL> <logger> [<correlation id>] <message> key=value ...`,
    followed by the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        cid = getattr(record, "correlation_id", None) or "-"
        extras = "".join(f" {key}={value!r}" for key, value in extra_fields(record).items())
        lines = [f"{_utc_iso(record.created)} {record.levelname:<7} {record.name} [{cid}] {record.message}{extras}"]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            lines.append(record.exc_text)
        if record.stack_info:
            lines.append(self.formatStack(record.stack_info))
        return "\n".join(lines)

    def formatException(self, ei: Any) -> str:
        return mask_text(super().formatException(ei))
