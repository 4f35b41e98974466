"""Database connections in the Celery worker: kept between tasks, as gunicorn's threads keep theirs between requests.

Celery's Django fixup closes every connection after every task unless CELERY_DB_REUSE_MAX is set, so each task
opened a new PostgreSQL connection (TCP, authentication, session set-up: a few milliseconds, on three tasks in a row
for every patient message). The worker's processes are a fixed set, like gunicorn's threads, so they keep theirs:

* `worker_init` (the main process, before the pool forks) makes DB_CONN_MAX_AGE 60 seconds in the worker unless the
  deployment set it, as `cecilia/gunicorn_conf.py` does for the web. The age is checked when a task starts or ends,
  so an idle process keeps its one connection until its next task: plan `max_connections` for one per worker process
  (and per web thread). The children still drop what they inherited (the fixup closes them in
  `worker_process_init`), so no connection is shared across a fork. Not under gevent or eventlet, whose every task
  runs in a new green thread with a connection of its own: kept, those would pile up.
* Around every task Django's own rule decides, as around a request (`close_old_connections`): a connection past its
  age, broken, or left with autocommit off or a failed transaction is closed; CONN_HEALTH_CHECKS pings a kept one
  before its first query, so a PostgreSQL restart costs a reconnect, not a failed task.
* CELERY_DB_REUSE_MAX (settings) turns the fixup's own close into a recycle every that many tasks.

Eager runs (a test calling a task inline) are left alone: the caller owns the connection and its transaction.
"""

from __future__ import annotations

import os
from typing import Any

from celery import signals
from django.conf import settings
from django.db import close_old_connections

WORKER_CONN_MAX_AGE = 60


def on_worker_init(sender: Any = None, **_: Any) -> None:
    """Keep connections for a minute in the worker, unless DB_CONN_MAX_AGE says otherwise (or the pool is green)."""
    if "DB_CONN_MAX_AGE" in os.environ:
        return
    pool = getattr(getattr(sender, "pool_cls", None), "__module__", "") or ""
    if "gevent" in pool or "eventlet" in pool:
        return
    for database in settings.DATABASES.values():
        database["CONN_MAX_AGE"] = WORKER_CONN_MAX_AGE


def on_task_boundary(task: Any = None, **_: Any) -> None:
    """Before and after each task: close the connections Django would close at a request's start and end."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    close_old_connections()


def connect_worker_db_signals() -> None:
    """Connect the handlers (safe to call more than once: each has a dispatch uid)."""
    signals.worker_init.connect(on_worker_init, weak=False, dispatch_uid="cecilia.worker_db.init")
    signals.task_prerun.connect(on_task_boundary, weak=False, dispatch_uid="cecilia.worker_db.prerun")
    signals.task_postrun.connect(on_task_boundary, weak=False, dispatch_uid="cecilia.worker_db.postrun")


connect_worker_db_signals()
