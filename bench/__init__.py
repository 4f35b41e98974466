"""Benchmarks: each one a module run as `python -m bench.<name>` (see bench/README.md and docs/benchmarks.md).

What they share lives here: starting Django against a PostgreSQL database of their own (created and migrated when
missing), the command line and opening lines of the benches over a built dataset (admin, inbox, availability), the
percentiles they report, and for the benches that start real servers (webhook, turn) the production
settings they run with and the small process helpers. Nothing in the product imports this package.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import math
import os
import platform
import secrets
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_SETTINGS = "cecilia.settings_test"  # development defaults for the secret key and hosts; DEBUG on


class BenchSetupError(Exception):
    """The bench cannot start (no DATABASE_URL, a database it must not touch, an unreachable server)."""


def django_start(*, require_bench_database: bool = True) -> str:
    """Create the database DATABASE_URL names if missing, set Django up and migrate; return the database name.

    A bench writes tens of thousands of rows: unless told otherwise it refuses a database whose name does not say
    "bench", so it never lands in someone's development or test database.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", DEFAULT_SETTINGS)
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        raise BenchSetupError(
            "DATABASE_URL is not set. Point it at a database of the bench's own, e.g. "
            "DATABASE_URL=postgres://postgres@127.0.0.1:5432/cecilia_bench (created when missing)."
        )
    import environ

    config = environ.Env.db_url_config(url)
    name = config["NAME"]
    if require_bench_database and "bench" not in name:
        raise BenchSetupError(
            f"Refusing to fill database {name!r} with benchmark data: use a database whose name contains 'bench' "
            "(e.g. cecilia_bench), or pass --any-database."
        )
    _database_create_if_missing(config)

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    return name


def _database_create_if_missing(config: dict) -> None:
    import psycopg
    from psycopg import sql

    name = config["NAME"]
    params = {
        "dbname": "postgres",
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
        "connect_timeout": 5,
    }
    try:
        with psycopg.connect(**{k: v for k, v in params.items() if v is not None}, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"Created database {name}.", file=sys.stderr)
    except psycopg.OperationalError as exc:
        raise BenchSetupError(f"Cannot reach PostgreSQL for database {name!r}: {exc}") from exc


def dataset_bench_parser(
    *, name: str, doc: str, repeat: int, repeat_help: str, warmup_help: str, verbose_help: str, rebuild_help: str
) -> argparse.ArgumentParser:
    """The options every bench over a built dataset takes (`python -m bench.<name>`)."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=repeat, help=f"{repeat_help} (default {repeat})")
    parser.add_argument("--warmup", type=int, default=3, help=f"{warmup_help} (default 3)")
    parser.add_argument("--rebuild", action="store_true", help=rebuild_help)
    parser.add_argument("--verbose", "-v", action="store_true", help=verbose_help)
    parser.add_argument(
        "--any-database", action="store_true", help="allow a database whose name does not contain 'bench'"
    )
    return parser


def dataset_bench_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.warmup < 0:
        parser.error("--repeat must be at least 1 and --warmup at least 0")
    return args


def machine_line() -> str:
    """Cores, load, Python and Django: the opening line of a bench's output (Django must be set up)."""
    import django

    return (
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; Python {platform.python_version()}, "
        f"Django {django.get_version()}"
    )


def logs_to_devnull() -> None:
    """Log lines (one access line per request) are still filtered and formatted, a real cost of every request, but
    written to /dev/null instead of between the bench's lines."""
    import logging

    sink = open(os.devnull, "w")  # noqa: SIM115 - open for the life of the process, like stderr
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sink)


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least `pct`% of the samples at or below it."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


class PageSamples:
    """What the in-process page benches (bench.admin, bench.inbox) report of a page's measured requests. A mixin for
    their result dataclasses, which hold `times_ms` (each request's wall time) and `queries` (each one's count)."""

    times_ms: list[float]
    queries: list[int]

    @property
    def p50(self) -> float:
        return percentile(self.times_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.times_ms, 99)

    @property
    def query_count(self) -> int:
        return max(self.queries)

    @property
    def steady(self) -> bool:
        """The page ran the same number of queries on every request."""
        return min(self.queries) == max(self.queries)


# --- benches that start real servers (bench.webhook, bench.turn) ------------------------------------------------

PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)


def production_env(*, settings_module: str, workdir: Path, redis_url: str, log_level: str) -> dict[str, str]:
    """The environment a bench's servers run with: production's settings (DEBUG off, fresh secrets, a developer's
    .env ignored) on plain HTTP on loopback, the bench's own Redis database. Each bench adds its own knobs."""
    from cryptography.fernet import Fernet

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings_module,
        "ENV_FILE": os.devnull,  # a developer's .env would change what is measured
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback; production sits behind a TLS proxy
        "STATIC_ROOT": str(workdir),  # an existing folder: WhiteNoise warns about a missing one at start
        "LOG_LEVEL": log_level,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
    }


def redis_url(db: int) -> str:
    """REDIS_URL's server (default 127.0.0.1:6379) with the bench's own database number."""
    parts = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def package_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, idle and iowait excluded), from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(value) for value in stat.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def machine_busy_now(seconds: float) -> float:
    """% of all cores busy over the next `seconds`."""
    first = machine_busy_seconds()
    time.sleep(seconds)
    return (machine_busy_seconds() - first) / (seconds * (os.cpu_count() or 1)) * 100


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when the bench dies, so no server, worker or load tool outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
