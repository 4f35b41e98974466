"""Builders shared by the availability, hold and booking tests (no tests here).

Dates are fixed so holidays and weekdays are known: 2026-03-02 is a Monday with no holiday around it.
"""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

from cecilia.models import BusinessHours, Clinic
from scheduling.models import Professional, Service, TimeOff, WorkingHours
from tests import factories

SP = zoneinfo.ZoneInfo("America/Sao_Paulo")
MONDAY = datetime.date(2026, 3, 2)
T = datetime.time


def at(day: datetime.date, hour: int, minute: int = 0, *, tz: datetime.tzinfo = SP, fold: int = 0) -> datetime.datetime:
    """An aware wall-clock time in the clinic's zone."""
    return datetime.datetime.combine(day, T(hour, minute), tzinfo=tz).replace(fold=fold)


def day_window(day: datetime.date, days: int = 1, *, tz: datetime.tzinfo = SP) -> dict[str, datetime.datetime]:
    return {"start": at(day, 0, tz=tz), "end": at(day + datetime.timedelta(days=days), 0, tz=tz)}


def hhmm(slots: list[Any]) -> list[str]:
    return [s.start.strftime("%H:%M") for s in slots]


def clinic(**kwargs: Any) -> Clinic:
    """A São Paulo clinic with no booking policy in the way unless a test sets one."""
    defaults = {
        "timezone": "America/Sao_Paulo",
        "state": "SP",
        "booking_min_notice_minutes": 0,
        "booking_horizon_days": 730,
        "cancellation_notice_hours": 24,
    }
    return factories.clinic(**{**defaults, **kwargs})


def hours(professional: Professional, weekdays: range | list[int], *intervals: tuple[T, T]) -> None:
    WorkingHours.objects.bulk_create(
        WorkingHours(clinic_id=professional.clinic_id, professional=professional, weekday=day, start=s, end=e)
        for day in weekdays
        for s, e in intervals
    )


def business(clinic: Clinic, weekdays: range | list[int], *intervals: tuple[T, T]) -> None:
    BusinessHours.objects.bulk_create(
        BusinessHours(clinic=clinic, weekday=day, start=s, end=e) for day in weekdays for s, e in intervals
    )


def professional(clinic: Clinic, name: str, *, weekdays: range | list[int] = range(7), **kwargs: Any) -> Professional:
    """A professional working 08–12 and 14–18 on `weekdays` (every day by default)."""
    pro = factories.professional(clinic, name=name, **kwargs)
    hours(pro, weekdays, (T(8), T(12)), (T(14), T(18)))
    return pro


def service(clinic: Clinic, professionals: list[Professional], **kwargs: Any) -> Service:
    return factories.service(clinic, professionals=professionals, **kwargs)


def time_off(clinic: Clinic, start: datetime.datetime, end: datetime.datetime, professional=None) -> TimeOff:
    return TimeOff.objects.create(clinic=clinic, professional=professional, start=start, end=end)


def book(patient, professional, service, start: datetime.datetime, minutes: int | None = None, **kwargs: Any):
    """An appointment written straight to the database (the booking services are what other tests exercise)."""
    return factories.appointment(
        patient=patient,
        professional=professional,
        service=service,
        start=start,
        minutes=minutes or service.duration_minutes,
        **kwargs,
    )
