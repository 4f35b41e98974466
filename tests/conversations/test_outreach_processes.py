"""The reminder sweep with Cecilia's real processes: `celery beat` (django-celery-beat's DatabaseScheduler, reading the
"Reminders sweep" periodic task the migration registers, here every second), a Celery worker running the sweep and
the sends, a private redis-server as broker, and a fake Evolution API on a local socket counting every request —
"each patient got their reminder exactly once" is "the fake received exactly one send per step".

While beat keeps sweeping, the test process sweeps too (small batches, in a loop): the steps' row locks, not luck,
decide who sends what. The processes read the committed rows of pytest-django's test database (`transaction=True`).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from cecilia.models import WhatsAppProvider
from conversations.models import Message, MessageStatus
from conversations.outreach import outreach_sweep
from scheduling.models import ReminderRule, ReminderStep, StepKind, StepStatus
from tests import factories
from tests.fakes import outbox as fakes
from tests.fakes.celery_worker import ROOT, Worker
from tests.fakes.evolution_server import FakeEvolution

pytestmark = pytest.mark.django_db(transaction=True)

private_redis = fakes.private_redis
outbox_redis = fakes.outbox_redis
fake_evolution = fakes.fake_evolution

INSTANCE, TOKEN = fakes.EVOLUTION_INSTANCE, fakes.EVOLUTION_TOKEN  # the shared fake Evolution's
WAIT = 30.0  # the most the whole exchange may take before the test fails (a few seconds normally)
SWEEP_TASK = "conversations.tasks.reminders_sweep"


class Beat:
    """`celery -A cecilia beat` with the database scheduler, in its own process group (killed whatever happens)."""

    def __init__(self, *, environment: dict[str, str], log_path: Path) -> None:
        self.environment, self.log_path = environment, log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "cecilia",
                    "beat",
                    "--scheduler=django_celery_beat.schedulers:DatabaseScheduler",
                    "--max-interval=1",  # re-read the schedule every second (production: the default 5 s)
                    "--loglevel=INFO",
                    "--pidfile=",
                ],
                cwd=ROOT,
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def processes(transactional_db: Any, outbox_redis: Any, tmp_path: Path) -> Iterator[tuple[Worker, Beat]]:
    """A worker and a beat on the private Redis and the test database; the sweep's periodic task every second."""
    schedule, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    # The migration's row (a flush by an earlier transactional test may have removed it: then it is made again).
    PeriodicTask.objects.update_or_create(
        name="Reminders sweep", defaults={"task": SWEEP_TASK, "interval": schedule, "enabled": True}
    )
    PeriodicTask.objects.exclude(name="Reminders sweep").update(enabled=False)  # only the sweep in this test
    pacing_off = {"WHATSAPP_SEND_PER_MINUTE": "0", "WHATSAPP_TYPING_DELAY_MS": "0"}
    worker = Worker(redis_url=outbox_redis.url, log_path=tmp_path / "worker.log", env=pacing_off)
    beat = Beat(
        environment={
            **worker.environment,
            "CELERY_BROKER_URL": outbox_redis.url,
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        },
        log_path=tmp_path / "beat.log",
    )
    try:
        yield worker, beat
    finally:
        beat.kill()
        worker.kill()


def due_reminders(clinic: Any, count: int, *, first: int = 0) -> list[ReminderStep]:
    """`count` appointments three days ahead, each with a 48 h reminder due a minute ago (written directly: the
    planner never plans a reminder already due)."""
    rule = ReminderRule.objects.get(clinic=clinic, hours_before=48)
    pro = factories.professional(clinic, name=f"Dra. Lote {first}")
    svc = factories.service(clinic, professionals=[pro], name=f"Consulta {first}")
    base = (timezone.now() + datetime.timedelta(days=3)).replace(second=0, microsecond=0)
    steps = []
    for n in range(count):
        patient = factories.patient(clinic, full_name=f"Paciente {first + n}")
        start = base + datetime.timedelta(minutes=30 * n)
        appointment = factories.appointment(patient=patient, professional=pro, service=svc, start=start)
        steps.append(
            ReminderStep(
                clinic=clinic,
                appointment=appointment,
                kind=StepKind.REMINDER,
                key="48h",
                appointment_start=start,
                rule=rule,
                asks_confirmation=True,
                due_at=timezone.now() - datetime.timedelta(minutes=1),
            )
        )
    return ReminderStep.objects.bulk_create(steps)


def wait_until(condition: Any, what: str, *logs: Any) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out waiting until {what}.\n" + "\n".join(f"--- log ---\n{log()}" for log in logs))
        time.sleep(0.1)


def sends_per_phone(fake: FakeEvolution) -> Counter[str]:
    return Counter(request.body["number"] for request in fake.requests_to("sendText"))


def test_beat_and_a_racing_sweep_send_each_due_reminder_exactly_once(fake_evolution, processes):
    worker, beat = processes
    clinic = factories.clinic(
        whatsapp_provider=WhatsAppProvider.EVOLUTION,
        whatsapp_instance=INSTANCE,
        whatsapp_api_url=fake_evolution.url,
        whatsapp_api_key=TOKEN,
        reminder_window_start=datetime.time(0, 0),  # whatever the hour the test runs at
        reminder_window_end=datetime.time(23, 59, 59),
        no_show_after_minutes=0,
    )
    ReminderRule.objects.create(clinic=clinic, hours_before=48, asks_confirmation=True)
    first = due_reminders(clinic, 15)

    # Beat alone: its sweep, run by the worker, queues them and the worker sends them.
    started = time.monotonic()
    worker.start()
    beat.start()
    wait_until(lambda: len(fake_evolution.received) >= 15, "beat's sweep sent the first ones", worker.log, beat.log)
    print(f"\nfirst 15 sent {time.monotonic() - started:.1f} s after the worker started")
    assert f"{SWEEP_TASK}[" in worker.log() and "succeeded in" in worker.log()

    # Beat keeps sweeping every second while this process sweeps too, in small batches, as fast as it can.
    stop = threading.Event()
    raced: list[int] = []

    def race() -> None:
        try:
            while not stop.is_set():
                raced.append(outreach_sweep(batch=3).queued)
        finally:
            connection.close()

    racer = threading.Thread(target=race)
    racer.start()
    second = due_reminders(clinic, 25, first=100)  # due at once for both
    try:
        wait_until(lambda: len(fake_evolution.received) >= 40, "all reminders were sent", worker.log, beat.log)
    finally:
        stop.set()
        racer.join(timeout=20)
    print(f"all 40 sent {time.monotonic() - started:.1f} s after the worker started")
    time.sleep(1.5)  # a duplicate, if anything made one, reaches the fake by now (beat ticks every second)

    steps = [*first, *second]
    patients = {str(s.appointment.patient.phone).lstrip("+") for s in steps}
    assert sends_per_phone(fake_evolution) == Counter(dict.fromkeys(patients, 1))
    assert Message.objects.filter(reminder_step__in=steps).count() == 40
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.SENT}
    assert set(ReminderStep.objects.values_list("status", flat=True)) == {StepStatus.SENT}
    print(f"racing sweep queued {sum(raced)} of the second 25; beat's sweeps the rest")
