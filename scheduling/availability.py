"""Free slots, "next available", the reason one slot cannot be booked, and slot holds.

The rules, in one place (the booking services check the same ones through `slot_problem`):

* **Open hours.** A slot `[start, start + duration)` lies inside one of the professional's working intervals for
  that weekday (several rows make split shifts) and, when the clinic has any business hours configured, inside one
  of the clinic's opening intervals of that weekday too (no business hours at all = no clinic-level limit).
  Candidate starts are on a grid anchored at the start of each working interval, every `slot_interval_minutes`
  (empty = the service's duration).
* **Closed days.** No slot on the clinic's closed dates (`every_year` ones match day and month), nor — unless the
  clinic opens on holidays — on Brazilian national holidays and the holidays of the clinic's state (`holidays`).
* **Busy time.** Active appointments (any status but cancelled), live holds of *other* holders, time off (the
  professional's and the whole clinic's) and the professional's Google Calendar busy times (one `calendar_busy`
  call per search). A new slot needs its own buffers free: `[start - buffer_before, end + buffer_after)` must not
  touch anything busy, and an existing appointment or hold occupies its own buffers too
  (`[start - its buffer_before, end + its buffer_after)`). So between two appointments there is at least the first
  one's buffer after plus the second one's buffer before — cleaning the room and setting it up again are two jobs.
  Buffers may reach outside working hours (setting up before the first patient of the day is normal), never into
  busy time.
* **Policy** (`enforce_policy=True`: patients and Cecilia herself): a slot starts at least
  `booking_min_notice_minutes` from now and on or before the last day of the horizon (today, in the clinic's zone,
  plus `booking_horizon_days`); the start is on the service's grid. Staff (`enforce_policy=False`) skip these but are
  never offered the past.
* **Time.** Working and opening hours are wall-clock times in the clinic's zone. A wall time is read as the first
  moment the clock shows it: in a DST gap (São Paulo, 2018-11-04 00:00 → 01:00) it lands just after the jump
  (00:00 is 01:00 −02), in the repeated hour (2019-02-16 23:00–24:00) the first pass counts. Slot lengths are real
  minutes. Internally everything is integer epoch seconds, so arithmetic is exact across any transition.

Efficiency: a search runs a fixed number of queries (clinic's professionals, working hours, business hours, closed
dates, time off, appointments, holds, plus the one `calendar_busy` call) whatever the number of days and
professionals, then computes in Python over sorted intervals: each candidate start costs O(1) amortised. PostgreSQL
turns each appointment into the range of starts it forbids (integers, sorted), so no Python loop runs per
appointment. bench/availability: 60 days × 30 professionals over 20,000 appointments in about 40 ms.
"""

from __future__ import annotations

import bisect
import datetime
import functools
import uuid
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import holidays
from django.db import connection, models, transaction
from django.db.models import BigIntegerField, Exists, ExpressionWrapper, F, Func, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from cecilia.models import BusinessHours, Clinic, ClosedDate
from integrations import selectors as integration_selectors  # looked up per call: tests patch calendar_busy there
from patients.models import Patient
from scheduling.errors import (
    BeyondHorizon,
    BookingError,
    ClinicClosed,
    InThePast,
    OutsideHours,
    PatientOverlap,
    ProfessionalDoesNotPerform,
    ProfessionalUnavailable,
    SlotTaken,
    TooSoon,
)
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    Professional,
    Service,
    SlotHold,
    TimeOff,
    WorkingHours,
)

MINUTE = 60
DAY = 86_400
# How far around a search window busy rows are read: the longest service (720 min) plus both buffers (240 each)
# of the new slot and of an existing appointment fit comfortably.
_BUSY_MARGIN = DAY
# next_available looks at the first week first and reads the rest of the horizon only when that week is too full.
_FIRST_WINDOW = 7 * DAY
# next_available offers one professional's slots at least this far apart (or a grid step, if longer).
_SPREAD = 60 * MINUTE
# Long-expired holds are swept when a new hold is taken for the same professional.
_HOLD_SWEEP_AFTER = datetime.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Slot:
    professional_id: int
    start: datetime.datetime  # aware, in the clinic's zone
    end: datetime.datetime  # start + service duration (buffers are not part of the slot)


class PartOfDay(models.TextChoices):
    """Clinic-local wall time of a slot's start: morning < 12:00 ≤ afternoon < 18:00 ≤ evening."""

    MORNING = "morning", _("Morning")
    AFTERNOON = "afternoon", _("Afternoon")
    EVENING = "evening", _("Evening")


_PART_BOUNDS = {
    PartOfDay.MORNING: (datetime.time(0), datetime.time(12)),
    PartOfDay.AFTERNOON: (datetime.time(12), datetime.time(18)),
    PartOfDay.EVENING: (datetime.time(18), None),  # until the next midnight
}

Span = tuple[int, int]  # [start, end) in epoch seconds
Busy = tuple[int, int, int, int]  # start, end, its buffer before, its buffer after (seconds)


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------


def free_slots(
    *,
    service: Service,
    start: datetime.datetime,
    end: datetime.datetime,
    professional: Professional | None = None,
    part_of_day: PartOfDay | str | None = None,
    holder: str | None = None,
    ignore_appointment_id: int | None = None,
    enforce_policy: bool = True,
    now: datetime.datetime | None = None,
    limit: int | None = None,
) -> list[Slot]:
    """Every free slot of `service` starting in [start, end), for `professional` or for every active professional
    who performs the service; sorted by (start, professional name).

    An inactive professional, or one who does not perform the service, has no free slots (`slot_problem` says why).
    """
    now = now or timezone.now()
    agenda = _Agenda.load(
        service=service,
        professional=professional,
        lo=_epoch(start),
        hi=_epoch(end),
        holder=holder,
        ignore_appointment_id=ignore_appointment_id,
        now=now,
    )
    starts = agenda.free_starts(
        lo=_epoch(start), hi=_epoch(end), part_of_day=part_of_day, enforce_policy=enforce_policy, now=_epoch(now)
    )
    if limit is not None:
        starts = starts[: max(limit, 0)]
    return [agenda.slot(pid, s) for s, _rank, pid in starts]


def next_available(
    *,
    service: Service,
    professional: Professional | None = None,
    after: datetime.datetime | None = None,
    part_of_day: PartOfDay | str | None = None,
    holder: str | None = None,
    count: int = 3,
    now: datetime.datetime | None = None,
) -> list[Slot]:
    """The earliest `count` slots a patient can book (policy enforced: notice and horizon), spread to be real choices.

    Spread: the first offer is the earliest free slot of anyone who performs the service (ties: professional name).
    Each further offer is the earliest remaining slot that (a) does not start at the same time as an offer already
    made and (b) is at least an hour (or one grid step, if longer) away from the offers already made *of the same
    professional*. So with two professionals free all morning the offers read "Ana 08:00, Bruno 08:30, Ana 09:00",
    never "Ana 08:00, 08:30, 09:00"; with one professional, "08:00, 09:00, 10:00".

    Reads the first week first and the rest of the horizon only if the first week has too few slots, so a search
    runs the queries of at most two windows.
    """
    if count <= 0:
        return []
    now = now or timezone.now()
    lo = _epoch(max(after or now, now))
    picked: list[tuple[int, int, int]] = []
    for window_lo, window_hi in ((lo, lo + _FIRST_WINDOW), (lo + _FIRST_WINDOW, None)):
        agenda = _Agenda.load(
            service=service, professional=professional, lo=window_lo, hi=window_hi, holder=holder, now=now
        )
        hi = window_hi if window_hi is not None else agenda.horizon_end(_epoch(now))
        if hi <= window_lo:
            break
        starts = agenda.free_starts(lo=window_lo, hi=hi, part_of_day=part_of_day, enforce_policy=True, now=_epoch(now))
        _spread_pick(starts, picked, count=count, spread=max(_SPREAD, agenda.step))
        if len(picked) >= count:
            break
    return [agenda.slot(pid, s) for s, _rank, pid in picked]


def slot_problem(
    *,
    service: Service,
    professional: Professional,
    start: datetime.datetime,
    holder: str | None = None,
    ignore_appointment_id: int | None = None,
    enforce_policy: bool = True,
    now: datetime.datetime | None = None,
) -> BookingError | None:
    """Why this exact slot cannot be booked (None if it can): the same rules as `free_slots`, for one slot.

    When several rules fail, the one that matters most to the person asking comes first (inactive, does not
    perform, past, notice, horizon, closed day, hours, time off, an appointment, a hold, Google busy). A SlotTaken
    carries alternatives.
    """
    problems = slot_problems(
        service=service,
        professional=professional,
        start=start,
        holder=holder,
        ignore_appointment_id=ignore_appointment_id,
        enforce_policy=enforce_policy,
        now=now,
    )
    if not problems:
        return None
    return with_alternatives(problems[0].error, service=service, professional=professional, start=start, holder=holder)


@dataclass(frozen=True)
class Problem:
    """One failed rule for one slot. `forceable`: staff may book anyway with force=True."""

    error: BookingError
    forceable: bool = False


def slot_problems(
    *,
    service: Service,
    professional: Professional,
    start: datetime.datetime,
    holder: str | None = None,
    ignore_appointment_id: int | None = None,
    enforce_policy: bool = True,
    now: datetime.datetime | None = None,
) -> list[Problem]:
    """Every rule this slot breaks, most important first; SlotTaken errors here carry no alternatives yet."""
    now = now or timezone.now()
    s = _epoch(start)
    agenda = _Agenda.load(
        service=service,
        professional=professional,
        lo=s,
        hi=s + service.duration_minutes * MINUTE,
        holder=holder,
        ignore_appointment_id=ignore_appointment_id,
        now=now,
        include_unavailable=True,
    )
    return agenda.problems(professional.pk, s, enforce_policy=enforce_policy, now=_epoch(now))


def with_alternatives(
    error: BookingError,
    *,
    service: Service,
    professional: Professional | None,
    start: datetime.datetime,
    holder: str | None = None,
) -> BookingError:
    """A SlotTaken with the next slots a patient could take instead: the same professional's first, then anyone's."""
    if not isinstance(error, SlotTaken) or error.alternatives:
        return error
    return SlotTaken(
        alternatives(service=service, professional=professional, after=start, holder=holder), reason=error.reason
    )


def alternatives(
    *,
    service: Service,
    professional: Professional | None,
    after: datetime.datetime,
    holder: str | None = None,
    count: int = 3,
) -> list[Slot]:
    found = next_available(service=service, professional=professional, after=after, holder=holder, count=count)
    if professional is not None and len(found) < count:
        seen = {(s.professional_id, s.start) for s in found}
        others = next_available(service=service, after=after, holder=holder, count=count)
        found += [s for s in others if (s.professional_id, s.start) not in seen][: count - len(found)]
    return found


def hold_slot(
    *,
    service: Service,
    professional: Professional,
    start: datetime.datetime,
    holder: str,
    patient: Patient | None = None,
    now: datetime.datetime | None = None,
    minutes: int | None = None,
) -> SlotHold:
    """Keep a free slot for `holder` (e.g. "conversation:42") for `minutes` (default: the clinic's
    `slot_hold_minutes`; a waitlist offer holds longer).

    Serialised per professional (the professional row is locked), so two holders racing for one slot end with one
    hold and one SlotTaken. Holding the same slot again renews the hold. Raises the slot's BookingError (policy
    enforced: this is the patient's path), or PatientOverlap when the patient is busy at that time.
    """
    if not holder:
        raise ValueError("A hold needs a holder.")
    now = now or timezone.now()
    with transaction.atomic():
        locked = Professional.objects.select_for_update().get(pk=professional.pk)
        SlotHold.objects.filter(professional_id=locked.pk, expires_at__lt=now - _HOLD_SWEEP_AFTER).delete()
        problem = slot_problem(service=service, professional=locked, start=start, holder=holder, now=now)
        if problem is not None:
            raise problem
        end = start + datetime.timedelta(minutes=service.duration_minutes)
        if patient is not None and _patient_busy(patient.pk, start, end):
            raise PatientOverlap()
        expires_at = now + datetime.timedelta(minutes=minutes or service.clinic.slot_hold_minutes)
        mine = SlotHold.objects.filter(
            holder=holder, professional_id=locked.pk, service_id=service.pk, start=start, expires_at__gt=now
        ).first()
        if mine is not None:
            mine.expires_at = expires_at
            mine.save(update_fields=["expires_at"])
            return mine
        return SlotHold.objects.create(
            clinic_id=service.clinic_id,
            professional=locked,
            service=service,
            patient=patient,
            holder=holder,
            token=uuid.uuid4(),
            start=start,
            end=end,
            expires_at=expires_at,
        )


def holds_release(*, holder: str) -> int:
    """Drop every hold of `holder` (the patient chose, gave up, or the conversation ended); returns how many."""
    deleted, _by_model = SlotHold.objects.filter(holder=holder).delete()
    return deleted


def holds_consume(*, holder: str, professional_id: int, start: datetime.datetime, end: datetime.datetime) -> int:
    """Drop `holder`'s holds that overlap a slot just booked with that professional (the booking replaces them)."""
    deleted, _by_model = SlotHold.objects.filter(
        holder=holder, professional_id=professional_id, start__lt=end, end__gt=start
    ).delete()
    return deleted


def _patient_busy(patient_id: int, start: datetime.datetime, end: datetime.datetime, exclude_id=None) -> bool:
    qs = Appointment.objects.filter(patient_id=patient_id, start__lt=end, end__gt=start).exclude(
        status=AppointmentStatus.CANCELLED
    )
    if exclude_id is not None:
        qs = qs.exclude(pk=exclude_id)
    return qs.exists()


# --------------------------------------------------------------------------------------------------------------
# The agenda of one search: everything read once, then pure computation
# --------------------------------------------------------------------------------------------------------------


def _epoch(moment: datetime.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("Availability needs aware datetimes.")
    return int(moment.timestamp())


@functools.lru_cache(maxsize=256)
def _holidays(state: str, year: int, language: str = "pt_BR") -> dict[datetime.date, str]:
    """National holidays plus the state's (empty state: national only), with their names in `language`."""
    found = holidays.country_holidays("BR", subdiv=state or None, years=year, language=language)
    return dict(found.items())


def closed_days(
    clinic: Clinic, first: datetime.date, last: datetime.date, *, language: str = "pt_BR"
) -> dict[datetime.date, str]:
    """The days in [first, last] the clinic takes no appointments, with why: public holidays (national and the
    clinic's state, unless it opens on holidays; named in `language`) and its closed dates (`every_year` ones on
    their day and month). One query. Availability and the agenda page both read this, so they never disagree."""
    closed: dict[datetime.date, str] = {}
    if not clinic.open_on_holidays:
        for year in range(first.year, last.year + 1):
            for day, name in _holidays(clinic.state, year, language).items():
                if first <= day <= last:
                    closed[day] = name
    rows = ClosedDate.objects.filter(clinic_id=clinic.pk).filter(
        Q(every_year=True) | Q(date__gte=first, date__lte=last)
    )
    for date, reason, every_year in rows.values_list("date", "reason", "every_year"):
        if not every_year:
            closed[date] = reason
            continue
        for year in range(first.year, last.year + 1):
            try:
                day = date.replace(year=year)
            except ValueError:  # 29 February in a common year: not closed that year
                continue
            if first <= day <= last:
                closed[day] = reason
    return closed


class _Epoch(Func):
    """Whole seconds since the epoch of a timestamptz (FLOOR for starts, CEIL for ends: busy time never shrinks)."""

    # date_part (double precision) rather than EXTRACT (numeric since PostgreSQL 14): several times cheaper per row.
    template = "%(rounding)s(DATE_PART('epoch', %(expressions)s))::bigint"
    output_field = BigIntegerField()


@dataclass
class _Professional:
    pk: int
    name: str
    active: bool
    performs: bool
    rank: int = 0  # position by name: ties between professionals at one start time sort by it


class _Agenda:
    """The rows one search needs, read in a fixed number of queries, and the interval arithmetic over them."""

    def __init__(self, service: Service, clinic: Clinic) -> None:
        self.service = service
        self.clinic = clinic
        self.tz = zoneinfo.ZoneInfo(str(clinic.timezone))
        self.duration = service.duration_minutes * MINUTE
        self.step = (service.slot_interval_minutes or service.duration_minutes) * MINUTE
        self.before = service.buffer_before_minutes * MINUTE
        self.after = service.buffer_after_minutes * MINUTE
        self.professionals: dict[int, _Professional] = {}
        self.working: dict[int, dict[int, list[tuple[datetime.time, datetime.time]]]] = {}
        self.business: dict[int, list[tuple[datetime.time, datetime.time]]] | None = None
        self.closed: dict[datetime.date, str] = {}
        self.time_off: dict[int, list[Span]] = defaultdict(list)
        self.appointments: dict[int, list[Busy]] = defaultdict(list)  # detail mode
        self.appointment_blocks: list[tuple[int, int, int]] = []  # search mode: (professional, a, b), sorted
        self.holds: dict[int, list[Busy]] = defaultdict(list)
        self.calendar: dict[int, list[Span]] = defaultdict(list)
        self._wall_cache: dict[tuple[datetime.date, datetime.time], int] = {}
        self._dt_cache: dict[int, datetime.datetime] = {}
        self._pieces_cache: dict[tuple[int, int], list[tuple[datetime.time, datetime.time, datetime.time]]] = {}

    # ---- loading ------------------------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        *,
        service: Service,
        professional: Professional | None,
        lo: int,
        hi: int | None,
        holder: str | None,
        now: datetime.datetime,
        ignore_appointment_id: int | None = None,
        include_unavailable: bool = False,
    ) -> _Agenda:
        """Read what a search over slot starts in [lo, hi) needs (hi None: up to the horizon)."""
        agenda = cls(service, service.clinic)
        if hi is None:
            hi = agenda.horizon_end(_epoch(now))
        hi = max(hi, lo)
        agenda._load_professionals(professional, include_unavailable=include_unavailable)
        ids = list(agenda.professionals)
        if not ids:
            return agenda
        busy_lo = _aware(lo - _BUSY_MARGIN)
        busy_hi = _aware(hi + _BUSY_MARGIN)
        agenda._load_hours(ids)
        agenda._load_closed(agenda.local_date(lo - DAY), agenda.local_date(hi + DAY))
        agenda._load_time_off(ids, busy_lo, busy_hi)
        agenda._load_appointments(ids, busy_lo, busy_hi, ignore_appointment_id, detail=include_unavailable)
        agenda._load_holds(ids, busy_lo, busy_hi, holder, now)
        agenda._load_calendar(ids, busy_lo, busy_hi)
        return agenda

    def _load_professionals(self, professional: Professional | None, *, include_unavailable: bool) -> None:
        performs = Service.professionals.through.objects.filter(
            service_id=self.service.pk, professional_id=OuterRef("pk")
        )
        qs = Professional.objects.filter(clinic_id=self.service.clinic_id).annotate(performs=Exists(performs))
        if professional is not None:
            qs = qs.filter(pk=professional.pk)
        rows = sorted(qs.values_list("pk", "name", "active", "performs"), key=lambda r: (r[1].lower(), r[0]))
        for rank, (pk, name, active, does) in enumerate(rows):
            if include_unavailable or (active and does):
                self.professionals[pk] = _Professional(pk, name, active, does, rank)

    def _load_hours(self, ids: list[int]) -> None:
        rows = WorkingHours.objects.filter(professional_id__in=ids).values_list(
            "professional_id", "weekday", "start", "end"
        )
        for pk, weekday, start, end in rows:
            self.working.setdefault(pk, {}).setdefault(weekday, []).append((start, end))
        for days in self.working.values():
            for intervals in days.values():
                intervals.sort()
        business = BusinessHours.objects.filter(clinic_id=self.clinic.pk).values_list("weekday", "start", "end")
        for weekday, start, end in business:
            self.business = self.business or {}
            self.business.setdefault(weekday, []).append((start, end))
        for intervals in (self.business or {}).values():
            intervals.sort()

    def _load_closed(self, first: datetime.date, last: datetime.date) -> None:
        self.closed = closed_days(self.clinic, first, last)

    def _load_time_off(self, ids: list[int], lo: datetime.datetime, hi: datetime.datetime) -> None:
        rows = TimeOff.objects.filter(clinic_id=self.clinic.pk, start__lt=hi, end__gt=lo).filter(
            Q(professional__isnull=True) | Q(professional_id__in=ids)
        )
        for pk, start, end in rows.values_list("professional_id", "start", "end"):
            span = (_epoch(start), _epoch(end))
            for target in ids if pk is None else (pk,):
                self.time_off[target].append(span)

    def _load_appointments(
        self, ids: list[int], lo: datetime.datetime, hi: datetime.datetime, ignore_id: int | None, *, detail: bool
    ) -> None:
        """Active appointments overlapping [lo, hi), in whole epoch seconds.

        `detail` (one slot's problems): each as (start, end, its buffers), to tell "taken" from "too close".
        Otherwise (a search, thousands of rows for a busy clinic over two months) PostgreSQL computes straight away
        the range of new-slot starts each one forbids, sorted by professional and range: integers convert several
        times faster than timestamps, and no Python loop touches each row (the biggest cost of a search otherwise).
        """
        qs = Appointment.objects.filter(
            clinic_id=self.clinic.pk, professional_id__in=ids, start__lt=hi, end__gt=lo
        ).exclude(status=AppointmentStatus.CANCELLED)
        if ignore_id is not None:
            qs = qs.exclude(pk=ignore_id)
        if detail:
            rows = qs.annotate(
                s=_Epoch("start", rounding="FLOOR"),
                e=_Epoch("end", rounding="CEIL"),
                b=F("service__buffer_before_minutes") * MINUTE,
                a=F("service__buffer_after_minutes") * MINUTE,
            ).values_list("professional_id", "s", "e", "b", "a")
            for pk, start, end, before, after in rows:
                self.appointments[pk].append((start, end, before, after))
            return
        reach_back, reach_on = self.duration + self.after, self.before
        rows = (
            qs.annotate(
                lo=ExpressionWrapper(
                    _Epoch("start", rounding="FLOOR") - F("service__buffer_before_minutes") * MINUTE - reach_back,
                    output_field=BigIntegerField(),
                ),
                hi=ExpressionWrapper(
                    _Epoch("end", rounding="CEIL") + F("service__buffer_after_minutes") * MINUTE + reach_on,
                    output_field=BigIntegerField(),
                ),
            )
            .order_by("professional_id", "lo", "hi")
            .values_list("professional_id", "lo", "hi")
        )
        sql, params = rows.query.sql_with_params()
        with connection.cursor() as cursor:  # plain tuples: Django's per-row machinery would double the cost
            cursor.execute(sql, params)
            self.appointment_blocks = cursor.fetchall()

    def _load_holds(
        self, ids: list[int], lo: datetime.datetime, hi: datetime.datetime, holder: str | None, now: datetime.datetime
    ) -> None:
        qs = SlotHold.objects.filter(professional_id__in=ids, expires_at__gt=now, start__lt=hi, end__gt=lo)
        if holder:
            qs = qs.exclude(holder=holder)  # a holder's own holds never block them
        rows = qs.values_list(
            "professional_id", "start", "end", "service__buffer_before_minutes", "service__buffer_after_minutes"
        )
        for pk, start, end, before, after in rows:
            self.holds[pk].append((_epoch(start), _epoch(end), before * MINUTE, after * MINUTE))

    def _load_calendar(self, ids: list[int], lo: datetime.datetime, hi: datetime.datetime) -> None:
        # The seam already leaves out Cecilia's own events (they are the appointments counted above), so an
        # appointment being moved is not blocked by its own event in Google.
        busy = integration_selectors.calendar_busy(ids, lo, hi)
        for pk, intervals in busy.items():
            self.calendar[pk].extend((_epoch(s), _epoch(e)) for s, e in intervals)

    # ---- time ---------------------------------------------------------------------------------------------------

    def wall(self, day: datetime.date, time: datetime.time) -> int:
        """Epoch seconds of a wall-clock time on a local date (first occurrence; a DST gap resolves after the jump)."""
        key = (day, time)
        value = self._wall_cache.get(key)
        if value is None:
            value = int(datetime.datetime.combine(day, time, tzinfo=self.tz).timestamp())
            self._wall_cache[key] = value
        return value

    def midnight(self, day: datetime.date) -> int:
        return self.wall(day, datetime.time(0))

    def local_date(self, epoch: int) -> datetime.date:
        return datetime.datetime.fromtimestamp(epoch, self.tz).date()

    def local(self, epoch: int) -> datetime.datetime:
        value = self._dt_cache.get(epoch)
        if value is None:
            value = datetime.datetime.fromtimestamp(epoch, self.tz)
            self._dt_cache[epoch] = value
        return value

    def slot(self, professional_id: int, start: int) -> Slot:
        return Slot(professional_id, self.local(start), self.local(start + self.duration))

    def horizon_end(self, now: int) -> int:
        """First instant past the horizon: midnight after the last bookable day."""
        last = self.local_date(now) + datetime.timedelta(days=self.clinic.booking_horizon_days)
        return self.midnight(last + datetime.timedelta(days=1))

    def policy_bounds(self, lo: int, hi: int, *, enforce_policy: bool, now: int) -> Span:
        lo = max(lo, now)  # never the past, whoever asks
        if enforce_policy:
            lo = max(lo, now + self.clinic.booking_min_notice_minutes * MINUTE)
            hi = min(hi, self.horizon_end(now))
        return lo, hi

    # ---- open hours ---------------------------------------------------------------------------------------------

    def open_pieces(self, pk: int, day: datetime.date) -> list[tuple[int, int, int]]:
        """(grid anchor, start, end) of each piece of working hours ∩ business hours on a local date, in order."""
        if day in self.closed:
            return []
        key = (pk, day.weekday())
        pieces = self._pieces_cache.get(key)
        if pieces is None:
            pieces = self._pieces_cache[key] = self._wall_pieces(*key)
        wall = self.wall
        found = []
        for anchor, start, end in pieces:
            lo, hi = wall(day, start), wall(day, end)
            if lo < hi:  # both ends in one DST gap: nothing left
                found.append((wall(day, anchor), lo, hi))
        return found

    def _wall_pieces(self, pk: int, weekday: int) -> list[tuple[datetime.time, datetime.time, datetime.time]]:
        """Working hours ∩ business hours of a weekday as wall times: (working interval's start, start, end)."""
        working = self.working.get(pk, {}).get(weekday, ())
        if self.business is None:
            return [(start, start, end) for start, end in working]
        return [
            (start, max(start, opens), min(end, closes))
            for start, end in working
            for opens, closes in self.business.get(weekday, ())
            if max(start, opens) < min(end, closes)
        ]

    def part_bounds(self, day: datetime.date, part: str | None) -> Span:
        if not part:
            return self.midnight(day), self.midnight(day + datetime.timedelta(days=1))
        start, end = _PART_BOUNDS[PartOfDay(part)]
        hi = self.wall(day, end) if end is not None else self.midnight(day + datetime.timedelta(days=1))
        return self.wall(day, start), hi

    # ---- busy time ----------------------------------------------------------------------------------------------

    def blocked_starts(self, pk: int) -> list[tuple[int, int, int]]:
        """Open ranges (pk, a, b) of slot starts that would touch busy time, sorted by a: start s is free of busy
        time iff no range has a < s < b. (Sorted is enough, no merging: see `_collect_starts`.)"""
        dur, before, after = self.duration, self.before, self.after
        blocks = self.appointment_blocks
        ranges = blocks[bisect.bisect_left(blocks, (pk,)) : bisect.bisect_left(blocks, (pk + 1,))]
        extra = [(pk, s - b - dur - after, e + a + before) for s, e, b, a in self.appointments.get(pk, ())]
        extra += [(pk, s - b - dur - after, e + a + before) for s, e, b, a in self.holds.get(pk, ())]
        extra += [(pk, s - dur - after, e + before) for s, e in self.time_off.get(pk, ())]
        extra += [(pk, s - dur - after, e + before) for s, e in self.calendar.get(pk, ())]
        if extra:
            ranges += extra
            ranges.sort()
        return ranges

    # ---- search -------------------------------------------------------------------------------------------------

    def free_starts(
        self, *, lo: int, hi: int, part_of_day: str | None, enforce_policy: bool, now: int
    ) -> list[tuple[int, int, int]]:
        """(start, professional rank, professional id) of every free slot starting in [lo, hi), sorted."""
        lo, hi = self.policy_bounds(lo, hi, enforce_policy=enforce_policy, now=now)
        found: list[tuple[int, int, int]] = []
        if lo >= hi:
            return found
        days = list(_dates(self.local_date(lo), self.local_date(hi - 1)))
        for pro in self.professionals.values():
            self._collect_starts(found, pro, days, lo, hi, part_of_day)
        found.sort()
        return found

    def _collect_starts(
        self, found: list[tuple[int, int, int]], pro: _Professional, days: list[datetime.date], lo: int, hi: int,
        part: str | None,
    ) -> None:  # fmt: skip
        """Append (start, rank, id) of each free grid start of one professional: one pass over the sorted busy ranges
        (the hot loop of a search, hence the plain locals)."""
        dur, step, rank, pk = self.duration, self.step, pro.rank, pro.pk
        blocked = self.blocked_starts(pk)
        append = found.append
        j, n = 0, len(blocked)
        for day in days:
            day_lo, day_hi = self.part_bounds(day, part) if part else (lo, hi)
            day_lo, day_hi = max(day_lo, lo), min(day_hi, hi) - 1
            for anchor, open_lo, open_hi in self.open_pieces(pk, day):
                first = max(open_lo, day_lo)
                last = min(open_hi - dur, day_hi)
                s = anchor + -(-(first - anchor) // step) * step  # first grid point at or after `first`
                while s <= last:
                    # Ranges ending at or before s can never block this or a later start: pass them. The first one
                    # left blocks s iff it begins before s; any later one begins no earlier, so cannot.
                    while j < n and blocked[j][2] <= s:
                        j += 1
                    if j < n and blocked[j][1] < s:
                        s = anchor + -(-(blocked[j][2] - anchor) // step) * step  # jump past the busy range
                        continue
                    append((s, rank, pk))
                    s += step

    # ---- one slot -----------------------------------------------------------------------------------------------

    def problems(self, pk: int, s: int, *, enforce_policy: bool, now: int) -> list[Problem]:
        pro = self.professionals.get(pk)
        if pro is None:  # another clinic's professional: the service is not theirs
            return [Problem(ProfessionalDoesNotPerform())]
        found: list[Problem] = []
        if not pro.active:
            found.append(Problem(ProfessionalUnavailable(reason="inactive")))
        if not pro.performs:
            found.append(Problem(ProfessionalDoesNotPerform()))
        e = s + self.duration
        if s < now:
            found.append(Problem(InThePast()))
        elif enforce_policy:
            earliest = now + self.clinic.booking_min_notice_minutes * MINUTE
            if s < earliest:
                found.append(Problem(TooSoon(earliest=self.local(earliest), tz=self.tz)))
            horizon = self.horizon_end(now)
            if s >= horizon:
                found.append(Problem(BeyondHorizon(last_day=self.local_date(horizon) - datetime.timedelta(days=1))))
        day = self.local_date(s)
        if day in self.closed:
            found.append(Problem(ClinicClosed(date=day, name=self.closed[day]), forceable=True))
        else:
            anchors = [anchor for anchor, lo, hi in self.open_pieces(pk, day) if lo <= s and e <= hi]
            if not anchors:
                found.append(Problem(OutsideHours(), forceable=True))
            elif enforce_policy and all((s - anchor) % self.step for anchor in anchors):
                found.append(Problem(OutsideHours(reason="off_grid"), forceable=True))
        span = (s - self.before, e + self.after)
        if _touches(span, self.time_off.get(pk, ())):
            found.append(Problem(ProfessionalUnavailable(reason="time_off")))
        found += _busy_problems((s, e), span, self.appointments.get(pk, ()), bare_reason="booked")
        found += _busy_problems((s, e), span, self.holds.get(pk, ()), bare_reason="held")
        if _touches(span, self.calendar.get(pk, ())):
            found.append(Problem(ProfessionalUnavailable(reason="calendar_busy"), forceable=True))
        return found


def _busy_problems(bare: Span, span: Span, busy: Iterable[Busy], *, bare_reason: str) -> list[Problem]:
    """Overlapping the slot itself is never allowed; touching only a buffer (ours or theirs) staff may force."""
    if any(s < bare[1] and bare[0] < e for s, e, _b, _a in busy):
        return [Problem(SlotTaken(reason=bare_reason))]
    if any(s - b < span[1] and span[0] < e + a for s, e, b, a in busy):
        return [Problem(SlotTaken(reason="buffer"), forceable=True)]
    return []


def _touches(span: Span, intervals: Iterable[Span]) -> bool:
    return any(s < span[1] and span[0] < e for s, e in intervals)


def _dates(first: datetime.date, last: datetime.date) -> Iterator[datetime.date]:
    day = first
    while day <= last:
        yield day
        day += datetime.timedelta(days=1)


def _aware(epoch: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


def _spread_pick(
    starts: list[tuple[int, int, int]], picked: list[tuple[int, int, int]], *, count: int, spread: int
) -> None:
    """Extend `picked` (see next_available) from candidates sorted by start."""
    for candidate in starts:
        if len(picked) >= count:
            return
        s, _rank, pk = candidate
        if any(s == p[0] or (pk == p[2] and abs(s - p[0]) < spread) for p in picked):
            continue
        picked.append(candidate)
