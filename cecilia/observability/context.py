"""The correlation id of the work in progress: one per HTTP request or Celery task, shared with the tasks it enqueues.

The id lives in a `ContextVar`, so it is right under threads (WSGI), asyncio tasks (ASGI, daphne) and Celery workers
alike. Whoever sets it resets it with the token `set_correlation_id` returned, so an id never leaks into the next
request or task served by the same thread or event loop.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

# Incoming ids are echoed in a response header and written to every log line: only short, plain tokens are trusted.
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

_correlation_id: ContextVar[str | None] = ContextVar("cecilia_correlation_id", default=None)


def get_correlation_id() -> str | None:
    """Return the current correlation id, or None outside a request or task."""
    return _correlation_id.get()


def set_correlation_id(value: str | None) -> Token[str | None]:
    """Make `value` the current correlation id; pass the returned token to `reset_correlation_id` when done."""
    return _correlation_id.set(value)


def reset_correlation_id(token: Token[str | None]) -> None:
    """Restore the correlation id that was current before the `set_correlation_id` call that returned `token`."""
    _correlation_id.reset(token)


def new_correlation_id() -> str:
    """Return a fresh id: 32 hex characters (uuid4), never confused with a phone number by the log masking."""
    return uuid.uuid4().hex


def clean_correlation_id(value: object) -> str | None:
    """Return `value` when it is a sane id (at most 64 of `A-Z a-z 0-9 . _ -`), else None.

    Ids that look like personal data (a phone number, a CPF) are refused too: the id is written unmasked to every log
    line, so a client must not be able to smuggle a phone number into the logs through it.
    """
    if not isinstance(value, str) or not _SANE_ID.fullmatch(value):
        return None
    # Imported here: the masking rules live with the log filters, which import this module.
    from cecilia.observability.logging import mask_text

    return value if mask_text(value) == value else None


@contextmanager
def correlation_scope(value: str | None = None) -> Iterator[str]:
    """Run a block under `value` (or a fresh id) as the correlation id, restoring the previous one afterwards.

    For management commands, scripts and tests: `with correlation_scope() as cid: ...`.
    """
    cid = value or new_correlation_id()
    token = set_correlation_id(cid)
    try:
        yield cid
    finally:
        reset_correlation_id(token)
