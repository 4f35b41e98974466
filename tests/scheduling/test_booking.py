"""Booking services: book, reschedule, cancel, confirm, no-show, complete — the domain errors, the history rows, and
the signal after commit (real PostgreSQL)."""

from __future__ import annotations

import datetime

import pytest
from django.db import transaction

from cecilia.models import ClosedDate
from scheduling import services
from scheduling.availability import hold_slot
from scheduling.errors import (
    BeyondHorizon,
    CancellationTooLate,
    ClinicClosed,
    InThePast,
    InvalidTransition,
    OutsideHours,
    PatientOverlap,
    ProfessionalDoesNotPerform,
    ProfessionalUnavailable,
    SlotTaken,
    TooSoon,
)
from scheduling.models import (
    ActorKind,
    Appointment,
    AppointmentAction,
    AppointmentChange,
    AppointmentSource,
    AppointmentStatus,
    SlotHold,
)
from scheduling.services import (
    Actor,
    appointment_book,
    appointment_cancel,
    appointment_complete,
    appointment_confirm,
    appointment_mark_no_show,
    appointment_reschedule,
)
from scheduling.signals import appointment_changed
from tests import factories
from tests.scheduling.test_availability_support import MONDAY, at, book, clinic, professional, service, time_off

pytestmark = pytest.mark.django_db

NOW = at(MONDAY - datetime.timedelta(days=7), 9)
PATIENT = Actor.patient()


@pytest.fixture
def agenda(time_machine):
    time_machine.move_to(NOW, tick=False)
    c = clinic(booking_min_notice_minutes=120, booking_horizon_days=30, cancellation_notice_hours=24)
    ana = professional(c, "Dra. Ana")
    bruno = professional(c, "Dr. Bruno")
    return {
        "clinic": c,
        "ana": ana,
        "bruno": bruno,
        "svc": service(c, [ana, bruno], name="Consulta"),
        "patient": factories.patient(c),
        "other_patient": factories.patient(c),
        "staff": factories.staff_user(c),
    }


@pytest.fixture
def signals():
    sent = []

    def receiver(sender, appointment, action, **kwargs):
        sent.append((appointment.pk, action))

    appointment_changed.connect(receiver, dispatch_uid="test_booking")
    yield sent
    appointment_changed.disconnect(dispatch_uid="test_booking")


def _book(agenda, start, *, actor=PATIENT, professional="ana", patient="patient", **kwargs):
    return appointment_book(
        patient=agenda[patient],
        service=agenda["svc"],
        professional=agenda[professional],
        start=start,
        actor=actor,
        source=AppointmentSource.WHATSAPP if actor.kind == ActorKind.PATIENT else AppointmentSource.ADMIN,
        **kwargs,
    )


# ---- booking -----------------------------------------------------------------------------------------------------


def test_booking_saves_the_appointment_its_author_and_a_history_row(
    agenda, django_capture_on_commit_callbacks, signals
):
    staff = Actor.staff(agenda["staff"])
    with django_capture_on_commit_callbacks(execute=True):
        appointment = _book(agenda, at(MONDAY, 9), actor=staff, notes="Primeira consulta")
    appointment.refresh_from_db()
    assert (appointment.start, appointment.end) == (at(MONDAY, 9), at(MONDAY, 9, 30))
    assert appointment.status == AppointmentStatus.SCHEDULED
    assert appointment.source == AppointmentSource.ADMIN
    assert (appointment.created_by_kind, appointment.created_by_user) == (ActorKind.STAFF, agenda["staff"])
    assert (appointment.updated_by_kind, appointment.updated_by_user) == (ActorKind.STAFF, agenda["staff"])
    change = AppointmentChange.objects.get(appointment=appointment)
    assert (change.action, change.actor_kind, change.actor_user) == ("booked", ActorKind.STAFF, agenda["staff"])
    assert change.before == {}
    assert change.after == {
        "start": "2026-03-02T09:00:00-03:00",
        "end": "2026-03-02T09:30:00-03:00",
        "professional_id": agenda["ana"].pk,
        "service_id": agenda["svc"].pk,
        "status": "scheduled",
    }
    assert "Primeira" not in str(change.after)
    assert signals == [(appointment.pk, AppointmentAction.BOOKED)]


def test_a_patient_booking_records_no_user(agenda):
    appointment = _book(agenda, at(MONDAY, 9))
    assert (appointment.created_by_kind, appointment.created_by_user) == (ActorKind.PATIENT, None)
    assert AppointmentChange.objects.get(appointment=appointment).actor_kind == ActorKind.PATIENT


def test_the_signal_waits_for_the_commit_and_never_tells_of_a_rollback(
    agenda, django_capture_on_commit_callbacks, signals
):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        _book(agenda, at(MONDAY, 9))
        assert signals == []  # not before the commit
        raise RuntimeError("the caller's transaction fails after booking")
    assert signals == []
    assert not Appointment.objects.exists()


def test_a_taken_slot_is_refused_with_alternatives_same_professional_first(agenda):
    book(agenda["other_patient"], agenda["ana"], agenda["svc"], at(MONDAY, 9))
    with pytest.raises(SlotTaken) as excinfo:
        _book(agenda, at(MONDAY, 9))
    error = excinfo.value
    assert error.code == "slot_taken"
    assert str(error) == error.message
    assert [(s.professional_id, s.start) for s in error.alternatives] == [
        (agenda["ana"].pk, at(MONDAY, 9, 30)),
        (agenda["ana"].pk, at(MONDAY, 10, 30)),
        (agenda["ana"].pk, at(MONDAY, 11, 30)),
    ]
    assert error.details["alternatives"][0] == {
        "professional_id": agenda["ana"].pk,
        "start": "2026-03-02T09:30:00-03:00",
        "end": "2026-03-02T10:00:00-03:00",
    }
    assert Appointment.objects.count() == 1


def test_alternatives_fall_back_to_other_professionals(agenda):
    time_off(
        agenda["clinic"], at(MONDAY, 9, 30), at(MONDAY + datetime.timedelta(days=40), 0), professional=agenda["ana"]
    )
    book(agenda["other_patient"], agenda["ana"], agenda["svc"], at(MONDAY, 9))
    with pytest.raises(SlotTaken) as excinfo:
        _book(agenda, at(MONDAY, 9))
    assert {s.professional_id for s in excinfo.value.alternatives} == {agenda["bruno"].pk}
    assert len(excinfo.value.alternatives) == 3


@pytest.mark.parametrize(
    ("start", "error", "code"),
    [
        (at(MONDAY, 12), OutsideHours, "outside_hours"),
        (at(MONDAY, 9, 10), OutsideHours, "outside_hours"),
        (at(MONDAY - datetime.timedelta(days=8), 9), InThePast, "in_the_past"),
        (NOW + datetime.timedelta(minutes=60), TooSoon, "too_soon"),
        (at(MONDAY + datetime.timedelta(days=30), 9), BeyondHorizon, "beyond_horizon"),
    ],
)
def test_a_patient_booking_breaking_a_rule_gets_its_error(agenda, start, error, code):
    with pytest.raises(error) as excinfo:
        _book(agenda, start)
    assert excinfo.value.code == code
    assert excinfo.value.message
    assert not Appointment.objects.exists()


def test_staff_are_not_held_to_notice_horizon_or_grid(agenda):
    staff = Actor.staff(agenda["staff"])
    soon = at(MONDAY - datetime.timedelta(days=7), 10, 10)
    assert _book(agenda, soon, actor=staff).start == soon
    far = at(MONDAY + datetime.timedelta(days=61), 9)  # 2 May (1 May is a holiday)
    assert _book(agenda, far, actor=staff).start == far
    with pytest.raises(InThePast):
        _book(agenda, NOW - datetime.timedelta(hours=1), actor=staff)


def test_the_professional_must_perform_the_service(agenda):
    carla = professional(agenda["clinic"], "Dra. Carla")
    agenda["carla"] = carla
    with pytest.raises(ProfessionalDoesNotPerform):
        _book(agenda, at(MONDAY, 9), professional="carla")
    with pytest.raises(ProfessionalDoesNotPerform):
        _book(agenda, at(MONDAY, 9), professional="carla", actor=Actor.staff(agenda["staff"]), force=True)


def test_an_inactive_professional_takes_no_bookings(agenda):
    agenda["ana"].active = False
    agenda["ana"].save()
    with pytest.raises(ProfessionalUnavailable) as excinfo:
        _book(agenda, at(MONDAY, 9), actor=Actor.staff(agenda["staff"]), force=True)
    assert excinfo.value.details == {"reason": "inactive"}


def test_a_patient_cannot_be_in_two_places_at_once(agenda):
    book(agenda["patient"], agenda["bruno"], agenda["svc"], at(MONDAY, 9, 15), minutes=30)
    with pytest.raises(PatientOverlap) as excinfo:
        _book(agenda, at(MONDAY, 9))
    assert excinfo.value.code == "patient_overlap"


def test_staff_may_force_outside_hours_on_closed_days_and_over_google_busy(agenda, monkeypatch):
    staff = Actor.staff(agenda["staff"])
    ClosedDate.objects.create(clinic=agenda["clinic"], date=MONDAY + datetime.timedelta(days=1))
    monkeypatch.setattr(
        "integrations.selectors.calendar_busy",
        lambda ids, s, e: {agenda["ana"].pk: [(at(MONDAY, 15), at(MONDAY, 16))]},
    )
    with pytest.raises(OutsideHours):
        _book(agenda, at(MONDAY, 12), actor=staff)
    with pytest.raises(ClinicClosed):
        _book(agenda, at(MONDAY + datetime.timedelta(days=1), 9), actor=staff)
    with pytest.raises(ProfessionalUnavailable):
        _book(agenda, at(MONDAY, 15), actor=staff)
    lunch = _book(agenda, at(MONDAY, 12), actor=staff, force=True)
    closed = _book(agenda, at(MONDAY + datetime.timedelta(days=1), 9), actor=staff, force=True, patient="other_patient")
    busy = _book(agenda, at(MONDAY, 15), actor=staff, force=True)
    assert AppointmentChange.objects.get(appointment=lunch).note == "forced: outside_hours/hours"
    assert AppointmentChange.objects.get(appointment=closed).note == "forced: clinic_closed"
    assert AppointmentChange.objects.get(appointment=busy).note == "forced: professional_unavailable/calendar_busy"


def test_force_never_books_over_another_appointment(agenda):
    book(agenda["other_patient"], agenda["ana"], agenda["svc"], at(MONDAY, 12))
    with pytest.raises(SlotTaken):
        _book(agenda, at(MONDAY, 12, 15), actor=Actor.staff(agenda["staff"]), force=True)


def test_only_staff_can_force(agenda):
    with pytest.raises(ValueError, match="staff"):
        _book(agenda, at(MONDAY, 12), force=True)


def test_booking_with_a_hold_takes_the_held_slot_and_consumes_the_hold(agenda):
    hold_slot(service=agenda["svc"], professional=agenda["ana"], start=at(MONDAY, 9), holder="conversation:7")
    hold_slot(service=agenda["svc"], professional=agenda["ana"], start=at(MONDAY, 10), holder="conversation:7")
    with pytest.raises(SlotTaken) as excinfo:
        _book(agenda, at(MONDAY, 9), patient="other_patient")
    assert excinfo.value.details["reason"] == "held"
    _book(agenda, at(MONDAY, 9), holder="conversation:7")
    assert list(SlotHold.objects.values_list("start", flat=True)) == [at(MONDAY, 10)]


def test_the_database_has_the_last_word_and_the_callers_transaction_survives(agenda, monkeypatch):
    book(agenda["other_patient"], agenda["ana"], agenda["svc"], at(MONDAY, 9))
    # As if the rules had been checked before the other booking committed.
    monkeypatch.setattr(services, "slot_problems", lambda **kwargs: [])
    with transaction.atomic():
        with pytest.raises(SlotTaken) as excinfo:
            _book(agenda, at(MONDAY, 9, 15), actor=Actor.staff(agenda["staff"]))
        assert excinfo.value.alternatives
        assert Appointment.objects.count() == 1  # the transaction is still usable
        monkeypatch.setattr(services, "_check_patient", lambda *args, **kwargs: None)
        book(agenda["patient"], agenda["bruno"], agenda["svc"], at(MONDAY, 14))
        with pytest.raises(PatientOverlap):
            _book(agenda, at(MONDAY, 14, 15), actor=Actor.staff(agenda["staff"]))
        assert Appointment.objects.count() == 2


# ---- rescheduling ------------------------------------------------------------------------------------------------


def test_rescheduling_moves_the_same_row_back_to_scheduled_and_records_both_sides(
    agenda, django_capture_on_commit_callbacks, signals
):
    appointment = _book(agenda, at(MONDAY, 9))
    appointment = appointment_confirm(appointment=appointment, actor=PATIENT)
    staff = Actor.staff(agenda["staff"])
    with django_capture_on_commit_callbacks(execute=True):
        moved = appointment_reschedule(
            appointment=appointment, start=at(MONDAY, 9, 15), actor=staff, professional=agenda["bruno"]
        )
    assert moved.pk == appointment.pk
    moved.refresh_from_db()
    assert (moved.start, moved.end, moved.professional) == (at(MONDAY, 9, 15), at(MONDAY, 9, 45), agenda["bruno"])
    assert moved.status == AppointmentStatus.SCHEDULED
    assert (moved.updated_by_kind, moved.updated_by_user) == (ActorKind.STAFF, agenda["staff"])
    change = AppointmentChange.objects.get(appointment=moved, action=AppointmentAction.RESCHEDULED)
    assert change.before["start"] == "2026-03-02T09:00:00-03:00"
    assert change.before["status"] == "confirmed"
    assert change.before["professional_id"] == agenda["ana"].pk
    assert change.after["start"] == "2026-03-02T09:15:00-03:00"
    assert change.after["professional_id"] == agenda["bruno"].pk
    assert signals[-1] == (moved.pk, AppointmentAction.RESCHEDULED)


def test_an_appointment_can_move_over_its_own_old_time(agenda):
    appointment = _book(agenda, at(MONDAY, 9))
    moved = appointment_reschedule(appointment=appointment, start=at(MONDAY, 9, 30), actor=PATIENT)
    assert moved.start == at(MONDAY, 9, 30)
    assert Appointment.objects.count() == 1


def test_rescheduling_into_google_busy_time_is_refused_unless_staff_force_it(agenda, monkeypatch):
    appointment = _book(agenda, at(MONDAY, 9))
    monkeypatch.setattr(
        "integrations.selectors.calendar_busy",
        lambda ids, s, e: {agenda["ana"].pk: [(at(MONDAY, 14), at(MONDAY, 15))]},
    )
    with pytest.raises(ProfessionalUnavailable) as excinfo:
        appointment_reschedule(appointment=appointment, start=at(MONDAY, 14, 30), actor=PATIENT)
    assert excinfo.value.details == {"reason": "calendar_busy"}
    staff = Actor.staff(agenda["staff"])
    moved = appointment_reschedule(appointment=appointment, start=at(MONDAY, 14, 30), actor=staff, force=True)
    assert moved.start == at(MONDAY, 14, 30)
    change = AppointmentChange.objects.get(appointment=moved, action=AppointmentAction.RESCHEDULED)
    assert change.note == "forced: professional_unavailable/calendar_busy"


def test_rescheduling_into_a_taken_slot_offers_alternatives(agenda):
    book(agenda["other_patient"], agenda["ana"], agenda["svc"], at(MONDAY, 10))
    appointment = _book(agenda, at(MONDAY, 9))
    with pytest.raises(SlotTaken) as excinfo:
        appointment_reschedule(appointment=appointment, start=at(MONDAY, 10), actor=PATIENT)
    assert excinfo.value.alternatives
    appointment.refresh_from_db()
    assert appointment.start == at(MONDAY, 9)


@pytest.mark.parametrize(
    "status", [AppointmentStatus.CANCELLED, AppointmentStatus.COMPLETED, AppointmentStatus.NO_SHOW]
)
def test_a_closed_appointment_cannot_be_rescheduled(agenda, status):
    appointment = book(agenda["patient"], agenda["ana"], agenda["svc"], at(MONDAY, 9), status=status)
    with pytest.raises(InvalidTransition) as excinfo:
        appointment_reschedule(appointment=appointment, start=at(MONDAY, 10), actor=Actor.staff(agenda["staff"]))
    assert excinfo.value.details == {"status": status, "action": "reschedule"}


def test_a_patient_cannot_move_an_appointment_within_the_cancellation_notice(agenda, time_machine):
    appointment = _book(agenda, at(MONDAY, 9))
    time_machine.move_to(at(MONDAY - datetime.timedelta(days=1), 10), tick=False)
    with pytest.raises(CancellationTooLate):
        appointment_reschedule(appointment=appointment, start=at(MONDAY, 15), actor=PATIENT)
    moved = appointment_reschedule(appointment=appointment, start=at(MONDAY, 15), actor=Actor.staff(agenda["staff"]))
    assert moved.start == at(MONDAY, 15)


def test_rescheduling_to_the_same_time_changes_nothing(agenda):
    appointment = appointment_confirm(appointment=_book(agenda, at(MONDAY, 9)), actor=PATIENT)
    same = appointment_reschedule(appointment=appointment, start=at(MONDAY, 9), actor=PATIENT)
    assert same.status == AppointmentStatus.CONFIRMED
    assert not AppointmentChange.objects.filter(action=AppointmentAction.RESCHEDULED).exists()


# ---- cancelling, confirming, no-show, completed -------------------------------------------------------------------


def test_a_patient_cancels_in_time_and_the_slot_is_free_again(agenda, django_capture_on_commit_callbacks, signals):
    appointment = _book(agenda, at(MONDAY, 9))
    with django_capture_on_commit_callbacks(execute=True):
        cancelled = appointment_cancel(appointment=appointment, actor=PATIENT, reason="Viagem")
    assert cancelled.status == AppointmentStatus.CANCELLED
    assert cancelled.cancellation_reason == "Viagem"
    change = AppointmentChange.objects.get(appointment=cancelled, action=AppointmentAction.CANCELLED)
    assert (change.before["status"], change.after["status"]) == ("scheduled", "cancelled")
    assert "Viagem" not in str(change.before) + str(change.after) + change.note
    assert signals[-1] == (cancelled.pk, AppointmentAction.CANCELLED)
    assert _book(agenda, at(MONDAY, 9), patient="other_patient").start == at(MONDAY, 9)


def test_a_late_cancellation_by_the_patient_needs_staff(agenda, time_machine):
    appointment = _book(agenda, at(MONDAY, 9))
    time_machine.move_to(at(MONDAY - datetime.timedelta(days=1), 9, 1), tick=False)
    with pytest.raises(CancellationTooLate) as excinfo:
        appointment_cancel(appointment=appointment, actor=PATIENT)
    assert excinfo.value.details == {"notice_hours": 24}
    assert "24" in excinfo.value.message
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.SCHEDULED
    done = appointment_cancel(appointment=appointment, actor=Actor.staff(agenda["staff"]), reason="Ligou")
    assert done.status == AppointmentStatus.CANCELLED


def test_a_cancelled_appointment_cannot_be_cancelled_or_confirmed(agenda):
    appointment = appointment_cancel(appointment=_book(agenda, at(MONDAY, 9)), actor=PATIENT)
    with pytest.raises(InvalidTransition):
        appointment_cancel(appointment=appointment, actor=PATIENT)
    with pytest.raises(InvalidTransition) as excinfo:
        appointment_confirm(appointment=appointment, actor=PATIENT)
    assert excinfo.value.code == "invalid_transition"
    assert excinfo.value.details == {"status": "cancelled", "action": "confirm"}


def test_confirming_is_recorded_once(agenda, django_capture_on_commit_callbacks, signals):
    appointment = _book(agenda, at(MONDAY, 9))
    with django_capture_on_commit_callbacks(execute=True):
        appointment_confirm(appointment=appointment, actor=PATIENT)
        again = appointment_confirm(appointment=appointment, actor=PATIENT)
    assert again.status == AppointmentStatus.CONFIRMED
    assert AppointmentChange.objects.filter(action=AppointmentAction.CONFIRMED).count() == 1
    assert signals == [(appointment.pk, AppointmentAction.CONFIRMED)]


def test_no_show_and_completed_only_after_the_start_and_not_by_the_patient(agenda, time_machine):
    first = _book(agenda, at(MONDAY, 9))
    second = _book(agenda, at(MONDAY, 10))
    staff = Actor.staff(agenda["staff"])
    with pytest.raises(InvalidTransition):
        appointment_mark_no_show(appointment=first, actor=staff)
    with pytest.raises(InvalidTransition):
        appointment_complete(appointment=second, actor=Actor.system())
    time_machine.move_to(at(MONDAY, 11), tick=False)
    with pytest.raises(InvalidTransition):
        appointment_complete(appointment=second, actor=PATIENT)
    assert appointment_mark_no_show(appointment=first, actor=Actor.system()).status == AppointmentStatus.NO_SHOW
    assert appointment_complete(appointment=second, actor=staff).status == AppointmentStatus.COMPLETED
    with pytest.raises(InvalidTransition):
        appointment_complete(appointment=first, actor=staff)
    actions = list(AppointmentChange.objects.order_by("pk").values_list("action", "actor_kind"))
    assert actions[-2:] == [("no_show", ActorKind.SYSTEM), ("completed", ActorKind.STAFF)]
