"""Pushing appointments to Google Calendar: google-api-python-client runs for real against a local fake of the
Calendar v3 REST endpoints and Google's token endpoint (tests/fakes/google_calendar.py)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
import time_machine
from celery.exceptions import Retry
from django.utils import timezone

from integrations import calendar_sync, tasks
from integrations.models import AccountState, CalendarAccount, CalendarEventLink, LinkState
from scheduling.models import Appointment, AppointmentAction, AppointmentSource, AppointmentStatus
from scheduling.services import Actor, appointment_book, appointment_cancel, appointment_reschedule
from scheduling.signals import appointment_changed
from tests import factories
from tests.fakes import google_calendar as fakes
from tests.fakes.google_calendar import authorized_user_json

google_private_key = fakes.google_private_key
google = fakes.google
pushes = fakes.pushes

ANA = "ana.souza@clinica.com.br"
BRUNO = "bruno.lima@clinica.com.br"


@pytest.fixture
def setup(clinic_a: Any, google: Any) -> dict[str, Any]:
    google.add_calendar(ANA)
    google.add_calendar(BRUNO)
    ana = factories.professional(clinic_a, name="Dra. Ana Souza", google_calendar_id=ANA)
    bruno = factories.professional(clinic_a, name="Dr. Bruno Lima", google_calendar_id=BRUNO)
    service = factories.service(clinic_a, name="Limpeza", professionals=[ana, bruno])
    patient = factories.patient(clinic_a, full_name="Maria Oliveira Santos")
    start = clinic_a.local_now().replace(hour=10, minute=0, second=0, microsecond=0) + datetime.timedelta(days=3)
    return {"ana": ana, "bruno": bruno, "service": service, "patient": patient, "start": start}


def _book(setup: dict[str, Any], *, professional: Any = None) -> Appointment:
    return factories.appointment(
        patient=setup["patient"],
        professional=professional or setup["ana"],
        service=setup["service"],
        start=setup["start"],
    )


def _push(appointment: Appointment) -> calendar_sync.PushResult:
    return calendar_sync.event_push(appointment_id=appointment.pk)


def test_a_new_appointment_becomes_an_event_with_our_id_the_first_name_and_the_clinic_time_zone(
    setup: dict[str, Any], google: Any
) -> None:
    appointment = _book(setup)

    assert _push(appointment).outcome == "synced"

    event_id = f"cec{appointment.clinic_id}a{appointment.pk}"
    event = google.event(ANA, event_id)
    assert event["summary"] == "Consulta — Maria"  # no service, no surname, no health data by default
    assert event["start"] == {"dateTime": setup["start"].isoformat(), "timeZone": "America/Sao_Paulo"}
    assert event["start"]["dateTime"].endswith("-03:00")
    assert event["extendedProperties"]["private"] == {
        "cecilia_appointment": str(appointment.pk),
        "cecilia_clinic": str(appointment.clinic_id),
    }
    link = CalendarEventLink.objects.get(appointment=appointment)
    assert (link.state, link.calendar_id, link.event_id, link.etag) == (LinkState.SYNCED, ANA, event_id, event["etag"])
    assert (link.pushed_start, link.pushed_end) == (appointment.start, appointment.end)
    assert CalendarAccount.objects.get(clinic=appointment.clinic).state == AccountState.OK


def test_the_event_title_follows_the_clinics_template(setup: dict[str, Any], google: Any, clinic_a: Any) -> None:
    CalendarAccount.objects.create(clinic=clinic_a, event_title="{service} — {first_name} ({professional})")
    appointment = _book(setup)

    _push(appointment)

    assert google.event(ANA, calendar_sync.event_id_for(appointment))["summary"] == "Limpeza — Maria (Dra. Ana Souza)"


def test_a_reschedule_patches_the_same_event_and_a_confirmation_calls_google_not_at_all(
    setup: dict[str, Any], google: Any
) -> None:
    appointment = _book(setup)
    _push(appointment)
    new_start = setup["start"] + datetime.timedelta(hours=2)
    Appointment.objects.filter(pk=appointment.pk).update(
        start=new_start, end=new_start + datetime.timedelta(minutes=30)
    )

    assert _push(appointment).outcome == "synced"
    Appointment.objects.filter(pk=appointment.pk).update(status=AppointmentStatus.CONFIRMED)
    calls_before = len(google.received)
    assert _push(appointment).outcome == "unchanged"

    assert len(google.received) == calls_before
    assert [r.method for r in google.requests(path_contains="events")] == ["POST", "PATCH"]
    (event,) = google.live_events(ANA)
    assert event["start"]["dateTime"] == new_start.isoformat()


def test_a_cancelled_appointment_is_deleted_from_google(setup: dict[str, Any], google: Any) -> None:
    appointment = _book(setup)
    _push(appointment)
    Appointment.objects.filter(pk=appointment.pk).update(status=AppointmentStatus.CANCELLED)

    assert _push(appointment).outcome == "deleted"
    assert _push(appointment).outcome == "deleted"  # again: nothing left to delete, no error

    assert google.live_events(ANA) == []
    link = CalendarEventLink.objects.get(appointment=appointment)
    assert (link.state, link.pushed_live) == (LinkState.SYNCED, False)
    assert len(google.requests("DELETE")) == 1


def test_an_appointment_moved_to_another_professional_leaves_the_old_calendar_for_the_new_one(
    setup: dict[str, Any], google: Any
) -> None:
    appointment = _book(setup)
    _push(appointment)
    Appointment.objects.filter(pk=appointment.pk).update(professional=setup["bruno"])

    assert _push(appointment).outcome == "synced"

    assert google.live_events(ANA) == []
    (event,) = google.live_events(BRUNO)
    assert event["id"] == calendar_sync.event_id_for(appointment)
    assert CalendarEventLink.objects.get(appointment=appointment).calendar_id == BRUNO


def test_a_create_retried_after_its_answer_was_lost_updates_the_existing_event_instead_of_adding_one(
    setup: dict[str, Any], google: Any
) -> None:
    appointment = _book(setup)
    # The first try reached Google but its answer never came back: Google has the event, Cecilia does not know.
    google.add_event(
        ANA,
        setup["start"],
        setup["start"] + datetime.timedelta(minutes=30),
        event_id=calendar_sync.event_id_for(appointment),
        summary="(first try)",
    )

    assert _push(appointment).outcome == "synced"

    inserts = google.requests("POST", "events")
    assert len(inserts) == 1  # answered 409 "duplicate"
    assert len(google.requests("PATCH")) == 1
    (event,) = google.live_events(ANA)
    assert event["summary"] == "Consulta — Maria"
    assert event["extendedProperties"]["private"]["cecilia_appointment"] == str(appointment.pk)


def test_a_booking_enqueues_its_push_after_commit_and_marks_the_event_pending(
    setup: dict[str, Any], pushes: list[int], django_capture_on_commit_callbacks: Any, manager_a: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        appointment = appointment_book(
            patient=setup["patient"],
            service=setup["service"],
            professional=setup["ana"],
            start=setup["start"],
            actor=Actor.staff(manager_a),
            source=AppointmentSource.ADMIN,
            force=True,
        )

    assert pushes == [appointment.pk]
    assert CalendarEventLink.objects.get(appointment=appointment).state == LinkState.PENDING


def test_professionals_without_a_calendar_and_clinics_without_credentials_push_nothing(
    setup: dict[str, Any], pushes: list[int], settings: Any, clinic_a: Any
) -> None:
    no_calendar = factories.professional(clinic_a, name="Dra. Sem Agenda")
    appointment = _book(setup, professional=no_calendar)
    appointment_changed.send(sender=Appointment, appointment=appointment, action=AppointmentAction.BOOKED)
    assert pushes == []

    settings.GOOGLE_SERVICE_ACCOUNT_JSON = ""
    calendar_sync._environment_credentials.cache_clear()
    other = factories.appointment(
        patient=factories.patient(clinic_a),
        professional=setup["ana"],
        service=setup["service"],
        start=setup["start"] + datetime.timedelta(hours=3),
    )
    appointment_changed.send(sender=Appointment, appointment=other, action=AppointmentAction.BOOKED)
    assert pushes == []
    assert not CalendarEventLink.objects.exists()


def test_revoked_credentials_are_shown_on_the_account_and_never_block_a_booking(
    setup: dict[str, Any], google: Any, pushes: list[int], django_capture_on_commit_callbacks: Any, manager_a: Any
) -> None:
    google.revoke()
    with django_capture_on_commit_callbacks(execute=True):
        appointment = appointment_book(
            patient=setup["patient"],
            service=setup["service"],
            professional=setup["ana"],
            start=setup["start"],
            actor=Actor.staff(manager_a),
            source=AppointmentSource.ADMIN,
            force=True,
        )

    result = _push(appointment)

    assert result.outcome == "revoked" and not result.retry
    assert Appointment.objects.get(pk=appointment.pk).status == AppointmentStatus.SCHEDULED  # the booking stands
    account = CalendarAccount.objects.get(clinic=appointment.clinic)
    assert account.state == AccountState.REVOKED
    assert "invalid_grant" in account.last_error
    assert "BEGIN PRIVATE KEY" not in account.last_error and "ya29" not in account.last_error
    link = CalendarEventLink.objects.get(appointment=appointment)
    assert link.state == LinkState.FAILED and "refused the credentials" in link.last_error
    assert link.next_attempt_at is None  # not retried until someone fixes the credentials

    # No retry storm: the next push does not even call Google while the same credentials are in use.
    calls = len(google.received)
    assert _push(appointment).outcome == "revoked"
    assert len(google.received) == calls
    assert appointment.pk not in calendar_sync.links_due()


def test_new_credentials_requeue_the_pushes_that_waited_and_they_go_through(
    setup: dict[str, Any], google: Any, clinic_a: Any
) -> None:
    appointment = _book(setup)
    google.revoke()
    _push(appointment)
    google.revoked = False  # the clinic connects its own Google account (OAuth) instead
    account = CalendarAccount.objects.get(clinic=clinic_a)
    account.credentials_json = authorized_user_json(google)
    account.state = AccountState.UNCHECKED
    account.save()
    calendar_sync.links_requeue_after_new_credentials(clinic_id=clinic_a.pk)

    assert calendar_sync.links_due() == [appointment.pk]
    assert _push(appointment).outcome == "synced"
    assert len(google.live_events(ANA)) == 1


def test_a_5xx_is_retried_inside_the_call_and_the_push_succeeds(setup: dict[str, Any], google: Any) -> None:
    appointment = _book(setup)
    google.fail_next(503, method="POST", path_contains="events")

    assert _push(appointment).outcome == "synced"

    assert len(google.requests("POST", "events")) == 2
    assert len(google.live_events(ANA)) == 1


def test_a_lasting_outage_is_recorded_retried_by_the_task_and_then_by_the_catch_up(
    setup: dict[str, Any], google: Any
) -> None:
    appointment = _book(setup)
    google.fail_next(500, method="POST", path_contains="events", times=2)  # the call and its one retry

    with pytest.raises(Retry):
        tasks.calendar_push(appointment.pk)

    link = CalendarEventLink.objects.get(appointment=appointment)
    assert link.state == LinkState.FAILED and "unavailable (500)" in link.last_error
    assert link.next_attempt_at > timezone.now()
    assert appointment.pk not in calendar_sync.links_due()  # waits its turn
    assert CalendarAccount.objects.get(clinic=appointment.clinic).state == AccountState.FAILING

    with time_machine.travel(link.next_attempt_at + datetime.timedelta(seconds=1)):
        assert appointment.pk in calendar_sync.links_due()
        assert _push(appointment).outcome == "synced"
    assert len(google.live_events(ANA)) == 1
    assert CalendarAccount.objects.get(clinic=appointment.clinic).state == AccountState.OK


def test_a_timeout_is_a_temporary_failure(setup: dict[str, Any], google: Any, settings: Any) -> None:
    settings.GOOGLE_CALENDAR_TIMEOUT = 0.3
    settings.GOOGLE_CALENDAR_NUM_RETRIES = 0
    appointment = _book(setup)
    google.delay_next(1.0, method="POST", path_contains="events")

    result = _push(appointment)

    assert result.outcome == "failed" and result.retry
    assert "did not answer in time" in CalendarEventLink.objects.get(appointment=appointment).last_error


def test_a_calendar_not_shared_with_us_fails_the_push_and_shows_on_the_professional(
    setup: dict[str, Any], google: Any, clinic_a: Any
) -> None:
    nobody = factories.professional(clinic_a, name="Dra. Não Compartilhou", google_calendar_id="naocompartilhou@x.com")
    appointment = _book(setup, professional=nobody)

    result = _push(appointment)

    assert result.outcome == "failed" and not result.retry
    assert "not shared" in nobody.calendar_sync.last_error
    assert CalendarAccount.objects.get(clinic=clinic_a).state == AccountState.OK  # the account itself works


def test_the_catch_up_pushes_future_appointments_whose_push_was_never_requested(setup: dict[str, Any]) -> None:
    lost = _book(setup)  # created without the signal (e.g. a crash between commit and enqueue)
    past = factories.appointment(
        patient=factories.patient(setup["ana"].clinic),
        professional=setup["ana"],
        service=setup["service"],
        start=timezone.now() - datetime.timedelta(days=2),
    )

    due = calendar_sync.links_due()

    assert lost.pk in due and past.pk not in due


def test_real_services_send_the_change_and_the_push_follows_it(
    setup: dict[str, Any], google: Any, pushes: list[int], django_capture_on_commit_callbacks: Any, manager_a: Any
) -> None:
    staff = Actor.staff(manager_a)
    with django_capture_on_commit_callbacks(execute=True):
        appointment = appointment_book(
            patient=setup["patient"],
            service=setup["service"],
            professional=setup["ana"],
            start=setup["start"],
            actor=staff,
            source=AppointmentSource.ADMIN,
            force=True,
        )
    for appointment_id in pushes:
        tasks.calendar_push.apply(args=[appointment_id])
    with django_capture_on_commit_callbacks(execute=True):
        appointment_reschedule(
            appointment=appointment, start=setup["start"] + datetime.timedelta(hours=1), actor=staff, force=True
        )
    with django_capture_on_commit_callbacks(execute=True):
        appointment_cancel(appointment=appointment, actor=staff)
    for appointment_id in pushes[1:]:
        tasks.calendar_push.apply(args=[appointment_id])

    assert pushes == [appointment.pk] * 3
    assert [r.method for r in google.requests(path_contains="events")] == ["POST", "DELETE"]
    assert google.live_events(ANA) == []


def test_stored_credentials_are_encrypted_at_rest(clinic_a: Any, google: Any) -> None:
    from django.db import connection

    account = CalendarAccount.objects.create(clinic=clinic_a, credentials_json=authorized_user_json(google))
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials_json FROM integrations_calendaraccount WHERE id = %s", [account.pk])
        (raw,) = cursor.fetchone()
    assert raw.startswith("fernet:") and "refresh" not in raw
    assert json.loads(CalendarAccount.objects.get(pk=account.pk).credentials_json)["type"] == "authorized_user"
