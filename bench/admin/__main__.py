"""Benchmark of the admin changelists: server time and SQL queries per page, at 50, 100 and 200 rows a page.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cecilia_bench REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python -m bench.admin [--repeat 20] [--warmup 3] [--rebuild] [--verbose]

A receptionist of the bench clinic (10,000 patients, 50,000 appointments; see `dataset`) is logged in with Django's
test Client. Each page is requested `--warmup` times, then measured in `--repeat` rounds that request every page once:
the wall time of the in-process request (middleware, view, queries, template rendering; no network), the queries it
ran (CaptureQueriesContext) and the time spent executing them (a database execute wrapper). Two floors frame the
numbers: a bare view (the middleware stack alone) and the admin index (the admin's own chrome and permission checks).

Claims checked: (1) the number of queries a changelist runs does not grow with the page size (no per-row queries) —
the exit status is 1 when it grows; (2) how far above the floors a changelist's time sits (printed as ratios).
"""

from __future__ import annotations

import gc
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench import (
    BenchSetupError,
    PageSamples,
    dataset_bench_args,
    dataset_bench_parser,
    django_start,
    logs_to_devnull,
    machine_line,
    percentile,
)

PAGE_SIZES = (50, 100, 200)
PATIENT_SEARCH = "silva"  # a common surname: hundreds of matches, more than the largest page
PHONE_SEARCH = "(11) 91"  # typed like staff read it: runs the admin's extra phone/CPF digits lookup
FILTER_MONTH = (2026, 6)  # date hierarchy: a month with a full agenda for every professional


@dataclass
class Scenario:
    label: str
    url: str
    model: Any = None  # the model whose ModelAdmin gets each page size; None for the floors
    page_sizes: tuple[int | None, ...] = (None,)


@dataclass
class Result(PageSamples):
    scenario: Scenario
    page_size: int | None
    times_ms: list[float] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)
    rows: int | None = None
    last_sql: list[tuple[str, float]] = field(default_factory=list)  # (SQL, ms) of the last measured request


def main(argv: list[str] | None = None) -> int:
    parser = dataset_bench_parser(
        name="admin",
        doc=__doc__,
        repeat=20,
        repeat_help="measured requests per page",
        warmup_help="unmeasured requests before them",
        verbose_help="print the SQL of each changelist page",
        rebuild_help="rebuild the bench clinic even if it is complete",
    )
    parser.add_argument("--show-logs", action="store_true", help="print the application's log lines (access log…)")
    args = dataset_bench_args(parser, argv)

    began = time.perf_counter()
    try:
        database = django_start(require_bench_database=not args.any_database)
    except BenchSetupError as exc:
        print(f"bench.admin: {exc}", file=sys.stderr)
        return 2

    # Django is set up from here on.
    from django.db import connection
    from django.test import Client
    from django.test.utils import override_settings

    from bench.admin.dataset import APPOINTMENTS, PATIENTS, bench_data_get_or_build

    if not args.show_logs:
        logs_to_devnull()
    data = bench_data_get_or_build(rebuild=args.rebuild)
    how = "built" if data.built else "reused"
    print(
        f"Database {database} (PostgreSQL {connection.pg_version // 10000}): clinic {data.clinic.slug!r} with "
        f"{PATIENTS:,} patients and {APPOINTMENTS:,} appointments, {how} in {data.seconds:.1f} s."
    )
    print(f"{machine_line()}, settings {os.environ['DJANGO_SETTINGS_MODULE']}.")
    print(
        f"Logged in as {data.staff.username!r} (receptionist); each page {args.warmup}× warm-up, then "
        f"{args.repeat} measured rounds over all pages.\n"
    )

    client = Client()
    client.force_login(data.staff)
    with override_settings(ROOT_URLCONF="bench.admin.urls"):
        results = _measure_all(client, _scenarios(data), repeat=args.repeat, warmup=args.warmup)

    _print_table(results)
    failures = _print_claims(results)
    if args.verbose:
        _print_sql(results)
    print(f"\nTotal {time.perf_counter() - began:.0f} s; load average {os.getloadavg()[0]:.2f} at the end.")
    return 1 if failures else 0


def _scenarios(data: Any) -> list[Scenario]:
    from django.urls import reverse

    from bench.admin.urls import BARE_PATH
    from patients.models import Patient
    from scheduling.models import Appointment

    patients = reverse("admin:patients_patient_changelist")
    appointments = reverse("admin:scheduling_appointment_changelist")
    professional = data.professionals[0]
    year, month = FILTER_MONTH
    return [
        Scenario("bare view (floor)", "/" + BARE_PATH),
        Scenario("admin index (floor)", reverse("admin:index")),
        Scenario("patients", patients, Patient, PAGE_SIZES),
        Scenario(f"patients ?q={PATIENT_SEARCH}", f"{patients}?q={PATIENT_SEARCH}", Patient, PAGE_SIZES),
        Scenario(f"patients ?q={PHONE_SEARCH}", f"{patients}?q={PHONE_SEARCH}", Patient, PAGE_SIZES),
        Scenario("appointments (from today, the default)", appointments, Appointment, PAGE_SIZES),
        Scenario(
            f"appointments, 1 professional, {month:02d}/{year}",
            f"{appointments}?period=all&professional__id__exact={professional.pk}&start__year={year}&start__month={month}",
            Appointment,
            PAGE_SIZES,
        ),
    ]


def _measure_all(client: Any, scenarios: list[Scenario], *, repeat: int, warmup: int) -> list[Result]:
    """Warm every page up, then measure in rounds, each round requesting every page once.

    Interleaving spreads whatever else the machine is doing over all pages alike, so the ratios stay fair.
    """
    from django.contrib import admin
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    results = [Result(scenario, size) for scenario in scenarios for size in scenario.page_sizes]
    saved = {m: admin.site._registry[m].list_per_page for m in {s.model for s in scenarios if s.model}}

    def get(result: Result) -> Any:
        if result.scenario.model:
            admin.site._registry[result.scenario.model].list_per_page = result.page_size
        response = client.get(result.scenario.url)
        if response.status_code != 200:
            raise SystemExit(f"bench.admin: GET {result.scenario.url} answered {response.status_code}, expected 200.")
        return response

    try:
        for result in results:
            for _ in range(warmup):
                get(result)
        gc.collect()
        for _ in range(repeat):
            for result in results:
                reset_queries()
                timer = _SqlTimer()
                with connection.execute_wrapper(timer), CaptureQueriesContext(connection) as captured:
                    started = time.perf_counter()
                    response = get(result)
                    elapsed = time.perf_counter() - started
                queries = captured.captured_queries
                result.times_ms.append(elapsed * 1000)
                result.queries.append(len(queries))
                result.sql_ms.append(sum(timer.seconds) * 1000)
                result.last_sql = [(q["sql"], sec * 1000) for q, sec in zip(queries, timer.seconds, strict=True)]
                if result.scenario.model:
                    result.rows = _result_rows(response.content.decode())
    finally:
        for model, per_page in saved.items():
            admin.site._registry[model].list_per_page = per_page
    return results


class _SqlTimer:
    """Times each query precisely (CaptureQueriesContext rounds to the millisecond), rows transfer included."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds.append(time.perf_counter() - started)


_RESULT_LIST = re.compile(r'<table id="result_list">.*?<tbody>(.*?)</tbody>', re.S)


def _result_rows(html: str) -> int:
    match = _RESULT_LIST.search(html)
    return match.group(1).count("<tr") if match else 0


def _print_table(results: list[Result]) -> None:
    index = next(r for r in results if r.scenario.label.startswith("admin index"))
    bare = next(r for r in results if r.scenario.label.startswith("bare view"))
    header = ("page", "per page", "rows", "queries", "p50 ms", "p99 ms", "SQL p50 ms", "× index", "× bare")
    lines = []
    for r in results:
        lines.append(
            (
                r.scenario.label,
                str(r.page_size or "—"),
                "—" if r.rows is None else str(r.rows),
                str(r.query_count) + ("" if r.steady else f" (min {min(r.queries)})"),
                f"{r.p50:.1f}",
                f"{r.p99:.1f}",
                f"{percentile(r.sql_ms, 50):.1f}",
                f"{r.p50 / index.p50:.1f}",
                f"{r.p50 / bare.p50:.1f}",
            )
        )
    widths = [max(len(row[i]) for row in (header, *lines)) for i in range(len(header))]

    def fmt(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        return "| " + " | ".join(cells) + " |"

    print(fmt(header))
    print("|" + "|".join("-" * (w + 1) + ":" if i else "-" * (w + 2) for i, w in enumerate(widths)) + "|")
    for row in lines:
        print(fmt(row))


def _by_scenario(results: list[Result]) -> dict[str, list[Result]]:
    grouped: dict[str, list[Result]] = {}
    for r in results:
        if r.page_size is not None:
            grouped.setdefault(r.scenario.label, []).append(r)
    return grouped


def _print_claims(results: list[Result]) -> list[str]:
    failures = []
    index = next(r for r in results if r.scenario.label.startswith("admin index"))
    bare = next(r for r in results if r.scenario.label.startswith("bare view"))

    print("\nClaim 1 — queries per page do not grow with the page size:")
    for label, group in _by_scenario(results).items():
        counts = [r.query_count for r in group]
        short = [r for r in group if r.rows != r.page_size]
        verdict = "ok" if len(set(counts)) == 1 else "GROWS"
        sizes = ", ".join(f"{r.page_size}→{r.query_count}" for r in group)
        note = ""
        if short:
            note = f" (but only {short[0].rows} rows on the {short[0].page_size}-row page: weak evidence)"
        if not all(r.steady for r in group):
            note += " (count varies between repeats)"
        print(f"  {verdict:5} {label}: {sizes}{note}")
        if verdict != "ok":
            failures.append(label)
            _print_growth(group[0], group[-1])

    print("\nClaim 2 — a changelist's time against the floors (p50):")
    print(f"  floors: bare view {bare.p50:.1f} ms ({bare.query_count} queries), "
          f"admin index {index.p50:.1f} ms ({index.query_count} queries)")  # fmt: skip
    for label, group in _by_scenario(results).items():
        first, last = group[0], group[-1]
        per_row = (last.p50 - first.p50) / (last.page_size - first.page_size)
        print(
            f"  {label}: {first.p50 / index.p50:.1f}× the index at {first.page_size} rows, "
            f"{last.p50 / index.p50:.1f}× at {last.page_size}; {per_row:.2f} ms per extra row"
        )
    if failures:
        print(f"\nFAIL: query count grows with the page size in: {', '.join(failures)}.")
    else:
        print("\nPASS: every changelist runs a constant number of queries per page.")
    return failures


_LITERALS = (
    (re.compile(r"'(?:[^']|'')*'"), "?"),
    (re.compile(r"\b\d+(?:\.\d+)?\b"), "?"),
    (re.compile(r"\((?:\?, )+\?\)"), "(?…)"),
    (re.compile(r"^SELECT .*? FROM ", re.S), "SELECT … FROM "),
)


def _shape(sql: str) -> str:
    for pattern, replacement in _LITERALS:
        sql = pattern.sub(replacement, sql)
    return sql


def _print_growth(small: Result, large: Result) -> None:
    """Name the queries that multiply with the page size: the per-row lookups to fix."""
    before = Counter(_shape(sql) for sql, _ms in small.last_sql)
    after = Counter(_shape(sql) for sql, _ms in large.last_sql)
    for shape, count in (after - before).most_common(5):
        print(f"        +{count} × {shape[:200]}")


def _print_sql(results: list[Result]) -> None:
    for r in results:
        total = sum(ms for _sql, ms in r.last_sql)
        print(f"\n-- {r.scenario.label} ({r.page_size or '—'} per page): {len(r.last_sql)} queries, {total:.0f} ms")
        for sql, ms in r.last_sql:
            print(f"   {ms:6.1f} ms  {sql[:300]}")


if __name__ == "__main__":
    sys.exit(main())
