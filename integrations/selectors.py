"""Reads other apps make of the integrations. Kept small and typed: availability calls `calendar_busy` per search."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

Interval = tuple[datetime.datetime, datetime.datetime]


def calendar_busy(
    professional_ids: Sequence[int], start: datetime.datetime, end: datetime.datetime
) -> dict[int, list[Interval]]:
    """Busy intervals from each professional's Google Calendar that overlap [start, end), by professional id.

    Fail safe: a professional whose calendar is configured but cannot be read right now is busy for the whole
    window (one interval [start, end)), so no slot is offered from a calendar we could not check.
    Professionals without a calendar are absent from the result.
    """
    return {}  # Google Calendar sync fills this in (issue 4, integrations/google_calendar.py).
