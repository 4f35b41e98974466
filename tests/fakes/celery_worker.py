"""A real Celery worker process (`celery -A cecilia worker`, solo pool) against the test database, for fault tests.

It runs in its own process group so `kill()` can SIGKILL it mid-task, the way an OOM killer or a lost machine would.
Its log goes to a file the test prints when something times out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings

from tests.processes import suite_database_url

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    def __init__(
        self, *, redis_url: str, log_path: Path, env: dict[str, str] | None = None, pool: tuple[str, ...] = ("solo",)
    ) -> None:
        """`pool`: "solo", or e.g. ("prefork", "2") for production's pool of forked children."""
        self.log_path = log_path
        self.pool = pool
        self.environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.fakes.worker_settings",
            "ENV_FILE": os.devnull,  # a developer's .env must not steer the worker
            "DATABASE_URL": suite_database_url(),
            "REDIS_URL": redis_url,
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "LOG_FORMAT": "console",
            **(env or {}),
        }
        self.environment.pop("CELERY_BROKER_URL", None)
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self, *, wait: float = 30.0) -> None:
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "cecilia",
                    "worker",
                    f"--pool={self.pool[0]}",
                    *([f"--concurrency={self.pool[1]}"] if len(self.pool) > 1 else []),
                    "--loglevel=INFO",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    f"--hostname=outbox-test-{uuid.uuid4().hex[:8]}@%h",
                ],
                cwd=ROOT,
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + wait
        while " ready." not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"The Celery worker did not start:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return log.read().decode("utf-8", "replace")

    def kill(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, no ack, nothing cleaned up."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def worker_starter(*, redis_url: str, log_dir: Path) -> Iterator[Callable[..., Worker]]:
    """`start(env, pool=…)` starts one more worker (several may run in turn); every one is SIGKILLed when the block
    ends, whatever happens."""
    workers: list[Worker] = []

    def start(env: dict[str, str] | None = None, *, pool: tuple[str, ...] = ("solo",)) -> Worker:
        log_path = log_dir / f"worker-{len(workers) + 1}.log"
        worker = Worker(redis_url=redis_url, log_path=log_path, env=env, pool=pool)
        workers.append(worker)
        worker.start()
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.kill()
