"""With DEBUG off, Cecilia refuses to start half-configured, and says which variable is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "SECRET_KEY": "x" * 50,
    "ALLOWED_HOSTS": "clinica.example.com",
    "DATABASE_URL": "postgres://cecilia:pw@db.example:5432/cecilia",
    "REDIS_URL": "redis://redis.example:6379/0",
    "FIELD_ENCRYPTION_KEYS": "kYp2cY0T8uS2mE1x4mC9D3c9w8B7Zs8U4iC2h6y5x0E=",
}


def _start(**overrides: str | None) -> subprocess.CompletedProcess:
    """Load the real settings module in a fresh interpreter, as `manage.py`/daphne would at start."""
    env = {k: v for k, v in os.environ.items() if k not in {*PRODUCTION, "DEBUG", "DJANGO_SETTINGS_MODULE"}}
    env.update(PRODUCTION)
    env["ENV_FILE"] = os.devnull  # a developer's .env must not fill in what the test leaves out
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='cecilia.settings'; django.setup(); print('ok')"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_a_complete_production_environment_starts():
    result = _start()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(
    "missing", ["SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "FIELD_ENCRYPTION_KEYS"]
)
def test_with_debug_off_a_missing_variable_stops_the_start_naming_it(missing):
    result = _start(**{missing: None})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{missing} is not set" in result.stderr


def test_an_empty_secret_key_counts_as_missing():
    result = _start(SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_on_runs_without_a_secret_key_but_never_without_a_database():
    assert _start(DEBUG="1", SECRET_KEY=None, ALLOWED_HOSTS=None).returncode == 0
    result = _start(DEBUG="1", DATABASE_URL=None)
    assert result.returncode != 0
    assert "DATABASE_URL is not set" in result.stderr


def test_sqlite_is_refused():
    result = _start(DATABASE_URL="sqlite:///db.sqlite3")
    assert result.returncode != 0
    assert "PostgreSQL only" in result.stderr


def test_the_defaults_speak_portuguese_in_sao_paulo_time():
    from django.conf import settings

    assert settings.LANGUAGE_CODE == "pt-br"
    assert [code for code, _ in settings.LANGUAGES] == ["pt-br", "en"]
    assert settings.TIME_ZONE == "America/Sao_Paulo"
    assert settings.USE_TZ is True


def test_allowed_hosts_may_be_written_with_spaces_after_the_commas():
    env = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='cecilia.settings'; django.setup(); "
    code = env + "from django.conf import settings; print(settings.ALLOWED_HOSTS)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k != "DEBUG"},
            **PRODUCTION,
            "ENV_FILE": os.devnull,
            "ALLOWED_HOSTS": "a.example.com, b.example.com",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "['a.example.com', 'b.example.com']", result.stderr
