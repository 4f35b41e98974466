"""The README's run command end to end: `python -m cecilia.dev run` serves the admin and leaves nothing behind.

The runner is started as a subprocess against this test run's own PostgreSQL and Redis (DATABASE_URL / REDIS_URL),
so no embedded server is started, with a throwaway database (it never touches the pytest test database), a spare
Redis database number and a free port. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import psycopg
import pytest
import redis
from psycopg import sql

from cecilia.dev.services import describe_url, read_dotenv

REPO = Path(__file__).resolve().parents[2]
BANNER_TIMEOUT = 150.0  # a first migrate of an empty database, the demo data, then three processes on two cores
STOP_TIMEOUT = 45.0  # the runner's own grace period is 10 s per stop, plus the servers
SPARE_REDIS_DB = 15  # the runner's worker and beat use this database, never the suite's


def _with_path(url: str, path: str) -> str:
    """`url` with its path (the database name or number) replaced; query and credentials kept."""
    return urlsplit(url)._replace(path=path).geturl()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Runner:
    """A `python -m cecilia.dev run` subprocess whose output a thread collects."""

    process: subprocess.Popen[bytes]
    port: int
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, fragment: str, timeout: float) -> None:
        """Wait until an output line contains `fragment`; fail with the output so far when the runner exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(fragment in line for line in list(self.lines)):
                return
            if self.process.poll() is not None:
                time.sleep(0.5)  # let the reader thread drain the last lines
                pytest.fail(f"the runner exited ({self.process.returncode}) before {fragment!r}:\n{self.output}")
            time.sleep(0.2)
        pytest.fail(f"no {fragment!r} within {timeout:.0f}s:\n{self.output}")

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)


def _gone(process: psutil.Process) -> bool:
    """Whether the process has exited (a zombie waiting for its new parent to reap it counts as exited)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(processes: list[psutil.Process], timeout: float = 10.0) -> list[psutil.Process]:
    """The processes still alive after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    alive = processes
    while alive and time.monotonic() < deadline:
        alive = [process for process in alive if not _gone(process)]
        time.sleep(0.1)
    return alive


def _get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


@pytest.fixture(scope="module")
def service_urls() -> Iterator[dict[str, str]]:
    """DATABASE_URL for a throwaway database on the suite's server, REDIS_URL for a spare database number on the
    suite's Redis; both are dropped / flushed afterwards."""
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if not database_url or not redis_url:
        pytest.skip("needs DATABASE_URL and REDIS_URL (run the suite with `make test`)")
    name = f"cecilia_dev_runner_{uuid.uuid4().hex[:8]}"
    maintenance_url = _with_path(database_url, "/postgres")
    with psycopg.connect(maintenance_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    spare_redis_url = _with_path(redis_url, f"/{SPARE_REDIS_DB}")
    try:
        yield {"DATABASE_URL": _with_path(database_url, f"/{name}"), "REDIS_URL": spare_redis_url}
    finally:
        with psycopg.connect(maintenance_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        client = redis.Redis.from_url(spare_redis_url, socket_timeout=5)
        client.flushdb()
        client.close()


@contextlib.contextmanager
def _running(service_urls: dict[str, str]) -> Iterator[Runner]:
    """Start the runner in its own session; on the way out kill whatever a failed test left running."""
    port = _free_port()
    env = {**os.environ, **service_urls, "PORT": str(port), "HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
    # The runner must choose these itself, as under `make run` (pytest-django and settings_test set them here).
    for name in ("DJANGO_SETTINGS_MODULE", "DEBUG", "LOG_FORMAT"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "cecilia.dev", "run"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    runner = Runner(process, port)

    def collect() -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            runner.lines.append(raw.decode("utf-8", "replace").rstrip())

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    seen: list[psutil.Process] = []
    try:
        yield runner
    finally:
        if process.poll() is None:
            with contextlib.suppress(psutil.Error):
                seen = runner.descendants()
            os.killpg(process.pid, signal.SIGKILL)
            for child in seen:
                with contextlib.suppress(psutil.Error):
                    child.kill()
            process.wait(timeout=10)
        reader.join(timeout=5)


def test_run_serves_the_admin_and_stops_everything_on_ctrl_c(service_urls: dict[str, str]) -> None:
    with _running(service_urls) as runner:
        runner.wait_for_line(f"Admin: http://127.0.0.1:{runner.port}/admin/", BANNER_TIMEOUT)
        assert "recepcao / cecilia-demo" in runner.output
        children = runner.descendants()
        # web, worker (with its pool) and beat; all started by the runner.
        assert len(children) >= 3, runner.output

        assert _get(runner.port, "/health/live")[0] == 200
        status, body = _get(runner.port, "/admin/login/")
        assert status == 200
        assert 'name="username"' in body
        assert 'name="password"' in body

        runner.process.send_signal(signal.SIGINT)
        exit_status = runner.process.wait(timeout=STOP_TIMEOUT)
        time.sleep(0.5)

        assert exit_status == 0, runner.output
        assert _wait_gone(children) == [], runner.output
        assert "cecilia| stopped" in runner.output


def test_run_stops_everything_and_fails_when_a_process_dies(service_urls: dict[str, str]) -> None:
    with _running(service_urls) as runner:
        runner.wait_for_line(f"Admin: http://127.0.0.1:{runner.port}/admin/", BANNER_TIMEOUT)
        children = runner.descendants()
        beat = next(child for child in children if "beat" in child.cmdline())

        beat.kill()
        exit_status = runner.process.wait(timeout=STOP_TIMEOUT)

        assert exit_status == 1, runner.output
        assert "beat was killed by SIGKILL; stopping everything" in runner.output
        assert _wait_gone(children) == [], runner.output


def test_exec_passes_the_service_urls_and_returns_the_command_exit_status() -> None:
    check = "import os, sys; sys.exit(3 if os.environ['DATABASE_URL'] and os.environ['REDIS_URL'] else 0)"
    result = subprocess.run(
        [sys.executable, "-m", "cecilia.dev", "exec", "--", "python", "-c", check],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )

    assert result.returncode == 3, result.stderr


def test_service_urls_are_shown_without_credentials() -> None:
    assert describe_url("postgres://cecilia:s3cret@db.internal:5432/cecilia") == "postgres://db.internal:5432/cecilia"
    assert describe_url("postgresql://postgres:@/cecilia?host=/srv/pg") == "postgresql:///cecilia?host=/srv/pg"
    assert describe_url("postgres://h/db?password=s3cret&sslmode=require") == "postgres://h/db"
    assert "s3cret" not in describe_url("redis://:s3cret@127.0.0.1:6379/0")


def test_service_urls_in_a_dotenv_file_count_as_configured(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# local\nexport DATABASE_URL='postgres://u@h/db'\nREDIS_URL=redis://h:1/0\n")

    assert read_dotenv(tmp_path / ".env") == {"DATABASE_URL": "postgres://u@h/db", "REDIS_URL": "redis://h:1/0"}
    assert read_dotenv(tmp_path / "missing.env") == {}
