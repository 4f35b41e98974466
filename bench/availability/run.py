"""Benchmark of availability: the next 60 days of free slots for 30 professionals over 20,000 appointments.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cecilia_bench REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python -m bench.availability [--repeat 30] [--warmup 3] [--rebuild] [--verbose]

Each scenario calls the selector in-process (no HTTP), `--warmup` times unmeasured, then `--repeat` measured rounds
that run every scenario once (interleaved, so whatever else the machine does spreads over all alike). Measured: the
wall time of the call (queries, row conversion, the interval arithmetic, building the Slot objects), the number of
queries (CaptureQueriesContext) and the time spent executing them. The floor is a trivial query in the same run:
one row by primary key through the ORM. The service is re-read (with its clinic) before each call, outside the
timing, as a view would have it in hand. Google Calendar is the repository's stub (no calendars configured).

Claims checked: (1) the query count is the same for 1 day and 60 days, for 1 professional and 30 — exit status 1
when it is not; (2) the 60-day search for 30 professionals has a median of at most 50 ms (printed PASS/MISS).
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import BenchSetupError, dataset_bench_args, dataset_bench_parser, django_start, machine_line, percentile

TARGET_MS = 50.0


@dataclass
class Scenario:
    label: str
    call: Callable[[Any], Any]  # takes the freshly read service, returns what the selector returned
    service: str = "consultation"


@dataclass
class Result:
    scenario: Scenario
    times_ms: list[float] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)
    returned: int = 0
    last_sql: list[tuple[str, float]] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return percentile(self.times_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.times_ms, 99)


def main(argv: list[str] | None = None) -> int:
    parser = dataset_bench_parser(
        name="availability",
        doc=__doc__,
        repeat=30,
        repeat_help="measured rounds",
        warmup_help="unmeasured calls of each scenario first",
        verbose_help="print each scenario's SQL with its time",
        rebuild_help="rebuild the bench clinic even if it is complete",
    )
    args = dataset_bench_args(parser, argv)

    began = time.perf_counter()
    try:
        database = django_start(require_bench_database=not args.any_database)
    except BenchSetupError as exc:
        print(f"bench.availability: {exc}", file=sys.stderr)
        return 2

    from django.db import connection

    from bench.availability.dataset import APPOINTMENTS, AS_OF, PROFESSIONALS, bench_data_get_or_build, holds_refresh

    data = bench_data_get_or_build(rebuild=args.rebuild)
    holds_refresh(data)
    how = "built" if data.built else "reused"
    print(
        f"Database {database} (PostgreSQL {connection.pg_version // 10000}): clinic {data.clinic.slug!r} with "
        f"{PROFESSIONALS} professionals and {APPOINTMENTS:,} appointments, {how} in {data.seconds:.1f} s."
    )
    print(
        f"{machine_line()}. Now = {AS_OF:%Y-%m-%d %H:%M %z} (fixed); each scenario {args.warmup}× "
        f"warm-up, then {args.repeat} measured rounds.\n"
    )
    results = _measure_all(_scenarios(data, AS_OF), data, repeat=args.repeat, warmup=args.warmup)
    _print_table(results)
    failures = _print_claims(results)
    if args.verbose:
        _print_sql(results)
    print(f"\nTotal {time.perf_counter() - began:.0f} s; load average {os.getloadavg()[0]:.2f} at the end.")
    return 1 if failures else 0


def _scenarios(data: Any, now: Any) -> list[Scenario]:
    import datetime

    from scheduling.availability import free_slots, next_available
    from scheduling.models import Professional

    day = datetime.timedelta(days=1)
    one = data.professionals[1]  # works Monday to Friday
    first_pk = data.professionals[0].pk
    tomorrow = now.replace(hour=0) + day

    def trivial(_service: Any) -> Any:
        return Professional.objects.filter(pk=first_pk).values_list("pk", flat=True).first()

    return [
        Scenario("trivial query (floor)", trivial),
        Scenario(
            "free_slots 60 days × 30 professionals",
            lambda svc: free_slots(service=svc, start=now, end=now + 60 * day, now=now),
        ),
        Scenario(
            "free_slots 60 days × 30, staff (no policy)",
            lambda svc: free_slots(service=svc, start=now, end=now + 60 * day, now=now, enforce_policy=False),
        ),
        Scenario(
            "free_slots 60 days × 10, 60-min + buffers",
            lambda svc: free_slots(service=svc, start=now, end=now + 60 * day, now=now),
            service="procedure",
        ),
        Scenario(
            "free_slots 1 day × 30 professionals",
            lambda svc: free_slots(service=svc, start=tomorrow, end=tomorrow + day, now=now),
        ),
        Scenario(
            "free_slots 1 day × 1 professional",
            lambda svc: free_slots(service=svc, professional=one, start=tomorrow, end=tomorrow + day, now=now),
        ),
        Scenario(
            "free_slots 60 days × 1 professional",
            lambda svc: free_slots(service=svc, professional=one, start=now, end=now + 60 * day, now=now),
        ),
        Scenario("next_available ×3, 30 professionals", lambda svc: next_available(service=svc, now=now)),
        Scenario(
            "next_available ×3, afternoon",
            lambda svc: next_available(service=svc, now=now, part_of_day="afternoon"),
        ),
    ]


def _measure_all(scenarios: list[Scenario], data: Any, *, repeat: int, warmup: int) -> list[Result]:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    from scheduling.models import Service

    pks = {"consultation": data.consultation.pk, "procedure": data.procedure.pk}
    results = [Result(s) for s in scenarios]

    def fresh(result: Result) -> Any:
        return Service.objects.select_related("clinic").get(pk=pks[result.scenario.service])

    for result in results:
        for _ in range(warmup):
            result.scenario.call(fresh(result))
    gc.collect()
    for _ in range(repeat):
        for result in results:
            service = fresh(result)
            reset_queries()
            timer = _SqlTimer()
            with connection.execute_wrapper(timer), CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                returned = result.scenario.call(service)
                elapsed = time.perf_counter() - started
            result.times_ms.append(elapsed * 1000)
            result.queries.append(len(captured.captured_queries))
            result.sql_ms.append(sum(timer.seconds) * 1000)
            result.returned = len(returned) if isinstance(returned, list) else 1
            result.last_sql = [
                (q["sql"], sec * 1000) for q, sec in zip(captured.captured_queries, timer.seconds, strict=True)
            ]
    return results


class _SqlTimer:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds.append(time.perf_counter() - started)


def _print_table(results: list[Result]) -> None:
    floor = results[0]
    header = ("scenario", "returned", "queries", "p50 ms", "p99 ms", "SQL p50 ms", "× floor")
    lines = [
        (
            r.scenario.label,
            f"{r.returned:,}",
            str(max(r.queries)) + ("" if min(r.queries) == max(r.queries) else f" (min {min(r.queries)})"),
            f"{r.p50:.2f}",
            f"{r.p99:.2f}",
            f"{percentile(r.sql_ms, 50):.2f}",
            f"{r.p50 / floor.p50:.0f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in (header, *lines)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *lines):
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def _print_claims(results: list[Result]) -> int:
    failures = 0
    searches = [r for r in results if r.scenario.label.startswith("free_slots")]
    counts = {max(r.queries) for r in searches}
    steady = len(counts) == 1
    failures += not steady
    print(
        f"\nQueries per search: {sorted(counts)} — "
        + ("the same for 1 or 60 days, 1 or 30 professionals." if steady else "NOT constant: see -v.")
    )
    main = next(r for r in results if r.scenario.label == "free_slots 60 days × 30 professionals")
    verdict = "PASS" if main.p50 <= TARGET_MS else "MISS"
    print(f"60 days × 30 professionals: median {main.p50:.1f} ms (target ≤ {TARGET_MS:.0f} ms): {verdict}.")
    return failures


def _print_sql(results: list[Result]) -> None:
    for r in results:
        total = sum(ms for _sql, ms in r.last_sql)
        print(f"\n-- {r.scenario.label}: {len(r.last_sql)} queries, {total:.1f} ms")
        for sql, ms in r.last_sql:
            print(f"   {ms:6.2f} ms  {sql[:300]}")


if __name__ == "__main__":
    sys.exit(main())
