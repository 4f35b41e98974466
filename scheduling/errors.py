"""Why a slot cannot be booked or an appointment cannot change: one exception class per reason.

Every error carries a stable `code` (snake_case, for the assistant's tools and the API), a `message` for staff
(gettext, in the active language; `str(err)` is the message) and `details` (a JSON-safe dict: ids, ISO datetimes,
the alternatives of a taken slot). The assistant words its own reply to the patient from `code` and `details`;
staff read `message`.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

if TYPE_CHECKING:
    from scheduling.availability import Slot


def _when(moment: datetime.datetime, tz: datetime.tzinfo | None = None) -> str:
    return date_format(timezone.localtime(moment, tz), "SHORT_DATETIME_FORMAT")


class BookingError(Exception):
    code = "booking_error"

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        self.message = str(message) if message else self.default_message()
        self.details: dict[str, Any] = details or {}
        super().__init__(self.message)

    def default_message(self) -> str:
        return _("This appointment cannot be booked.")

    def __str__(self) -> str:
        return self.message


class SlotTaken(BookingError):
    """Another appointment (or its buffer), or another patient's hold, is in the way. Carries alternatives."""

    code = "slot_taken"

    def __init__(
        self, alternatives: list[Slot] | None = None, *, reason: str = "booked", message: str | None = None
    ) -> None:
        self.alternatives: list[Slot] = list(alternatives or [])
        self.reason = reason  # "booked" (overlaps an appointment), "buffer" (too close to one), "held"
        messages = {
            "booked": _("The professional already has an appointment at this time."),
            "buffer": _("This time is too close to another appointment of the professional (buffer time)."),
            "held": _("Someone is choosing this time right now. Try again in a few minutes or pick another time."),
        }
        super().__init__(
            message or messages.get(reason, messages["booked"]),
            details={"reason": reason, "alternatives": [slot_as_dict(s) for s in self.alternatives]},
        )


class OutsideHours(BookingError):
    code = "outside_hours"

    def __init__(self, *, reason: str = "hours", message: str | None = None) -> None:
        # "hours": not within the professional's working hours (and the clinic's opening hours);
        # "off_grid": within them, but not one of the start times offered for this service.
        default = (
            _("This time is not one of the start times offered for this service.")
            if reason == "off_grid"
            else _("This time is outside the professional's working hours or the clinic's opening hours.")
        )
        super().__init__(message or default, details={"reason": reason})


class ClinicClosed(BookingError):
    code = "clinic_closed"

    def __init__(self, *, date: datetime.date, name: str = "") -> None:
        self.date = date
        self.name = name
        day = date_format(date, "SHORT_DATE_FORMAT")
        message = (
            _("The clinic is closed on %(date)s (%(name)s).") % {"date": day, "name": name}
            if name
            else _("The clinic is closed on %(date)s.") % {"date": day}
        )
        super().__init__(message, details={"date": date.isoformat(), "name": name})


class InThePast(BookingError):
    code = "in_the_past"

    def default_message(self) -> str:
        return _("This time has already passed.")


class TooSoon(BookingError):
    code = "too_soon"

    def __init__(self, *, earliest: datetime.datetime, tz: datetime.tzinfo | None = None) -> None:
        super().__init__(
            _("This is sooner than the clinic's minimum notice for bookings: the earliest is %(when)s.")
            % {"when": _when(earliest, tz)},
            details={"earliest": earliest.isoformat()},
        )


class BeyondHorizon(BookingError):
    code = "beyond_horizon"

    def __init__(self, *, last_day: datetime.date) -> None:
        super().__init__(
            _("Bookings open only up to %(date)s.") % {"date": date_format(last_day, "SHORT_DATE_FORMAT")},
            details={"last_day": last_day.isoformat()},
        )


class ProfessionalUnavailable(BookingError):
    code = "professional_unavailable"

    def __init__(self, *, reason: str, message: str | None = None) -> None:
        self.reason = reason  # "inactive", "time_off" or "calendar_busy"
        messages = {
            "inactive": _("This professional is not taking bookings."),
            "time_off": _("The professional is off at this time."),
            "calendar_busy": _("The professional's Google Calendar is busy at this time."),
        }
        super().__init__(message or messages.get(reason, messages["time_off"]), details={"reason": reason})


class ProfessionalDoesNotPerform(BookingError):
    code = "professional_does_not_perform"

    def default_message(self) -> str:
        return _("This professional does not perform this service.")


class PatientOverlap(BookingError):
    code = "patient_overlap"

    def default_message(self) -> str:
        return _("The patient already has another appointment at this time.")


class CancellationTooLate(BookingError):
    code = "cancellation_too_late"

    def __init__(self, *, notice_hours: int) -> None:
        super().__init__(
            _(
                "It is less than %(hours)s hours before the appointment: by the clinic's policy only staff can "
                "cancel or move it now."
            )
            % {"hours": notice_hours},
            details={"notice_hours": notice_hours},
        )


class InvalidTransition(BookingError):
    """The appointment's status (or the actor) does not allow this change, e.g. confirming a cancelled one."""

    code = "invalid_transition"

    def __init__(self, *, status: str, action: str, message: str | None = None) -> None:
        from scheduling.models import AppointmentStatus

        done = {
            "confirm": _("confirmed"),
            "cancel": _("cancelled"),
            "reschedule": _("rescheduled"),
            "no_show": _("marked as a no-show"),
            "complete": _("marked as completed"),
        }
        label = str(AppointmentStatus(status).label).lower() if status in AppointmentStatus.values else status
        super().__init__(
            message
            or _("An appointment that is %(status)s cannot be %(action)s.")
            % {"status": label, "action": done.get(action, action)},
            details={"status": status, "action": action},
        )


def slot_as_dict(slot: Slot) -> dict[str, Any]:
    return {"professional_id": slot.professional_id, "start": slot.start.isoformat(), "end": slot.end.isoformat()}
