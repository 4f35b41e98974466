"""The admin of Google Calendar: write-only credentials and the connection state, the list of changes made in
Google with its two decisions (apply and tell the patient / keep Cecilia's time), scoped to the staff's clinics."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from django.urls import reverse

from cecilia.models import StaffRole
from conversations.models import Message, MessageDirection
from integrations import calendar_sync
from integrations.models import (
    AccountState,
    CalendarAccount,
    CalendarEventLink,
    CalendarReconciliation,
    LinkState,
    ReconciliationKind,
    Resolution,
)
from scheduling.models import Appointment, AppointmentStatus
from tests import factories
from tests.fakes import google_calendar as fakes
from tests.fakes.google_calendar import service_account_json

google_private_key = fakes.google_private_key
google = fakes.google
pushes = fakes.pushes

ANA = "ana.souza@clinica.com.br"
H = datetime.timedelta(hours=1)
RECONCILIATIONS = "admin:integrations_calendarreconciliation_changelist"


@pytest.fixture(autouse=True)
def english(client: Any) -> None:
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"  # the assertions read the English source strings


@pytest.fixture
def moved(clinic_a: Any, google: Any) -> CalendarReconciliation:
    """Ana moved Maria's appointment from 10:00 to 15:00 in Google; the pull noticed."""
    google.add_calendar(ANA)
    ana = factories.professional(clinic_a, name="Dra. Ana Souza", google_calendar_id=ANA)
    service = factories.service(clinic_a, professionals=[ana])
    start = clinic_a.local_now().replace(hour=10, minute=0, second=0, microsecond=0) + datetime.timedelta(days=3)
    appointment = factories.appointment(
        patient=factories.patient(clinic_a, full_name="Maria Oliveira"), professional=ana, service=service, start=start
    )
    calendar_sync.event_push(appointment_id=appointment.pk)
    calendar_sync.calendar_pull(professional_id=ana.pk)
    google.move(
        ANA, calendar_sync.event_id_for(appointment), start + 5 * H, start + 5 * H + datetime.timedelta(minutes=30)
    )
    calendar_sync.calendar_pull(professional_id=ana.pk)
    return CalendarReconciliation.objects.get(appointment=appointment)


def _act(client: Any, action: str, row: CalendarReconciliation) -> Any:
    return client.post(reverse(RECONCILIATIONS), {"action": action, "_selected_action": [row.pk]}, follow=True)


def test_the_list_asks_staff_about_each_change_made_in_google(client: Any, receptionist_a: Any, moved: Any) -> None:
    client.force_login(receptionist_a)

    page = client.get(reverse(RECONCILIATIONS)).content.decode()

    assert "Dra. Ana Souza moved this appointment in Google — apply it and tell the patient?" in page
    assert "Maria Oliveira" in page


def test_another_clinics_staff_never_see_the_question(client: Any, clinic_b: Any, moved: Any) -> None:
    manager_b = factories.staff_user(clinic_b, role=StaffRole.MANAGER)
    client.force_login(manager_b)

    page = client.get(reverse(RECONCILIATIONS)).content.decode()
    detail = client.get(reverse("admin:integrations_calendarreconciliation_change", args=[moved.pk]))
    _act(client, "keep_cecilia_time", moved)

    assert "Maria Oliveira" not in page
    assert detail.status_code == 404
    assert CalendarReconciliation.objects.get(pk=moved.pk).resolved_at is None


def test_apply_reschedules_tells_the_patient_and_closes_the_question(
    client: Any,
    manager_a: Any,
    moved: CalendarReconciliation,
    pushes: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client.force_login(manager_a)

    with django_capture_on_commit_callbacks(execute=True):
        page = _act(client, "apply_in_cecilia", moved).content.decode()

    appointment = Appointment.objects.get(pk=moved.appointment_id)
    assert appointment.start == moved.google_start
    assert appointment.updated_by_user == manager_a
    (message,) = Message.objects.filter(direction=MessageDirection.OUTBOUND)
    local = moved.google_start.astimezone(appointment.clinic.tz)
    assert message.text.startswith("Olá, Maria! Sua consulta com Dra. Ana Souza mudou para")
    assert f"{local:%d/%m} às 15:00" in message.text
    assert message.author_user == manager_a
    moved.refresh_from_db()
    assert (moved.resolution, moved.resolved_by) == (Resolution.APPLIED, manager_a)
    assert "1 change applied." in page
    assert pushes == [appointment.pk]  # Google gets the (same) time back from Cecilia: an echo, no new question


def test_apply_of_a_deletion_cancels_and_tells_the_patient(
    client: Any, manager_a: Any, moved: CalendarReconciliation, google: Any
) -> None:
    CalendarReconciliation.objects.filter(pk=moved.pk).update(
        kind=ReconciliationKind.DELETED, google_start=None, google_end=None
    )
    client.force_login(manager_a)

    _act(client, "apply_in_cecilia", moved)

    assert Appointment.objects.get(pk=moved.appointment_id).status == AppointmentStatus.CANCELLED
    (message,) = Message.objects.filter(direction=MessageDirection.OUTBOUND)
    assert "precisou ser cancelada" in message.text


def test_keep_puts_cecilias_time_back_in_google(
    client: Any,
    receptionist_a: Any,
    moved: CalendarReconciliation,
    google: Any,
    pushes: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client.force_login(receptionist_a)

    with django_capture_on_commit_callbacks(execute=True):
        _act(client, "keep_cecilia_time", moved)
    assert CalendarEventLink.objects.get(appointment_id=moved.appointment_id).state == LinkState.PENDING
    assert pushes == [moved.appointment_id]
    calendar_sync.event_push(appointment_id=moved.appointment_id)
    calendar_sync.calendar_pull(professional_id=moved.professional_id)

    appointment = Appointment.objects.get(pk=moved.appointment_id)
    event = google.event(ANA, calendar_sync.event_id_for(appointment))
    assert event["start"]["dateTime"] == appointment.start.astimezone(appointment.clinic.tz).isoformat()
    moved.refresh_from_db()
    assert (moved.resolution, moved.resolved_by) == (Resolution.KEPT, receptionist_a)
    assert CalendarReconciliation.objects.count() == 1  # the echo of our re-push asks nothing new
    assert not Message.objects.exists()


def test_credentials_are_write_only_and_who_they_act_as_is_shown(
    client: Any, manager_a: Any, clinic_a: Any, google: Any, google_private_key: str
) -> None:
    client.force_login(manager_a)
    key = service_account_json(google, google_private_key, email="agenda@clinica-a.iam.gserviceaccount.com")
    add = reverse("admin:integrations_calendaraccount_add")

    response = client.post(
        add, {"clinic": clinic_a.pk, "event_title": "Consulta — {first_name}", "credentials_json": key}
    )
    account = CalendarAccount.objects.get(clinic=clinic_a)
    change = reverse("admin:integrations_calendaraccount_change", args=[account.pk])
    page = client.get(change).content.decode()
    client.post(change, {"event_title": "{service} — {first_name}", "credentials_json": ""})

    assert response.status_code == 302
    assert "PRIVATE KEY" not in page and "0123456789abcdef" not in page
    assert "agenda@clinica-a.iam.gserviceaccount.com" in page
    assert account.state == AccountState.UNCHECKED
    account.refresh_from_db()
    assert json.loads(account.credentials_json)["client_email"] == "agenda@clinica-a.iam.gserviceaccount.com"
    assert account.event_title == "{service} — {first_name}"


def test_bad_credentials_and_health_placeholders_are_refused_without_echoing_the_secret(
    client: Any, manager_a: Any, clinic_a: Any
) -> None:
    client.force_login(manager_a)
    secret = '{"type": "authorized_user", "client_id": "abc", "client_secret": "s3cr3t-value"}'

    page = client.post(
        reverse("admin:integrations_calendaraccount_add"),
        {"clinic": clinic_a.pk, "event_title": "Consulta — {diagnosis}", "credentials_json": secret},
    ).content.decode()

    assert "The credentials lack refresh_token." in page
    assert "Unknown placeholder {diagnosis}" in page
    assert "s3cr3t-value" not in page
    assert not CalendarAccount.objects.exists()


def test_the_connection_test_says_what_works_and_what_does_not(
    client: Any, manager_a: Any, clinic_a: Any, google: Any
) -> None:
    google.add_calendar(ANA)
    factories.professional(clinic_a, name="Dra. Ana Souza", google_calendar_id=ANA)
    factories.professional(clinic_a, name="Dr. Sem Acesso", google_calendar_id="semacesso@x.com")
    account = CalendarAccount.objects.create(clinic=clinic_a)
    client.force_login(manager_a)
    changelist = reverse("admin:integrations_calendaraccount_changelist")

    page = client.post(changelist, {"action": "test_connection", "_selected_action": [account.pk]}, follow=True)
    google.revoke()
    revoked = client.post(changelist, {"action": "test_connection", "_selected_action": [account.pk]}, follow=True)

    assert "Connected, but these calendars cannot be read: Dr. Sem Acesso" in page.content.decode()
    assert "refused the credentials (invalid_grant)" in revoked.content.decode()
    account.refresh_from_db()
    assert account.state == AccountState.REVOKED
    detail = client.get(reverse("admin:integrations_calendaraccount_change", args=[account.pk])).content.decode()
    assert "semacesso@x.com" in detail and "cannot be read" in detail
