"""Run Cecilia's real processes (daphne, a Celery worker) against this test run's database, for fault tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def suite_database_url() -> str:
    """DATABASE_URL of the suite's server with pytest-django's test database in the path."""
    url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    return urllib.parse.urlunsplit(url._replace(path="/" + settings.DATABASES["default"]["NAME"]))


def process_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": suite_database_url(), "DJANGO_SETTINGS_MODULE": "cecilia.settings_test"}
    env.update({"PYTHONUNBUFFERED": "1", "LOG_LEVEL": "WARNING", **extra})
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def start_web(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    process = start(["daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port), "cecilia.asgi:application"], env, log)
    wait_http(f"http://127.0.0.1:{port}/health/live", process, log)
    return process


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    args = ["celery", "-A", "cecilia", "worker", "--pool", "solo", "-l", "INFO", "--without-gossip", "--without-mingle"]
    return start(args, env, log)


def wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def stop(*processes: subprocess.Popen | None) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.terminate()
    for process in processes:
        if process is not None:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def wait_until(condition: object, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.25)
    raise AssertionError(message)
