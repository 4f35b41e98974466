"""Reads about the agenda. Free slots, "next available" and slot checks live in `scheduling.availability`."""

from __future__ import annotations

import datetime

from django.db.models import QuerySet

from scheduling.models import Appointment, AppointmentStatus


def appointments_overlapping(
    *,
    start: datetime.datetime,
    end: datetime.datetime,
    professional_id: int | None = None,
    patient_id: int | None = None,
    exclude_id: int | None = None,
) -> QuerySet[Appointment]:
    """Active appointments of the professional (or patient) that share any time with [start, end).

    The same rule as the exclusion constraints, asked in advance so staff read which appointment is in the way.
    """
    qs = Appointment.objects.filter(start__lt=end, end__gt=start).exclude(status=AppointmentStatus.CANCELLED)
    if professional_id is not None:
        qs = qs.filter(professional_id=professional_id)
    if patient_id is not None:
        qs = qs.filter(patient_id=patient_id)
    if exclude_id is not None:
        qs = qs.exclude(pk=exclude_id)
    return qs.select_related("patient", "professional").order_by("start")
