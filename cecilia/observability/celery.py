"""Carry the correlation id from a request into the Celery tasks it enqueues, and from a task into its children.

Publishing copies the current id into the message headers; the worker makes it current for the run of the task and
restores the previous one afterwards. A task published with no id (by beat, or from a shell) gets a fresh one, so
its log lines and those of the tasks it enqueues still share an id. Celery's signals are process-wide, so connecting
once per process covers every Celery app; `connect_celery_signals()` runs on import and is idempotent.
"""

from __future__ import annotations

from contextvars import Token
from typing import Any

from celery import signals

from cecilia.observability.context import (
    clean_correlation_id,
    get_correlation_id,
    new_correlation_id,
    reset_correlation_id,
    set_correlation_id,
)

# Not "correlation_id": Celery already uses that name for the task id in the message properties.
HEADER = "cecilia_correlation_id"

# task id -> token of the id set in task_prerun. prerun and postrun run in the same thread (or greenlet) for every
# Celery pool, so the token is reset in the context that created it.
_tokens: dict[str, Token[str | None]] = {}


def on_before_task_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Put the current correlation id in the task's headers; mask the args Celery will print in its log lines."""
    if headers is None:
        return
    cid = get_correlation_id()
    if cid and not headers.get(HEADER):
        headers[HEADER] = cid
    # argsrepr/kwargsrepr are display-only copies of the arguments, shown in the worker's "received" lines, events
    # and `celery inspect`; masking them at the source keeps phone numbers out of all of those.
    from cecilia.observability.logging import mask_text

    for key in ("argsrepr", "kwargsrepr"):
        if isinstance(headers.get(key), str):
            headers[key] = mask_text(headers[key])


def on_task_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """Make the task's correlation id current: from its headers, else the caller's (eager runs), else a new one."""
    incoming = clean_correlation_id(task.request.get(HEADER)) if task is not None else None
    cid = incoming or get_correlation_id() or new_correlation_id()
    if task_id is not None:
        _tokens[task_id] = set_correlation_id(cid)


def on_task_postrun(task_id: str | None = None, **_: Any) -> None:
    """Restore the correlation id that was current before the task ran."""
    token = _tokens.pop(task_id, None) if task_id is not None else None
    if token is None:
        return
    try:
        reset_correlation_id(token)
    except ValueError:  # created in another context: never leave the task's id behind
        set_correlation_id(None)


def connect_celery_signals() -> None:
    """Connect the three handlers (safe to call more than once: each has a dispatch uid)."""
    signals.before_task_publish.connect(on_before_task_publish, weak=False, dispatch_uid="cecilia.correlation.publish")
    signals.task_prerun.connect(on_task_prerun, weak=False, dispatch_uid="cecilia.correlation.prerun")
    signals.task_postrun.connect(on_task_postrun, weak=False, dispatch_uid="cecilia.correlation.postrun")


connect_celery_signals()
