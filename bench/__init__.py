"""Benchmarks: each one a module run as `python -m bench.<name>` (see bench/README.md and docs/benchmarks.md).

What they share lives here: starting Django against a PostgreSQL database of their own (created and migrated when
missing), and the percentiles they report. Nothing in the product imports this package.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence

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


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least `pct`% of the samples at or below it."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
