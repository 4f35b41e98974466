"""Benchmark of the reminder sweep: 10,000 due reminders → 10,000 queued messages with their sends enqueued.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cecilia_bench REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python -m bench.reminders [--repeat 3] [--batch 500] [--redis-db 12] [--rebuild]

`outreach_sweep(now=AS_OF)` runs in-process exactly as the beat task runs it: each batch claims its steps
(`FOR UPDATE SKIP LOCKED`), renders and writes the messages and the steps' new status in one transaction, and on
commit publishes one `message_send_task` per message to Redis — the bench's own database `--redis-db`, flushed
before and after, with no worker consuming it, so the tasks are counted there afterwards (10,000 expected). Nothing
is patched: the time includes the publishing. A cold sweep finds no conversations (it creates 10,000 in bulk); a warm
one finds them (the usual case: patients who booked have written before).

The floors, measured in the same run: **bulk_create** of the same 10,000 Message rows (the warm sweep's text,
buttons, conversation and step, read back and written again with `Message.objects.bulk_create(batch_size=500)` in
one transaction: what writing the rows costs at the least), and **publish** of 10,000 `message_send_task`s with
`apply_async` (what enqueuing costs at the least). One more warm sweep under `CaptureQueriesContext` counts the
queries (they must not grow with the steps: a fixed number per batch).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import Counter
from typing import Any

from bench import BenchSetupError, django_start, percentile, redis_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reminders", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--batch", type=int, default=500, help="the sweep's batch size (default 500, the product's)")
    parser.add_argument("--redis-db", type=int, default=12, help="Redis database of the bench, flushed (default 12)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the bench clinic even if it is complete")
    parser.add_argument(
        "--any-database", action="store_true", help="allow a database whose name does not contain 'bench'"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.batch < 1:
        parser.error("--repeat and --batch must be at least 1")
    if args.redis_db == 0:
        parser.error("--redis-db 0 is the development database; the bench flushes its own, pick another")

    began = time.perf_counter()
    broker = redis_url(args.redis_db)
    os.environ["REDIS_URL"] = os.environ["CELERY_BROKER_URL"] = broker
    try:
        database = django_start(require_bench_database=not args.any_database)
    except BenchSetupError as exc:
        print(f"bench.reminders: {exc}", file=sys.stderr)
        return 2
    import redis

    client = redis.Redis.from_url(broker)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        print(f"bench.reminders: cannot reach Redis at {broker}: {exc}", file=sys.stderr)
        return 2
    try:
        return _run(args, database, client, began)
    finally:
        client.flushdb()


def _run(args: argparse.Namespace, database: str, client: Any, began: float) -> int:
    import django
    from django.db import connection

    from bench.reminders.dataset import AS_OF, STEPS, bench_data_get_or_build, reset

    data = bench_data_get_or_build(rebuild=args.rebuild)
    clinic = data.clinic
    print(
        f"Database {database} (PostgreSQL {connection.pg_version // 10000}), Redis database {args.redis_db} "
        f"(flushed); clinic {clinic.slug!r} with {STEPS:,} appointments, one 48 h reminder each due by "
        f"{AS_OF:%Y-%m-%d %H:%M %z}, {'built' if data.built else 'reused'} in {data.seconds:.1f} s."
    )
    print(
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; Python {platform.python_version()}, "
        f"Django {django.get_version()}; batch {args.batch}; {args.repeat} measured rounds after one warm-up.\n"
    )
    timings: dict[str, list[float]] = {"sweep, cold": [], "sweep, warm": [], "bulk_create": [], "publish": []}
    problems: list[str] = []
    for round_number in range(args.repeat + 1):
        measured = round_number > 0
        for cold in (True, False):
            reset(clinic, cold=cold)
            client.flushdb()
            seconds, result = _sweep(AS_OF, args.batch)
            problems += _check(clinic, result, client, STEPS)
            if measured:
                timings[f"sweep, {'cold' if cold else 'warm'}"].append(seconds)
        rows = _rows_of(clinic)
        reset(clinic, cold=False)
        seconds = _bulk_create(rows)
        client.flushdb()
        if measured:
            timings["bulk_create"].append(seconds)
            timings["publish"].append(_publish([row["reminder_step_id"] for row in rows]))
        client.flushdb()
    reset(clinic, cold=False)
    queries, publishing = _counted_sweep(AS_OF, args.batch)
    reset(clinic, cold=False)
    _print(timings, queries, publishing, STEPS, args.batch)
    if problems:
        print("\nPROBLEMS:\n  " + "\n  ".join(sorted(set(problems))))
    print(f"\nTotal {time.perf_counter() - began:.0f} s; load average {os.getloadavg()[0]:.2f} at the end.")
    return 1 if problems else 0


def _sweep(now: Any, batch: int) -> tuple[float, Any]:
    from conversations.outreach import outreach_sweep

    started = time.perf_counter()
    result = outreach_sweep(now=now, batch=batch)
    return time.perf_counter() - started, result


def _check(clinic: Any, result: Any, client: Any, steps: int) -> list[str]:
    from conversations.models import Message
    from scheduling.models import ReminderStep, StepStatus

    problems = []
    if result.queued != steps:
        problems.append(f"the sweep queued {result.queued}, not {steps} ({result.as_dict()})")
    messages = Message.objects.filter(clinic=clinic).count()
    if messages != steps:
        problems.append(f"{messages} messages written, not {steps}")
    queued = ReminderStep.objects.filter(clinic=clinic, status=StepStatus.QUEUED).count()
    if queued != steps:
        problems.append(f"{queued} steps queued, not {steps}")
    tasks = client.llen("celery")
    if tasks != steps:
        problems.append(f"{tasks} send tasks in the broker, not {steps}")
    return problems


def _rows_of(clinic: Any) -> list[dict[str, Any]]:
    from conversations.models import Message

    fields = ("clinic_id", "conversation_id", "direction", "author", "kind", "text", "status", "buttons")
    return list(Message.objects.filter(clinic=clinic).values(*fields, "reminder_step_id"))


def _bulk_create(rows: list[dict[str, Any]]) -> float:
    from django.db import transaction

    from conversations.models import Message

    messages = [Message(**row) for row in rows]  # built outside the timing
    started = time.perf_counter()
    with transaction.atomic():
        Message.objects.bulk_create(messages, batch_size=500)
    return time.perf_counter() - started


def _publish(ids: list[int]) -> float:
    from conversations.outbox.tasks import message_send_task

    started = time.perf_counter()
    for message_id in ids:
        message_send_task.apply_async((message_id,))
    return time.perf_counter() - started


def _counted_sweep(now: Any, batch: int) -> tuple[Counter[str], float]:
    """One more warm sweep with every query recorded, and the time its on-commit publishing took (measured by
    wrapping the outbox's publish function, which still runs)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from conversations.outbox import queueing

    spent = [0.0]
    publish = queueing._publish

    def timed(ids: Any) -> None:
        started = time.perf_counter()
        publish(ids)
        spent[0] += time.perf_counter() - started

    queueing._publish = timed
    try:
        with CaptureQueriesContext(connection) as captured:
            _sweep(now, batch)
    finally:
        queueing._publish = publish
    kinds: Counter[str] = Counter()
    for query in captured.captured_queries:
        sql = query["sql"].lstrip()
        kinds[sql.split(None, 1)[0].upper()] += 1
    return kinds, spent[0]


def _print(timings: dict[str, list[float]], queries: Counter[str], publishing: float, steps: int, batch: int) -> None:
    floor = percentile(timings["bulk_create"], 50)
    print(f"{'':24}{'p50 s':>8}{'min s':>8}{'max s':>8}{'µs/step':>9}{'× floor':>9}")
    for label, samples in timings.items():
        p50 = percentile(samples, 50)
        print(f"{label:24}{p50:8.2f}{min(samples):8.2f}{max(samples):8.2f}{p50 / steps * 1e6:9.0f}{p50 / floor:9.1f}")
    total = sum(queries.values())
    batches = -(-steps // batch)
    detail = ", ".join(f"{kind} {count}" for kind, count in queries.most_common())
    print(f"\nQueries of one warm sweep: {total} for {steps:,} steps in {batches} batches ({detail}).")
    print(f"Of that sweep's time, publishing the {steps:,} send tasks on commit took {publishing:.2f} s.")
