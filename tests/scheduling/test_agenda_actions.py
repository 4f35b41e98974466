"""Quick actions on the agenda's blocks: each goes through the booking services, and refusals read as messages."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import translation

from scheduling.errors import InvalidTransition
from scheduling.models import AppointmentAction, AppointmentChange, AppointmentStatus
from tests import factories

SP = zoneinfo.ZoneInfo("America/Sao_Paulo")
NOW = datetime.datetime(2031, 3, 12, 10, 0, tzinfo=SP)


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def booked(clinic_a):
    ana = factories.professional(clinic_a, name="Dra. Ana")
    consulta = factories.service(clinic_a, name="Consulta", professionals=[ana])
    maria = factories.patient(clinic_a, full_name="Maria Souza")
    joao = factories.patient(clinic_a, full_name="João Lima")
    later = factories.appointment(
        patient=maria, professional=ana, service=consulta, start=NOW + datetime.timedelta(hours=3)
    )
    earlier = factories.appointment(
        patient=joao, professional=ana, service=consulta, start=NOW - datetime.timedelta(hours=1)
    )
    return {"later": later, "earlier": earlier}


def _act(client, appointment, action, **data):
    url = reverse("admin:scheduling_appointment_agenda_action", args=[appointment.pk, action])
    return client.post(url, {"next": "/admin/scheduling/appointment/agenda/?date=2031-03-12", **data})


def _messages(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


@pytest.mark.django_db
def test_confirming_goes_through_the_service_and_is_recorded_with_who_did_it(client, receptionist_a, booked):
    client.force_login(receptionist_a)
    response = _act(client, booked["later"], "confirm")

    assert response.status_code == 302
    assert response["Location"] == "/admin/scheduling/appointment/agenda/?date=2031-03-12"
    booked["later"].refresh_from_db()
    assert booked["later"].status == AppointmentStatus.CONFIRMED
    change = AppointmentChange.objects.get(appointment=booked["later"])
    assert (change.action, change.actor_user) == (AppointmentAction.CONFIRMED, receptionist_a)
    [(level, text)] = _messages(response)
    assert level == "success" and "Maria Souza" in text and "13:00" in text


@pytest.mark.django_db
def test_cancelling_keeps_the_reason_typed(client, manager_a, booked, django_capture_on_commit_callbacks):
    client.force_login(manager_a)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _act(client, booked["later"], "cancel", reason="  Paciente viajou  ")
    booked["later"].refresh_from_db()
    assert booked["later"].status == AppointmentStatus.CANCELLED
    assert booked["later"].cancellation_reason == "Paciente viajou"
    assert callbacks  # appointment_changed is sent after commit


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "status"), [("no_show", AppointmentStatus.NO_SHOW), ("complete", AppointmentStatus.COMPLETED)]
)
def test_an_appointment_that_started_can_be_marked_a_no_show_or_completed(
    client, receptionist_a, booked, action, status
):
    client.force_login(receptionist_a)
    _act(client, booked["earlier"], action)
    booked["earlier"].refresh_from_db()
    assert booked["earlier"].status == status


@pytest.mark.django_db
def test_a_no_show_before_the_start_is_refused_with_the_services_words(client, receptionist_a, booked):
    client.force_login(receptionist_a)
    with translation.override("pt-br"):
        response = _act(client, booked["later"], "no_show")
        [(level, text)] = _messages(response)
    assert response.status_code == 302
    assert level == "error" and text  # the service's reason, not a crash
    booked["later"].refresh_from_db()
    assert booked["later"].status == AppointmentStatus.SCHEDULED
    assert not AppointmentChange.objects.exists()


@pytest.mark.django_db
def test_confirming_a_cancelled_appointment_says_why_it_cannot(client, receptionist_a, booked):
    client.force_login(receptionist_a)
    booked["later"].status, booked["later"].cancellation_reason = AppointmentStatus.CANCELLED, "x"
    booked["later"].save()
    with translation.override("pt-br"):
        response = _act(client, booked["later"], "confirm")
        expected = InvalidTransition(status=AppointmentStatus.CANCELLED, action="confirm").message
        assert _messages(response) == [("error", expected)]
    booked["later"].refresh_from_db()
    assert booked["later"].status == AppointmentStatus.CANCELLED


@pytest.mark.django_db
def test_another_clinics_appointment_answers_404_and_stays_untouched(client, receptionist_a, clinic_b):
    client.force_login(receptionist_a)
    pro = factories.professional(clinic_b)
    other = factories.appointment(
        patient=factories.patient(clinic_b),
        professional=pro,
        service=factories.service(clinic_b, professionals=[pro]),
        start=NOW + datetime.timedelta(days=1),
    )
    assert _act(client, other, "confirm").status_code == 404
    other.refresh_from_db()
    assert other.status == AppointmentStatus.SCHEDULED


@pytest.mark.django_db
def test_only_posts_of_known_actions_are_accepted_and_next_stays_on_this_site(client, receptionist_a, booked):
    client.force_login(receptionist_a)
    url = reverse("admin:scheduling_appointment_agenda_action", args=[booked["later"].pk, "confirm"])
    assert client.get(url).status_code == 405
    assert _act(client, booked["later"], "delete").status_code == 404
    response = client.post(url, {"next": "https://evil.example/"})
    assert response["Location"].startswith(reverse("admin:scheduling_appointment_agenda"))


@pytest.mark.django_db
def test_quick_actions_need_the_csrf_token(receptionist_a, booked):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(receptionist_a)
    assert _act(strict, booked["later"], "confirm").status_code == 403
    booked["later"].refresh_from_db()
    assert booked["later"].status == AppointmentStatus.SCHEDULED
