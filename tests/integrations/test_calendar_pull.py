"""Pulling each professional's Google Calendar (incremental sync with syncToken) against the fake: their own events
block time; moves and deletions of Cecilia's events become questions for staff, once each."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import translation

from integrations import calendar_sync, tasks
from integrations.models import CalendarReconciliation, ExternalBusy, ProfessionalSync, ReconciliationKind, Resolution
from scheduling.models import Appointment
from tests import factories
from tests.fakes import google_calendar as fakes

google_private_key = fakes.google_private_key
google = fakes.google

ANA = "ana.souza@clinica.com.br"
H = datetime.timedelta(hours=1)


@pytest.fixture
def ana(clinic_a: Any, google: Any) -> Any:
    google.add_calendar(ANA)
    return factories.professional(clinic_a, name="Dra. Ana Souza", google_calendar_id=ANA)


@pytest.fixture
def day(clinic_a: Any) -> datetime.datetime:
    return clinic_a.local_now().replace(hour=8, minute=0, second=0, microsecond=0) + datetime.timedelta(days=2)


@pytest.fixture
def pushed(ana: Any, clinic_a: Any, day: datetime.datetime) -> Appointment:
    """An appointment of Ana's, already in her Google Calendar, and a first pull done."""
    service = factories.service(clinic_a, professionals=[ana])
    appointment = factories.appointment(
        patient=factories.patient(clinic_a, full_name="Maria Oliveira"),
        professional=ana,
        service=service,
        start=day + 2 * H,
    )
    assert calendar_sync.event_push(appointment_id=appointment.pk).outcome == "synced"
    assert _pull(ana).outcome == "synced"
    return appointment


def _pull(professional: Any) -> calendar_sync.PullResult:
    return calendar_sync.calendar_pull(professional_id=professional.pk)


def _busy(professional: Any) -> list[tuple[datetime.datetime, datetime.datetime]]:
    return list(ExternalBusy.objects.filter(professional=professional).order_by("start").values_list("start", "end"))


def test_the_first_pull_lists_everything_from_yesterday_in_pages_and_keeps_the_sync_token(
    ana: Any, google: Any, day: datetime.datetime, clinic_a: Any
) -> None:
    google.page_size = 2
    google.add_event(ANA, day + H, day + 2 * H)
    google.add_event(ANA, day + 3 * H, day + 4 * H)
    google.add_event(ANA, day.date() + datetime.timedelta(days=1), day.date() + datetime.timedelta(days=2))  # all day
    google.add_event(ANA, day + 5 * H, day + 6 * H, transparent=True)
    google.add_event(ANA, day - datetime.timedelta(days=5), day - datetime.timedelta(days=5) + H)  # long past

    result = _pull(ana)

    assert result.outcome == "synced" and result.full
    (first, *pages) = google.requests("GET", "events")
    assert "timeMin" in first.query and first.query["singleEvents"] == "true" and "syncToken" not in first.query
    assert len(pages) == 1 and "pageToken" in pages[0].query
    midnight = datetime.datetime.combine(day.date() + datetime.timedelta(days=1), datetime.time(), tzinfo=clinic_a.tz)
    assert _busy(ana) == [(day + H, day + 2 * H), (day + 3 * H, day + 4 * H), (midnight, midnight + 24 * H)]
    assert ProfessionalSync.objects.get(professional=ana).sync_token.startswith("sync")


def test_the_next_pull_is_incremental_and_follows_moves_and_deletions_of_the_professionals_events(
    ana: Any, google: Any, day: datetime.datetime
) -> None:
    kept = google.add_event(ANA, day + H, day + 2 * H)
    moved = google.add_event(ANA, day + 3 * H, day + 4 * H)
    gone = google.add_event(ANA, day + 5 * H, day + 6 * H)
    _pull(ana)
    token = ProfessionalSync.objects.get(professional=ana).sync_token
    google.move(ANA, moved, day + 7 * H, day + 8 * H)
    google.remove(ANA, gone)

    result = _pull(ana)

    assert not result.full and result.events == 2
    assert google.requests("GET", "events")[-1].query["syncToken"] == token
    assert dict(ExternalBusy.objects.filter(professional=ana).values_list("event_id", "start")) == {
        kept: day + H,
        moved: day + 7 * H,
    }


def test_a_forgotten_sync_token_means_a_full_resync_that_also_notices_what_was_deleted_meanwhile(
    ana: Any, google: Any, day: datetime.datetime, pushed: Appointment
) -> None:
    own = google.add_event(ANA, day + 5 * H, day + 6 * H)
    _pull(ana)
    google.remove(ANA, own)
    google.remove(ANA, calendar_sync.event_id_for(pushed))
    google.forget_sync_tokens()  # Google answers 410: what changed is not listed, only what is there now

    result = _pull(ana)

    assert result.outcome == "synced" and result.full
    statuses = [r.query.get("syncToken", "full") for r in google.requests("GET", "events")[-2:]]
    assert statuses[0].startswith("sync") and statuses[1] == "full"
    assert _busy(ana) == []
    (question,) = CalendarReconciliation.objects.all()
    assert question.kind == ReconciliationKind.DELETED and question.appointment == pushed


def test_an_appointment_moved_in_google_becomes_one_question_for_staff(
    ana: Any, google: Any, day: datetime.datetime, pushed: Appointment
) -> None:
    google.move(ANA, calendar_sync.event_id_for(pushed), day + 4 * H, day + 4 * H + datetime.timedelta(minutes=30))

    assert _pull(ana).reconciliations == 1
    assert _pull(ana).reconciliations == 0  # nothing new: not asked twice

    (question,) = CalendarReconciliation.objects.all()
    assert question.kind == ReconciliationKind.MOVED
    assert (question.google_start, question.google_end) == (day + 4 * H, day + 4 * H + datetime.timedelta(minutes=30))
    assert question.resolved_at is None
    with translation.override("en"):
        assert str(question) == "Dra. Ana Souza moved this appointment in Google — apply it and tell the patient?"
    assert Appointment.objects.get(pk=pushed.pk).start == day + 2 * H  # never applied silently
    assert _busy(ana) == []  # our own event is not "busy" from the professional


def test_a_second_move_before_staff_decide_updates_the_same_question(
    ana: Any, google: Any, day: datetime.datetime, pushed: Appointment
) -> None:
    event_id = calendar_sync.event_id_for(pushed)
    google.move(ANA, event_id, day + 4 * H, day + 5 * H)
    _pull(ana)
    google.move(ANA, event_id, day + 6 * H, day + 7 * H)
    _pull(ana)

    (question,) = CalendarReconciliation.objects.all()
    assert question.google_start == day + 6 * H


def test_an_appointment_deleted_in_google_becomes_a_question_too(ana: Any, google: Any, pushed: Appointment) -> None:
    google.remove(ANA, calendar_sync.event_id_for(pushed))

    _pull(ana)
    _pull(ana)

    (question,) = CalendarReconciliation.objects.all()
    assert question.kind == ReconciliationKind.DELETED
    with translation.override("en"):
        assert str(question) == "Dra. Ana Souza deleted this appointment in Google — cancel it and tell the patient?"


def test_the_echo_of_our_own_changes_is_not_a_question(
    ana: Any, google: Any, day: datetime.datetime, pushed: Appointment
) -> None:
    Appointment.objects.filter(pk=pushed.pk).update(start=day + 5 * H, end=day + 5 * H + datetime.timedelta(minutes=30))
    calendar_sync.event_push(appointment_id=pushed.pk)
    google.rename(ANA, calendar_sync.event_id_for(pushed), "Consulta — Maria (sala 2)")  # a title edit only

    assert _pull(ana).events == 1
    assert not CalendarReconciliation.objects.exists()


def test_an_event_moved_back_to_cecilias_time_closes_the_open_question(
    ana: Any, google: Any, day: datetime.datetime, pushed: Appointment
) -> None:
    event_id = calendar_sync.event_id_for(pushed)
    google.move(ANA, event_id, day + 4 * H, day + 5 * H)
    _pull(ana)
    google.move(ANA, event_id, pushed.start, pushed.end)
    _pull(ana)

    (question,) = CalendarReconciliation.objects.all()
    assert question.resolution == Resolution.OBSOLETE and question.resolved_at is not None


def test_revoked_credentials_stop_the_pull_and_the_schedule_skips_the_clinic(
    ana: Any, google: Any, clinic_a: Any
) -> None:
    assert calendar_sync.professionals_to_pull() == [ana.pk]
    google.revoke()

    assert _pull(ana).outcome == "failed"

    assert calendar_sync.professionals_to_pull() == []
    assert _pull(ana).outcome == "skipped"


def test_the_periodic_task_enqueues_one_pull_per_calendar(
    ana: Any, clinic_a: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    factories.professional(clinic_a, name="Dra. Sem Agenda")
    enqueued: list[int] = []
    monkeypatch.setattr(tasks.calendar_pull, "delay", enqueued.append)

    assert tasks.calendar_sync_all() == 1
    assert enqueued == [ana.pk]
