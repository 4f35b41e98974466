"""Benchmark of the inbox and the conversation pages: server time and SQL queries with 100,000 conversations.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cecilia_bench_inbox REDIS_URL=redis://127.0.0.1:6379/8 \\
        .venv/bin/python -m bench.inbox [--repeat 20] [--warmup 3] [--rebuild] [--verbose]

A receptionist of the bench clinic (100,000 conversations, 2,000,000 messages, next to a neighbour clinic whose rows
the scoping must leave out; see `dataset`) is logged in with Django's test Client. Each page is requested `--warmup`
times, then measured in `--repeat` rounds that request every page once: the wall time of the in-process request
(middleware, view, queries, template rendering; no network), the queries it ran (CaptureQueriesContext) and the time
spent executing them (a database execute wrapper). Floors in the same run: bench.admin's bare view (the middleware
stack alone), the same view behind `admin_view` (the admin's gate), and the admin's password-change form (the
admin's chrome: sidebar, permission lookups). The admin index is not a floor: it is the dashboard.

Pages: the conversation changelist (all, and needing attention), the admin change page of the largest and of a
typical conversation, and the desk — the inbox (`conversations_conversation_inbox`: all, mine, unassigned, staff
handling), its live-refresh rows endpoint with the same query strings, and the conversation page
(`conversations_conversation_desk`) of the largest and of a typical conversation; and the dashboard (the admin
index, over 30 and 90 days). A URL name that does not resolve yet is reported "not available"; a page that errors is
reported and fails the run.

Claim checked: a conversation page runs the same number of queries for the largest conversation as for a typical
one (the transcript is paged, nothing runs per message) — the exit status is 1 when it grows (or a page errors).
"""

from __future__ import annotations

import gc
import os
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

INBOX_QUERIES = ("", "?filter=mine", "?filter=unassigned", "?state=human")


@dataclass
class Scenario:
    label: str
    url_name: str  # a URL name, or a literal path for the bench's own floors (starting with "/")
    args: tuple[Any, ...] = ()
    query: str = ""
    floor: bool = False
    pair: str | None = None  # scenarios sharing a pair compare a typical conversation ("typical") with the largest
    size: str | None = None  # "typical" or "largest"
    url: str | None = None  # resolved; None when the name does not resolve yet


@dataclass
class Result(PageSamples):
    scenario: Scenario
    times_ms: list[float] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)
    kilobytes: float = 0.0
    error: str = ""
    last_sql: list[tuple[str, float]] = field(default_factory=list)  # (SQL, ms) of the last measured request

    @property
    def measured(self) -> bool:
        return bool(self.times_ms)


def main(argv: list[str] | None = None) -> int:
    parser = dataset_bench_parser(
        name="inbox",
        doc=__doc__,
        repeat=20,
        repeat_help="measured requests per page",
        warmup_help="unmeasured requests before them",
        verbose_help="print the SQL of each page",
        rebuild_help="rebuild the bench clinics even if they are complete",
    )
    parser.add_argument("--show-logs", action="store_true", help="print the application's log lines (access log…)")
    args = dataset_bench_args(parser, argv)

    began = time.perf_counter()
    try:
        database = django_start(require_bench_database=not args.any_database)
    except BenchSetupError as exc:
        print(f"bench.inbox: {exc}", file=sys.stderr)
        return 2

    # Django is set up from here on.
    from django.db import connection
    from django.test import Client
    from django.test.utils import override_settings

    from bench.inbox.dataset import CONVERSATIONS, MESSAGES, NEIGHBOUR_CONVERSATIONS, bench_data_get_or_build

    if not args.show_logs:
        logs_to_devnull()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start.", flush=True)
    data = bench_data_get_or_build(rebuild=args.rebuild)
    how = "built" if data.built else "reused"
    print(
        f"Database {database} (PostgreSQL {connection.pg_version // 10000}): clinic {data.clinic.slug!r} with "
        f"{CONVERSATIONS:,} conversations and {MESSAGES:,} messages, neighbour {data.neighbour.slug!r} with "
        f"{NEIGHBOUR_CONVERSATIONS:,}; {how} in {data.seconds:.1f} s."
    )
    print(
        f"Largest conversation #{data.largest.pk}: {data.largest_messages:,} messages; typical #{data.typical.pk}: "
        f"{data.typical_messages} (the median)."
    )
    print(f"{machine_line()}, settings {os.environ['DJANGO_SETTINGS_MODULE']}.")
    print(
        f"Logged in as {data.staff.username!r} (receptionist); each page {args.warmup}× warm-up, then "
        f"{args.repeat} measured rounds over all pages.\n",
        flush=True,
    )

    client = Client()
    client.force_login(data.staff)
    with override_settings(ROOT_URLCONF="bench.inbox.urls"):
        scenarios = _scenarios(data)
        results = _measure_all(client, scenarios, repeat=args.repeat, warmup=args.warmup)

    _print_table(results)
    failures = _print_claims(results)
    if args.verbose:
        _print_sql(results)
    print(f"\nTotal {time.perf_counter() - began:.0f} s; load average {os.getloadavg()[0]:.2f} at the end.")
    return 1 if failures else 0


def _scenarios(data: Any) -> list[Scenario]:
    from django.urls import NoReverseMatch, reverse

    from bench.admin.urls import BARE_PATH
    from bench.inbox.urls import BARE_ADMIN_PATH

    largest, typical = data.largest.pk, data.typical.pk
    scenarios = [
        Scenario("bare view (floor)", "/" + BARE_PATH, floor=True),
        Scenario("bare admin_view (floor)", "/" + BARE_ADMIN_PATH, floor=True),
        Scenario("admin password change (floor)", "admin:password_change", floor=True),
        Scenario("changelist", "admin:conversations_conversation_changelist"),
        Scenario(
            "changelist ?needs_attention__exact=1",
            "admin:conversations_conversation_changelist",
            query="?needs_attention__exact=1",
        ),
        Scenario("change page, typical", "admin:conversations_conversation_change", (typical,), pair="change page",
                 size="typical"),
        Scenario("change page, largest", "admin:conversations_conversation_change", (largest,), pair="change page",
                 size="largest"),
        *(Scenario(f"inbox {q or '(all)'}", "admin:conversations_conversation_inbox", query=q) for q in INBOX_QUERIES),
        *(
            Scenario(f"inbox rows {q or '(all)'}", "admin:conversations_conversation_inbox_rows", query=q)
            for q in INBOX_QUERIES
        ),
        Scenario("desk, typical", "admin:conversations_conversation_desk", (typical,), pair="desk", size="typical"),
        Scenario("desk, largest", "admin:conversations_conversation_desk", (largest,), pair="desk", size="largest"),
        Scenario("dashboard (admin index), 30 days", "admin:index"),
        Scenario("dashboard (admin index), 90 days", "admin:index", query="?days=90"),
    ]  # fmt: skip
    for s in scenarios:
        try:
            s.url = (s.url_name if s.url_name.startswith("/") else reverse(s.url_name, args=s.args)) + s.query
        except NoReverseMatch:
            s.url = None
    return scenarios


def _measure_all(client: Any, scenarios: list[Scenario], *, repeat: int, warmup: int) -> list[Result]:
    """Warm every page up, then measure in rounds, each round requesting every page once.

    Interleaving spreads whatever else the machine is doing over all pages alike, so the ratios stay fair. A page
    that raises or answers anything but 200 is recorded with its error and left out of the rounds.
    """
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    from bench.admin.__main__ import _SqlTimer

    results = [Result(s) for s in scenarios]

    def get(result: Result) -> Any:
        try:
            response = client.get(result.scenario.url)
        except Exception as exc:  # a page being built right now may fail: report it, measure the rest
            result.error = f"{type(exc).__name__}: {str(exc)[:120]}"
            return None
        if response.status_code != 200:
            result.error = f"HTTP {response.status_code}"
            return None
        return response

    live = [r for r in results if r.scenario.url]
    for result in live:
        for _ in range(warmup):
            if get(result) is None:
                break
    live = [r for r in live if not r.error]
    gc.collect()
    for _ in range(repeat):
        for result in live:
            if result.error:
                continue
            reset_queries()
            timer = _SqlTimer()
            with connection.execute_wrapper(timer), CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = get(result)
                elapsed = time.perf_counter() - started
            if response is None:
                continue
            queries = captured.captured_queries
            result.last_sql = _timed(queries, timer.seconds)
            result.times_ms.append(elapsed * 1000)
            result.queries.append(len(queries))
            result.sql_ms.append(sum(ms for _sql, ms in result.last_sql))
            result.kilobytes = len(response.content) / 1024
    return results


_TRANSACTION_EVENTS = frozenset({"BEGIN", "COMMIT", "ROLLBACK"})


def _timed(queries: list[dict[str, Any]], seconds: list[float]) -> list[tuple[str, float]]:
    """(SQL, ms) of each captured query. The execute wrapper times every statement precisely; the BEGIN and COMMIT
    of an atomic block are logged by Django without passing through it, so they keep Django's own timing."""
    timings = iter(seconds)
    timed = []
    for query in queries:
        if query["sql"] in _TRANSACTION_EVENTS:
            timed.append((query["sql"], float(query["time"]) * 1000))
        else:
            timed.append((query["sql"], next(timings) * 1000))
    return timed


def _floor(results: list[Result], prefix: str) -> Result | None:
    return next((r for r in results if r.scenario.label.startswith(prefix) and r.measured), None)


def _print_table(results: list[Result]) -> None:
    bare = _floor(results, "bare view")
    gate = _floor(results, "bare admin_view")
    chrome = _floor(results, "admin password change")
    header = ("page", "queries", "p50 ms", "p99 ms", "SQL p50 ms", "KB", "× bare", "× admin_view", "× chrome")
    lines = []
    for r in results:
        if not r.measured:
            status = "not available" if r.scenario.url is None else f"error: {r.error}"
            lines.append((r.scenario.label, status, *("—",) * (len(header) - 2)))
            continue

        def ratio(floor: Result | None, r: Result = r) -> str:
            return f"{r.p50 / floor.p50:.1f}" if floor else "—"

        lines.append(
            (
                r.scenario.label,
                str(r.query_count) + ("" if r.steady else f" (min {min(r.queries)})"),
                f"{r.p50:.1f}",
                f"{r.p99:.1f}",
                f"{percentile(r.sql_ms, 50):.1f}",
                f"{r.kilobytes:.0f}",
                ratio(bare),
                ratio(gate),
                ratio(chrome),
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


def _print_claims(results: list[Result]) -> list[str]:
    failures = [f"{r.scenario.label} ({r.error})" for r in results if r.error]
    print("\nClaim — a conversation page runs as many queries for the largest conversation as for a typical one:")
    pairs: dict[str, dict[str, Result]] = {}
    for r in results:
        if r.scenario.pair:
            pairs.setdefault(r.scenario.pair, {})[r.scenario.size or ""] = r
    for pair, sizes in pairs.items():
        typical, largest = sizes["typical"], sizes["largest"]
        if not (typical.measured and largest.measured):
            print(f"  —     {pair}: not measured ({typical.error or largest.error or 'not available'})")
            continue
        verdict = "ok" if largest.query_count <= typical.query_count else "GROWS"
        note = "" if typical.steady and largest.steady else " (count varies between repeats)"
        print(
            f"  {verdict:5} {pair}: typical {typical.query_count} queries, largest {largest.query_count}{note}; "
            f"p50 {typical.p50:.1f} → {largest.p50:.1f} ms, {typical.kilobytes:.0f} → {largest.kilobytes:.0f} KB"
        )
        if verdict != "ok":
            failures.append(pair)
            _print_growth(typical, largest)
    bare, gate, chrome = _floor(results, "bare view"), _floor(results, "bare admin_view"), _floor(results, "admin pass")
    if bare and gate and chrome:
        print(
            f"\nFloors (p50): bare view {bare.p50:.1f} ms ({bare.query_count} queries), admin_view "
            f"{gate.p50:.1f} ms ({gate.query_count}), admin chrome {chrome.p50:.1f} ms ({chrome.query_count})."
        )
    if failures:
        print(f"\nFAIL: {'; '.join(failures)}.")
    else:
        print("\nPASS: every measured conversation page runs a constant number of queries.")
    return failures


def _print_growth(small: Result, large: Result) -> None:
    """Name the queries that multiply with the conversation's size: the per-message lookups to fix."""
    from bench.admin.__main__ import _shape

    before = Counter(_shape(sql) for sql, _ms in small.last_sql)
    after = Counter(_shape(sql) for sql, _ms in large.last_sql)
    for shape, count in (after - before).most_common(5):
        print(f"        +{count} × {shape[:200]}")


def _print_sql(results: list[Result]) -> None:
    for r in results:
        if not r.measured:
            continue
        total = sum(ms for _sql, ms in r.last_sql)
        print(f"\n-- {r.scenario.label}: {len(r.last_sql)} queries, {total:.0f} ms")
        for sql, ms in r.last_sql:
            print(f"   {ms:6.1f} ms  {sql[:300]}")


if __name__ == "__main__":
    sys.exit(main())
