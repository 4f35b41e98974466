"""Free slots: each availability rule alone, then combined (real PostgreSQL)."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cecilia.models import ClosedDate
from scheduling.availability import PartOfDay, Slot, free_slots, next_available, slot_problem
from scheduling.errors import (
    BeyondHorizon,
    ClinicClosed,
    InThePast,
    OutsideHours,
    ProfessionalDoesNotPerform,
    ProfessionalUnavailable,
    SlotTaken,
    TooSoon,
)
from scheduling.models import AppointmentStatus
from tests import factories
from tests.scheduling.test_availability_support import (
    MONDAY,
    SP,
    T,
    at,
    book,
    business,
    clinic,
    day_window,
    hhmm,
    hours,
    professional,
    service,
    time_off,
)

pytestmark = pytest.mark.django_db

EARLIER = at(MONDAY - datetime.timedelta(days=7), 9)  # "now" for tests not about the policy
MORNING = ["08:00", "08:30", "09:00", "09:30", "10:00", "10:30", "11:00", "11:30"]
AFTERNOON = ["14:00", "14:30", "15:00", "15:30", "16:00", "16:30", "17:00", "17:30"]


@pytest.fixture
def ana():
    c = clinic()
    pro = professional(c, "Dra. Ana")
    return {"clinic": c, "pro": pro, "svc": service(c, [pro], duration_minutes=30)}


def _slots(agenda, day=MONDAY, **kwargs):
    kwargs.setdefault("now", EARLIER)
    return free_slots(service=agenda["svc"], **day_window(day), **kwargs)


# ---- working hours, grid, business hours ---------------------------------------------------------------------------


def test_split_shifts_offer_both_shifts_and_nothing_at_lunch(ana):
    slots = _slots(ana)
    assert hhmm(slots) == MORNING + AFTERNOON
    assert slots[0] == Slot(ana["pro"].pk, at(MONDAY, 8), at(MONDAY, 8, 30))
    assert all(s.start.tzinfo is not None for s in slots)


def test_a_day_without_working_hours_has_no_slots(ana):
    c = ana["clinic"]
    weekday_only = professional(c, "Dr. Bruno", weekdays=range(5))
    svc = service(c, [weekday_only])
    saturday = MONDAY + datetime.timedelta(days=5)
    assert free_slots(service=svc, **day_window(saturday), now=EARLIER) == []
    assert len(free_slots(service=svc, **day_window(MONDAY), now=EARLIER)) == 16


def test_slots_step_by_the_service_interval_and_start_where_each_shift_starts():
    c = clinic()
    pro = factories.professional(c, name="Dra. Ana")
    hours(pro, [0], (T(8, 10), T(9, 40)), (T(13, 5), T(14)))
    svc = service(c, [pro], duration_minutes=40, slot_interval_minutes=20)
    slots = free_slots(service=svc, **day_window(MONDAY), now=EARLIER)
    # 08:10 + k·20 while the 40 minutes fit before 09:40; then 13:05, 13:25 (13:45 would end at 14:25).
    assert hhmm(slots) == ["08:10", "08:30", "08:50", "13:05"]


def test_without_an_interval_a_slot_starts_where_the_previous_one_could_end():
    c = clinic()
    pro = factories.professional(c, name="Dra. Ana")
    hours(pro, [0], (T(8), T(10)))
    svc = service(c, [pro], duration_minutes=45)
    assert hhmm(free_slots(service=svc, **day_window(MONDAY), now=EARLIER)) == ["08:00", "08:45"]


def test_business_hours_narrow_the_working_hours(ana):
    business(ana["clinic"], range(5), (T(9), T(17)))
    assert hhmm(_slots(ana)) == MORNING[2:] + AFTERNOON[:-2]


def test_a_weekday_without_business_hours_is_closed_once_any_are_configured(ana):
    business(ana["clinic"], range(5), (T(8), T(18)))
    saturday = MONDAY + datetime.timedelta(days=5)
    assert _slots(ana, saturday) == []
    assert len(_slots(ana)) == 16


def test_slots_are_anchored_to_the_working_interval_not_to_the_business_hours(ana):
    business(ana["clinic"], [0], (T(8, 15), T(12)))
    # The grid stays 08:00, 08:30…; 08:00 starts before the clinic opens, so the first slot is 08:30.
    assert hhmm(_slots(ana))[:2] == ["08:30", "09:00"]


# ---- closed days and holidays -------------------------------------------------------------------------------------


def test_a_closed_date_has_no_slots(ana):
    ClosedDate.objects.create(clinic=ana["clinic"], date=MONDAY, reason="Dedetização")
    assert _slots(ana) == []
    assert len(_slots(ana, MONDAY + datetime.timedelta(days=1))) == 16
    problem = slot_problem(service=ana["svc"], professional=ana["pro"], start=at(MONDAY, 9), now=EARLIER)
    assert isinstance(problem, ClinicClosed)
    assert problem.details == {"date": "2026-03-02", "name": "Dedetização"}


def test_an_every_year_closed_date_repeats_on_its_day_and_month(ana):
    ClosedDate.objects.create(
        clinic=ana["clinic"], date=datetime.date(2019, 3, 2), every_year=True, reason="Aniversário"
    )
    ClosedDate.objects.create(clinic=ana["clinic"], date=datetime.date(2019, 3, 3), every_year=False, reason="Só 2019")
    assert _slots(ana) == []  # 2 March 2026
    assert len(_slots(ana, MONDAY + datetime.timedelta(days=1))) == 16  # 3 March 2026: the 2019 one was once


@pytest.mark.parametrize(
    ("state", "open_on_state_day"),
    [("SP", False), ("RJ", True)],
)
def test_state_holidays_close_only_the_clinics_of_that_state(state, open_on_state_day):
    c = clinic(state=state)
    pro = professional(c, "Dra. Ana")
    svc = service(c, [pro])
    revolution = datetime.date(2026, 7, 9)  # São Paulo's 9 July (a Thursday)
    slots = free_slots(service=svc, **day_window(revolution), now=EARLIER)
    assert bool(slots) is open_on_state_day
    problem = slot_problem(service=svc, professional=pro, start=at(revolution, 9), now=EARLIER)
    if open_on_state_day:
        assert problem is None
    else:
        assert isinstance(problem, ClinicClosed)
        assert problem.details["name"] == "Revolução Constitucionalista"


def test_national_holidays_close_every_clinic_unless_it_opens_on_holidays(ana):
    independence = datetime.date(2026, 9, 7)
    rio = clinic(state="RJ")
    rio_pro = professional(rio, "Dr. Rio")
    assert _slots(ana, independence) == []
    assert free_slots(service=service(rio, [rio_pro]), **day_window(independence), now=EARLIER) == []
    ana["clinic"].open_on_holidays = True
    ana["clinic"].save()
    ana["svc"].refresh_from_db()
    assert len(_slots(ana, independence)) == 16


# ---- time off, appointments, buffers ------------------------------------------------------------------------------


def test_time_off_of_the_professional_removes_only_their_slots(ana):
    bruno = professional(ana["clinic"], "Dr. Bruno")
    ana["svc"].professionals.add(bruno)
    time_off(ana["clinic"], at(MONDAY, 10), at(MONDAY, 15), professional=ana["pro"])
    slots = _slots(ana)
    ana_slots = [s for s in slots if s.professional_id == ana["pro"].pk]
    assert hhmm(ana_slots) == MORNING[:4] + AFTERNOON[2:]
    assert len([s for s in slots if s.professional_id == bruno.pk]) == 16
    problem = slot_problem(service=ana["svc"], professional=ana["pro"], start=at(MONDAY, 10), now=EARLIER)
    assert isinstance(problem, ProfessionalUnavailable)
    assert problem.details == {"reason": "time_off"}


def test_clinic_wide_time_off_removes_everyones_slots(ana):
    bruno = professional(ana["clinic"], "Dr. Bruno")
    ana["svc"].professionals.add(bruno)
    time_off(ana["clinic"], at(MONDAY, 0), at(MONDAY, 12))
    slots = _slots(ana)
    assert hhmm(slots) == sorted(AFTERNOON * 2)


def test_active_appointments_take_their_time_and_cancelled_ones_free_it(ana):
    patient = factories.patient(ana["clinic"])
    book(patient, ana["pro"], ana["svc"], at(MONDAY, 9))
    book(patient, ana["pro"], ana["svc"], at(MONDAY, 10), status=AppointmentStatus.CANCELLED)
    assert "09:00" not in hhmm(_slots(ana))
    assert "10:00" in hhmm(_slots(ana))
    problem = slot_problem(service=ana["svc"], professional=ana["pro"], start=at(MONDAY, 9), now=EARLIER)
    assert isinstance(problem, SlotTaken)
    assert problem.details["reason"] == "booked"
    assert problem.alternatives and problem.alternatives[0].professional_id == ana["pro"].pk


def test_an_appointment_blocks_any_slot_overlapping_it_on_a_finer_grid(ana):
    svc = service(ana["clinic"], [ana["pro"]], duration_minutes=30, slot_interval_minutes=15)
    book(factories.patient(ana["clinic"]), ana["pro"], svc, at(MONDAY, 9))
    slots = free_slots(service=svc, **day_window(MONDAY), now=EARLIER)
    assert [t for t in hhmm(slots) if "08:30" <= t <= "09:30"] == ["08:30", "09:30"]


def test_the_new_services_buffers_need_free_time_around_the_slot(ana):
    plain = ana["svc"]
    buffered = service(
        ana["clinic"], [ana["pro"]], duration_minutes=30, slot_interval_minutes=15, buffer_before_minutes=10,
        buffer_after_minutes=10,
    )  # fmt: skip
    book(factories.patient(ana["clinic"]), ana["pro"], plain, at(MONDAY, 9))
    times = hhmm(free_slots(service=buffered, **day_window(MONDAY), now=EARLIER))
    # 08:15–08:45 (+10 → 08:55) fits; 08:30 would clean until 09:10; 09:30 would set up from 09:20; 09:45 fits.
    assert [t for t in times if "08:00" <= t <= "10:00"] == ["08:00", "08:15", "09:45", "10:00"]


def test_an_existing_appointment_keeps_its_own_buffers(ana):
    cleaned = service(ana["clinic"], [ana["pro"]], duration_minutes=30, buffer_after_minutes=15)
    fine = service(ana["clinic"], [ana["pro"]], duration_minutes=30, slot_interval_minutes=15)
    book(factories.patient(ana["clinic"]), ana["pro"], cleaned, at(MONDAY, 9))
    times = hhmm(free_slots(service=fine, **day_window(MONDAY), now=EARLIER))
    assert [t for t in times if "08:30" <= t <= "10:00"] == ["08:30", "09:45", "10:00"]
    problem = slot_problem(service=fine, professional=ana["pro"], start=at(MONDAY, 9, 30), now=EARLIER)
    assert isinstance(problem, SlotTaken)
    assert problem.details["reason"] == "buffer"


def test_buffers_may_reach_outside_working_hours(ana):
    early = service(ana["clinic"], [ana["pro"]], duration_minutes=30, buffer_before_minutes=30, buffer_after_minutes=30)
    assert hhmm(free_slots(service=early, **day_window(MONDAY), now=EARLIER))[:1] == ["08:00"]


# ---- policy: past, notice, horizon ---------------------------------------------------------------------------------


def test_minimum_notice_hides_slots_too_soon_for_patients_but_not_for_staff(ana):
    ana["clinic"].booking_min_notice_minutes = 120
    ana["clinic"].save()
    ana["svc"].refresh_from_db()
    now = at(MONDAY, 8, 10)
    assert hhmm(_slots(ana, now=now))[:2] == ["10:30", "11:00"]
    # Staff skip the notice but are never offered the past: 08:00 has begun.
    assert hhmm(_slots(ana, now=now, enforce_policy=False))[:2] == ["08:30", "09:00"]
    too_soon = slot_problem(service=ana["svc"], professional=ana["pro"], start=at(MONDAY, 9), now=now)
    assert isinstance(too_soon, TooSoon)
    assert too_soon.details == {"earliest": at(MONDAY, 10, 10).isoformat()}
    assert (
        slot_problem(service=ana["svc"], professional=ana["pro"], start=at(MONDAY, 9), now=now, enforce_policy=False)
        is None
    )
    past = slot_problem(service=ana["svc"], professional=ana["pro"], start=at(MONDAY, 8), now=now, enforce_policy=False)
    assert isinstance(past, InThePast)


def test_the_horizon_ends_with_its_last_day_for_patients_only(ana):
    ana["clinic"].booking_horizon_days = 7
    ana["clinic"].save()
    ana["svc"].refresh_from_db()
    now = at(MONDAY, 15)
    window = {"start": at(MONDAY, 0), "end": at(MONDAY + datetime.timedelta(days=10), 0)}
    days = {s.start.date() for s in free_slots(service=ana["svc"], now=now, **window)}
    assert max(days) == MONDAY + datetime.timedelta(days=7)
    staff_days = {s.start.date() for s in free_slots(service=ana["svc"], now=now, enforce_policy=False, **window)}
    assert max(staff_days) == MONDAY + datetime.timedelta(days=9)
    beyond = slot_problem(
        service=ana["svc"], professional=ana["pro"], start=at(MONDAY + datetime.timedelta(days=8), 8), now=now
    )
    assert isinstance(beyond, BeyondHorizon)
    assert beyond.details == {"last_day": "2026-03-09"}


# ---- professionals and services -----------------------------------------------------------------------------------


def test_an_inactive_professional_has_no_slots(ana):
    ana["pro"].active = False
    ana["pro"].save()
    assert _slots(ana) == []
    assert _slots(ana, professional=ana["pro"]) == []
    problem = slot_problem(service=ana["svc"], professional=ana["pro"], start=at(MONDAY, 9), now=EARLIER)
    assert isinstance(problem, ProfessionalUnavailable)
    assert problem.details == {"reason": "inactive"}


def test_a_professional_who_does_not_perform_the_service_is_not_offered(ana):
    bruno = professional(ana["clinic"], "Dr. Bruno")
    assert {s.professional_id for s in _slots(ana)} == {ana["pro"].pk}
    assert _slots(ana, professional=bruno) == []
    problem = slot_problem(service=ana["svc"], professional=bruno, start=at(MONDAY, 9), now=EARLIER)
    assert isinstance(problem, ProfessionalDoesNotPerform)


def test_another_clinics_professional_does_not_perform_this_clinics_service(ana):
    other = clinic()
    stranger = professional(other, "Dra. Outra")
    assert _slots(ana, professional=stranger) == []
    problem = slot_problem(service=ana["svc"], professional=stranger, start=at(MONDAY, 9), now=EARLIER)
    assert isinstance(problem, ProfessionalDoesNotPerform)


def test_slots_of_several_professionals_sort_by_time_then_name(ana):
    carla = professional(ana["clinic"], "Dra. Carla")
    bruno = professional(ana["clinic"], "Dr. Bruno")
    ana["svc"].professionals.add(carla, bruno)
    slots = _slots(ana, limit=4)
    assert [(s.start.strftime("%H:%M"), s.professional_id) for s in slots] == [
        ("08:00", bruno.pk),  # "Dr. Bruno" sorts before "Dra. Ana"
        ("08:00", ana["pro"].pk),
        ("08:00", carla.pk),
        ("08:30", bruno.pk),
    ]


# ---- part of day, off-grid, outside hours -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "expected"),
    [(PartOfDay.MORNING, MORNING), (PartOfDay.AFTERNOON, AFTERNOON), (PartOfDay.EVENING, ["18:00", "18:30"])],
)
def test_part_of_day_filters_by_the_clinic_local_start(ana, part, expected):
    hours(ana["pro"], [0], (T(18), T(19)))
    assert hhmm(_slots(ana, part_of_day=part)) == expected


def test_a_time_outside_hours_or_off_the_grid_is_explained(ana):
    lunch = slot_problem(service=ana["svc"], professional=ana["pro"], start=at(MONDAY, 12), now=EARLIER)
    assert isinstance(lunch, OutsideHours)
    assert lunch.details == {"reason": "hours"}
    straddling = slot_problem(service=ana["svc"], professional=ana["pro"], start=at(MONDAY, 11, 45), now=EARLIER)
    assert isinstance(straddling, OutsideHours)
    off_grid = slot_problem(service=ana["svc"], professional=ana["pro"], start=at(MONDAY, 9, 10), now=EARLIER)
    assert isinstance(off_grid, OutsideHours)
    assert off_grid.details == {"reason": "off_grid"}
    # Staff book at any minute within the hours.
    assert (
        slot_problem(
            service=ana["svc"], professional=ana["pro"], start=at(MONDAY, 9, 10), now=EARLIER, enforce_policy=False
        )
        is None
    )


# ---- Google Calendar busy -----------------------------------------------------------------------------------------


def test_google_busy_time_blocks_slots_and_is_asked_once_per_search(ana, monkeypatch):
    bruno = professional(ana["clinic"], "Dr. Bruno")
    ana["svc"].professionals.add(bruno)
    calls = []

    def calendar_busy(professional_ids, start, end):
        calls.append((sorted(professional_ids), start, end))
        return {ana["pro"].pk: [(at(MONDAY, 9, 15), at(MONDAY, 10))]}

    monkeypatch.setattr("integrations.selectors.calendar_busy", calendar_busy)
    slots = free_slots(
        service=ana["svc"], start=at(MONDAY, 0), end=at(MONDAY + datetime.timedelta(days=5), 0), now=EARLIER
    )
    assert len(calls) == 1
    assert calls[0][0] == sorted([ana["pro"].pk, bruno.pk])
    assert calls[0][1] <= at(MONDAY, 0) and calls[0][2] >= at(MONDAY + datetime.timedelta(days=5), 0)
    ana_monday = [s for s in slots if s.professional_id == ana["pro"].pk and s.start.date() == MONDAY]
    assert hhmm(ana_monday) == MORNING[:2] + MORNING[4:] + AFTERNOON
    assert len([s for s in slots if s.professional_id == bruno.pk and s.start.date() == MONDAY]) == 16
    problem = slot_problem(service=ana["svc"], professional=ana["pro"], start=at(MONDAY, 9, 30), now=EARLIER)
    assert isinstance(problem, ProfessionalUnavailable)
    assert problem.details == {"reason": "calendar_busy"}


def test_a_calendar_that_cannot_be_read_offers_nothing_from_it(ana, monkeypatch):
    # The seam's fail-safe contract: an unreadable calendar is busy for the whole window.
    monkeypatch.setattr(
        "integrations.selectors.calendar_busy", lambda ids, start, end: {pk: [(start, end)] for pk in ids}
    )
    assert _slots(ana) == []


# ---- DST (São Paulo had DST until 2019) ---------------------------------------------------------------------------


def test_wall_clock_hours_hold_on_both_sides_of_the_spring_forward():
    c = clinic()
    pro = professional(c, "Dra. Ana")
    svc = service(c, [pro])
    saturday, monday = datetime.date(2018, 11, 3), datetime.date(2018, 11, 5)
    now = datetime.datetime(2018, 10, 1, tzinfo=SP)
    slots = free_slots(service=svc, start=at(saturday, 0), end=at(monday, 23), now=now, part_of_day="morning")
    firsts = {s.start.date(): s.start for s in reversed(slots)}
    assert firsts[saturday].strftime("%H:%M %z") == "08:00 -0300"
    assert firsts[monday].strftime("%H:%M %z") == "08:00 -0200"
    assert all(s.end - s.start == datetime.timedelta(minutes=30) for s in slots)
    assert len(slots) == 3 * 8


def test_a_shift_starting_in_the_skipped_hour_starts_when_the_clock_jumps():
    c = clinic()
    pro = factories.professional(c, name="Dr. Plantão")
    sunday = datetime.date(2018, 11, 4)  # 00:00 became 01:00
    hours(pro, [sunday.weekday()], (T(0), T(3)))
    svc = service(c, [pro])
    now = datetime.datetime(2018, 10, 1, tzinfo=SP)
    slots = free_slots(service=svc, **day_window(sunday), now=now)
    # 00:00–03:00 on the clock is two real hours: 01:00 to 03:00 (−02).
    assert [s.start.strftime("%H:%M %z") for s in slots] == ["01:00 -0200", "01:30 -0200", "02:00 -0200", "02:30 -0200"]
    assert slots[0].start == datetime.datetime(2018, 11, 4, 3, tzinfo=datetime.UTC)


def test_the_repeated_hour_of_the_fall_back_counts_once():
    c = clinic()
    pro = factories.professional(c, name="Dr. Plantão")
    saturday = datetime.date(2019, 2, 16)  # at 24:00 (−02) the clock went back to 23:00 (−03)
    hours(pro, [saturday.weekday()], (T(22), T(23, 59)))
    hours(pro, [6], (T(8), T(9)))
    svc = service(c, [pro])
    now = datetime.datetime(2019, 1, 1, tzinfo=SP)
    slots = free_slots(service=svc, start=at(saturday, 0), end=at(saturday + datetime.timedelta(days=2), 0), now=now)
    assert [s.start.strftime("%d %H:%M %z") for s in slots] == [
        "16 22:00 -0200",
        "16 22:30 -0200",
        "16 23:00 -0200",
        "17 08:00 -0300",
        "17 08:30 -0300",
    ]
    # An appointment in the second 23:00 (−03) is after the shift: it does not block the first 23:00.
    patient = factories.patient(c)
    book(patient, pro, svc, datetime.datetime(2019, 2, 17, 2, tzinfo=datetime.UTC))
    assert len(free_slots(service=svc, **day_window(saturday), now=now)) == 3


def test_a_day_across_the_spring_forward_is_23_hours_of_slots_for_round_the_clock_staff():
    c = clinic()
    pro = factories.professional(c, name="Dr. Plantão")
    hours(pro, range(7), (T(0), T(23, 59)))
    svc = service(c, [pro], duration_minutes=60)
    now = datetime.datetime(2018, 10, 1, tzinfo=SP)
    sunday = datetime.date(2018, 11, 4)
    slots = free_slots(service=svc, **day_window(sunday), now=now)
    assert len(slots) == 22  # 01:00 … 22:00 (23:00 would end after 23:59)
    assert len(free_slots(service=svc, **day_window(sunday + datetime.timedelta(days=1)), now=now)) == 23


# ---- next available -----------------------------------------------------------------------------------------------


def test_next_available_spreads_offers_across_professionals_and_times(ana):
    bruno = professional(ana["clinic"], "Dra. Bruna")
    ana["svc"].professionals.add(bruno)
    offers = next_available(service=ana["svc"], after=at(MONDAY, 7), now=EARLIER)
    assert [(s.start.strftime("%H:%M"), s.professional_id) for s in offers] == [
        ("08:00", ana["pro"].pk),
        ("08:30", bruno.pk),
        ("09:00", ana["pro"].pk),
    ]


def test_next_available_for_one_professional_offers_an_hour_apart(ana):
    offers = next_available(service=ana["svc"], professional=ana["pro"], after=at(MONDAY, 7), now=EARLIER, count=4)
    assert hhmm(offers) == ["08:00", "09:00", "10:00", "11:00"]


def test_next_available_looks_past_a_full_first_week(ana):
    time_off(ana["clinic"], at(MONDAY, 0), at(MONDAY + datetime.timedelta(days=10), 0), professional=ana["pro"])
    offers = next_available(service=ana["svc"], after=at(MONDAY, 0), now=EARLIER, part_of_day="afternoon")
    assert [s.start for s in offers] == [at(MONDAY + datetime.timedelta(days=10), h) for h in (14, 15, 16)]


def test_next_available_stays_within_the_horizon(ana):
    ana["clinic"].booking_horizon_days = 3
    ana["clinic"].save()
    ana["svc"].refresh_from_db()
    time_off(ana["clinic"], at(MONDAY, 0), at(MONDAY + datetime.timedelta(days=30), 0))
    assert next_available(service=ana["svc"], now=at(MONDAY, 7)) == []


# ---- everything at once, and the cost of a search ------------------------------------------------------------------


def test_all_rules_combined(ana, monkeypatch):
    c = ana["clinic"]
    c.booking_min_notice_minutes = 60
    c.save()
    bruno = professional(c, "Dr. Bruno")
    svc = service(c, [ana["pro"], bruno], duration_minutes=30, buffer_after_minutes=10)
    business(c, range(6), (T(8), T(17)))
    tuesday, wednesday = MONDAY + datetime.timedelta(days=1), MONDAY + datetime.timedelta(days=2)
    ClosedDate.objects.create(clinic=c, date=wednesday, reason="Reforma")
    time_off(c, at(tuesday, 14), at(tuesday, 18), professional=bruno)
    book(factories.patient(c), ana["pro"], ana["svc"], at(tuesday, 9))
    monkeypatch.setattr(
        "integrations.selectors.calendar_busy", lambda ids, s, e: {bruno.pk: [(at(tuesday, 8), at(tuesday, 9))]}
    )
    from scheduling.availability import hold_slot

    hold_slot(service=svc, professional=bruno, start=at(tuesday, 10), holder="conversation:1", now=at(MONDAY, 12))
    slots = free_slots(
        service=svc, start=at(MONDAY, 0), end=at(wednesday + datetime.timedelta(days=1), 0), now=at(MONDAY, 12)
    )
    by = {
        pk: [s.start.strftime("%a %H:%M") for s in slots if s.professional_id == pk] for pk in (ana["pro"].pk, bruno.pk)
    }
    monday_pm = ["Mon 14:00", "Mon 14:30", "Mon 15:00", "Mon 15:30", "Mon 16:00", "Mon 16:30"]  # notice; closes 17:00
    # 30-minute grid, 10 minutes of cleaning: a slot right before a busy one cannot end at its start.
    assert by[ana["pro"].pk] == [
        *monday_pm,
        "Tue 08:00", "Tue 09:30", "Tue 10:00", "Tue 10:30", "Tue 11:00", "Tue 11:30",
        "Tue 14:00", "Tue 14:30", "Tue 15:00", "Tue 15:30", "Tue 16:00", "Tue 16:30",
    ]  # fmt: skip
    # Google busy until 09:00; the hold 10:00–10:30 cleans until 10:40; time off all afternoon.
    assert by[bruno.pk] == [*monday_pm, "Tue 09:00", "Tue 11:00", "Tue 11:30"]
    # The holder itself still sees its held slot.
    mine = free_slots(
        service=svc, professional=bruno, **day_window(tuesday), now=at(MONDAY, 12), holder="conversation:1"
    )
    assert "10:00" in hhmm(mine)


def test_a_search_runs_the_same_queries_for_one_day_or_thirty_and_one_professional_or_many(ana, monkeypatch):
    calls = []
    monkeypatch.setattr("integrations.selectors.calendar_busy", lambda ids, s, e: calls.append(ids) or {})
    c = ana["clinic"]
    patient = factories.patient(c)
    for day in range(30):
        book(patient, ana["pro"], ana["svc"], at(MONDAY + datetime.timedelta(days=day), 9))
    time_off(c, at(MONDAY, 10), at(MONDAY, 11), professional=ana["pro"])
    ClosedDate.objects.create(clinic=c, date=MONDAY + datetime.timedelta(days=3))
    business(c, range(7), (T(7), T(19)))

    def count(days, svc):
        svc = type(svc).objects.select_related("clinic").get(pk=svc.pk)
        with CaptureQueriesContext(connection) as queries:
            slots = free_slots(service=svc, **day_window(MONDAY, days), now=EARLIER)
        return len(queries), len(slots)

    one_day, one_day_slots = count(1, ana["svc"])
    month, month_slots = count(30, ana["svc"])
    assert one_day == month
    assert month_slots > 20 * one_day_slots
    many = [professional(c, f"Dr. {n}") for n in range(10)]
    ana["svc"].professionals.add(*many)
    crowd, crowd_slots = count(30, ana["svc"])
    assert crowd == month and crowd_slots > 10 * month_slots
    assert one_day <= 8
    assert len(calls) == 3
