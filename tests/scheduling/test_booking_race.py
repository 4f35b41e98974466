"""Races on real PostgreSQL: concurrent bookings and holds of one professional, each thread on its own connection.

Invariant 2: two bookings never overlap for one professional. The professional's row lock serialises the services;
the exclusion constraint would catch any writer that skipped it.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from scheduling import services
from scheduling.availability import hold_slot
from scheduling.errors import SlotTaken
from scheduling.models import Appointment, AppointmentSource, SlotHold
from scheduling.services import Actor, appointment_book
from tests import factories
from tests.scheduling.test_availability_support import MONDAY, at, clinic, professional, service

NOW = at(MONDAY - datetime.timedelta(days=7), 9)


def _run_together(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Start every job at the same moment, each in its own thread (so its own database connection)."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def run(i: int, job: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = job()
        except Exception as exc:  # the outcome is what the test inspects
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


@pytest.fixture
def agenda(time_machine):
    time_machine.move_to(NOW, tick=False)
    c = clinic()
    ana = professional(c, "Dra. Ana")
    return {
        "clinic": c,
        "ana": ana,
        "svc": service(c, [ana], duration_minutes=30),
        "patients": [factories.patient(c) for _ in range(20)],
        "staff": factories.staff_user(c),
    }


def _twenty_attempts(agenda: dict) -> list[Callable[[], Any]]:
    staff = Actor.staff(agenda["staff"])

    def attempt(i: int) -> Callable[[], Any]:
        # Half are patients asking for 09:00 exactly; half are staff typing 09:00 + i minutes (all overlap 09:00–09:30).
        start = at(MONDAY, 9) if i % 2 == 0 else at(MONDAY, 9, i)
        actor = Actor.patient() if i % 2 == 0 else staff

        def job() -> Any:
            return appointment_book(
                patient=agenda["patients"][i],
                service=agenda["svc"],
                professional=agenda["ana"],
                start=start,
                actor=actor,
                source=AppointmentSource.WHATSAPP,
            )

        return job

    return [attempt(i) for i in range(20)]


def _assert_one_booked(results: list[Any]) -> None:
    booked = [r for r in results if isinstance(r, Appointment)]
    refused = [r for r in results if isinstance(r, SlotTaken)]
    assert len(booked) == 1, results
    assert len(refused) == 19, results
    assert all(r.alternatives for r in refused)
    winner = booked[0]
    for error in refused:
        for slot in error.alternatives:
            assert slot.start >= winner.end or slot.end <= winner.start
    assert Appointment.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_overlapping_bookings_end_in_one_success_and_nineteen_slot_taken(agenda):
    _assert_one_booked(_run_together(_twenty_attempts(agenda)))


@pytest.mark.django_db(transaction=True)
def test_without_the_lock_and_the_checks_the_exclusion_constraint_still_lets_only_one_through(agenda, monkeypatch):
    # A writer that skips the rules and the professional's lock: every attempt reaches the INSERT at once.
    monkeypatch.setattr(services, "slot_problems", lambda **kwargs: [])
    monkeypatch.setattr(services, "_lock_professionals", lambda *ids: {agenda["ana"].pk: agenda["ana"]})
    _assert_one_booked(_run_together(_twenty_attempts(agenda)))


@pytest.mark.django_db(transaction=True)
def test_two_holders_racing_for_one_slot_end_with_one_hold(agenda):
    def attempt(holder: str) -> Callable[[], Any]:
        return lambda: hold_slot(service=agenda["svc"], professional=agenda["ana"], start=at(MONDAY, 9), holder=holder)

    results = _run_together([attempt("conversation:1"), attempt("conversation:2")])
    holds = [r for r in results if isinstance(r, SlotHold)]
    refused = [r for r in results if isinstance(r, SlotTaken)]
    assert len(holds) == 1 and len(refused) == 1, results
    assert refused[0].details["reason"] == "held"
    assert refused[0].alternatives
    assert SlotHold.objects.get().holder == holds[0].holder
