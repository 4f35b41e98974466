"""Busy times from Google Calendar for availability (`integrations.selectors.calendar_busy`), against the fake."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from integrations import calendar_sync
from integrations.models import AccountState, CalendarAccount, ExternalBusy
from integrations.selectors import calendar_busy
from tests import factories
from tests.fakes import google_calendar as fakes

google_private_key = fakes.google_private_key
google = fakes.google

ANA = "ana.souza@clinica.com.br"
BRUNO = "bruno.lima@clinica.com.br"
H = datetime.timedelta(hours=1)


@pytest.fixture
def day(clinic_a: Any) -> datetime.datetime:
    return clinic_a.local_now().replace(hour=8, minute=0, second=0, microsecond=0) + datetime.timedelta(days=2)


@pytest.fixture
def ana(clinic_a: Any, google: Any) -> Any:
    google.add_calendar(ANA)
    return factories.professional(clinic_a, name="Dra. Ana Souza", google_calendar_id=ANA)


@pytest.fixture
def bruno(clinic_a: Any, google: Any) -> Any:
    google.add_calendar(BRUNO)
    return factories.professional(clinic_a, name="Dr. Bruno Lima", google_calendar_id=BRUNO)


def test_the_professionals_own_events_are_busy_and_all_calendars_go_in_one_request(
    ana: Any, bruno: Any, google: Any, day: datetime.datetime, clinic_a: Any
) -> None:
    google.add_event(ANA, day + 2 * H, day + 3 * H, summary="Dentista do filho")
    google.add_event(BRUNO, day + 4 * H, day + 5 * H)
    google.add_event(BRUNO, day + 6 * H, day + 7 * H, transparent=True)  # "show me as available"
    no_calendar = factories.professional(clinic_a, name="Dra. Sem Agenda")

    busy = calendar_busy([ana.pk, bruno.pk, no_calendar.pk], day, day + 10 * H)

    assert busy == {ana.pk: [(day + 2 * H, day + 3 * H)], bruno.pk: [(day + 4 * H, day + 5 * H)]}
    (query,) = google.requests("POST", "freeBusy")
    assert {item["id"] for item in query.body["items"]} == {ANA, BRUNO}


def test_busy_times_are_clipped_to_the_window_and_cached_briefly(ana: Any, google: Any, day: datetime.datetime) -> None:
    google.add_event(ANA, day - H, day + H)

    first = calendar_busy([ana.pk], day, day + 4 * H)
    google.add_event(ANA, day + 2 * H, day + 3 * H)  # within the cache's lifetime: not seen yet
    second = calendar_busy([ana.pk], day + H, day + 4 * H)

    assert first == {ana.pk: [(day, day + H)]}
    assert second == {ana.pk: []}
    assert len(google.requests("POST", "freeBusy")) == 1


def test_our_own_events_are_not_busy_they_are_appointments_already(
    ana: Any, google: Any, day: datetime.datetime, clinic_a: Any
) -> None:
    service = factories.service(clinic_a, professionals=[ana])
    appointment = factories.appointment(
        patient=factories.patient(clinic_a), professional=ana, service=service, start=day + H
    )
    calendar_sync.event_push(appointment_id=appointment.pk)
    google.add_event(ANA, day + H + datetime.timedelta(minutes=30), day + 2 * H)  # right after ours

    busy = calendar_busy([ana.pk], day, day + 4 * H)

    assert busy == {ana.pk: [(day + H + datetime.timedelta(minutes=30), day + 2 * H)]}


def test_events_pulled_from_google_block_time_too(ana: Any, google: Any, day: datetime.datetime) -> None:
    ExternalBusy.objects.create(clinic=ana.clinic, professional=ana, event_id="x1", start=day + 5 * H, end=day + 6 * H)

    assert calendar_busy([ana.pk], day, day + 8 * H) == {ana.pk: [(day + 5 * H, day + 6 * H)]}


def test_a_calendar_that_cannot_be_read_is_busy_all_window_and_staff_see_why(
    ana: Any, clinic_a: Any, google: Any, day: datetime.datetime
) -> None:
    lost = factories.professional(clinic_a, name="Dra. Não Compartilhou", google_calendar_id="naocompartilhou@x.com")

    busy = calendar_busy([ana.pk, lost.pk], day, day + 8 * H)

    assert busy == {ana.pk: [], lost.pk: [(day, day + 8 * H)]}
    lost.refresh_from_db()
    assert "share it with our account" in lost.calendar_sync.last_error


def test_revoked_credentials_keep_bookings_going_on_the_last_pulled_events_and_mark_the_account(
    ana: Any, bruno: Any, google: Any, day: datetime.datetime, clinic_a: Any
) -> None:
    # Pulled before the access was lost: Ana's dentist appointment in Google still blocks her morning.
    ExternalBusy.objects.create(
        clinic=clinic_a, professional=ana, event_id="pessoal1", start=day + 1 * H, end=day + 2 * H
    )
    google.revoke()

    busy = calendar_busy([ana.pk, bruno.pk], day, day + 8 * H)

    assert busy == {ana.pk: [(day + 1 * H, day + 2 * H)], bruno.pk: []}
    assert CalendarAccount.objects.get(clinic=clinic_a).state == AccountState.REVOKED
    # Known revoked: later searches do not call Google again.
    calls = len(google.requests("POST", "freeBusy"))
    assert calendar_busy([ana.pk], day, day + 8 * H) == {ana.pk: [(day + 1 * H, day + 2 * H)]}
    assert len(google.requests("POST", "freeBusy")) == calls


def test_google_down_or_slow_fails_safe_once_then_the_failure_is_cached(
    ana: Any, google: Any, day: datetime.datetime, settings: Any, clinic_a: Any
) -> None:
    settings.GOOGLE_CALENDAR_BUSY_TIMEOUT = 0.3
    google.delay_next(1.0, path_contains="freeBusy")

    assert calendar_busy([ana.pk], day, day + 8 * H) == {ana.pk: [(day, day + 8 * H)]}
    assert calendar_busy([ana.pk], day, day + 8 * H) == {ana.pk: [(day, day + 8 * H)]}

    assert len(google.requests("POST", "freeBusy")) == 1  # no retry in the booking path, no second wait
    account = CalendarAccount.objects.get(clinic=clinic_a)
    assert account.state == AccountState.FAILING and "did not answer in time" in account.last_error


def test_a_server_error_fails_safe(ana: Any, google: Any, day: datetime.datetime) -> None:
    google.fail_next(503, path_contains="freeBusy")

    assert calendar_busy([ana.pk], day, day + 8 * H) == {ana.pk: [(day, day + 8 * H)]}


def test_it_never_raises_whatever_breaks(ana: Any, day: datetime.datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(calendar_sync, "calendar_client", broken)

    assert calendar_busy([ana.pk], day, day + 8 * H) == {ana.pk: [(day, day + 8 * H)]}


def test_without_credentials_google_is_off_and_nobody_is_blocked(
    ana: Any, google: Any, day: datetime.datetime, settings: Any
) -> None:
    settings.GOOGLE_SERVICE_ACCOUNT_JSON = ""
    calendar_sync._environment_credentials.cache_clear()

    assert calendar_busy([ana.pk], day, day + 8 * H) == {ana.pk: []}
    assert google.requests() == []
