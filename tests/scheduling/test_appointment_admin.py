"""The appointment form tells staff, in words, why a booking cannot be saved."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from scheduling.models import ActorKind, Appointment
from tests import factories


@pytest.fixture
def setup(clinic_a, receptionist_a, client):
    client.force_login(receptionist_a)
    pro = factories.professional(clinic_a, name="Dra. Ana")
    other_pro = factories.professional(clinic_a, name="Dr. Beto")
    svc = factories.service(clinic_a, name="Consulta", duration_minutes=40, professionals=[pro])
    patient = factories.patient(clinic_a, full_name="Maria")
    start = timezone.localtime(timezone.now() + datetime.timedelta(days=3), clinic_a.tz).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    return {"pro": pro, "other_pro": other_pro, "svc": svc, "patient": patient, "start": start, "clinic": clinic_a}


def _post(client, setup, **overrides):
    data = {
        "clinic": setup["clinic"].pk,
        "patient": setup["patient"].pk,
        "professional": setup["pro"].pk,
        "service": setup["svc"].pk,
        "start_0": setup["start"].strftime("%d/%m/%Y"),
        "start_1": setup["start"].strftime("%H:%M:%S"),
        "end_0": "",
        "end_1": "",
        "status": "scheduled",
        "source": "admin",
        "notes": "",
        "cancellation_reason": "",
    }
    data.update(overrides)
    return client.post(reverse("admin:scheduling_appointment_add"), data)


def _errors(response):
    return " ".join(str(e) for errors in response.context["adminform"].form.errors.values() for e in errors)


@pytest.mark.django_db
def test_a_booking_without_an_end_lasts_as_long_as_its_service_and_records_who_made_it(client, setup, receptionist_a):
    response = _post(client, setup)
    assert response.status_code == 302
    appointment = Appointment.objects.get()
    assert appointment.start == setup["start"]
    assert appointment.end - appointment.start == datetime.timedelta(minutes=40)
    assert (appointment.created_by_kind, appointment.created_by_user) == (ActorKind.STAFF, receptionist_a)


@pytest.mark.django_db
def test_a_professional_who_does_not_perform_the_service_is_refused(client, setup):
    response = _post(client, setup, professional=setup["other_pro"].pk)
    assert response.status_code == 200
    assert "Dr. Beto" in _errors(response) and "Consulta" in _errors(response)
    assert not Appointment.objects.exists()


@pytest.mark.django_db
def test_an_inactive_professional_takes_no_bookings(client, setup):
    setup["pro"].active = False
    setup["pro"].save()
    response = _post(client, setup)
    assert response.status_code == 200
    assert "Dra. Ana" in _errors(response)
    assert not Appointment.objects.exists()


@pytest.mark.django_db
def test_a_clash_names_the_appointment_in_the_way_in_the_clinics_time(client, setup):
    factories.appointment(
        patient=factories.patient(setup["clinic"]),
        professional=setup["pro"],
        service=setup["svc"],
        start=setup["start"],
        minutes=40,
    )
    response = _post(client, setup, start_1=(setup["start"] + datetime.timedelta(minutes=20)).strftime("%H:%M:%S"))
    assert response.status_code == 200
    message = _errors(response)
    assert "Dra. Ana" in message and "09:00" in message and "09:40" in message
    assert Appointment.objects.count() == 1


@pytest.mark.django_db
def test_a_cancelled_appointment_can_be_recorded_over_a_busy_slot(client, setup):
    factories.appointment(
        patient=factories.patient(setup["clinic"]),
        professional=setup["pro"],
        service=setup["svc"],
        start=setup["start"],
    )
    response = _post(client, setup, status="cancelled", cancellation_reason="Desistiu")
    assert response.status_code == 302
    assert Appointment.objects.count() == 2


@pytest.mark.django_db
def test_the_agenda_list_opens_on_what_is_still_to_come(client, setup):
    past = factories.appointment(
        patient=setup["patient"],
        professional=setup["pro"],
        service=setup["svc"],
        start=setup["start"] - datetime.timedelta(days=30),
    )
    upcoming = factories.appointment(
        patient=setup["patient"], professional=setup["pro"], service=setup["svc"], start=setup["start"]
    )
    url = reverse("admin:scheduling_appointment_changelist")
    assert list(client.get(url).context["cl"].result_list) == [upcoming]
    assert list(client.get(url, {"period": "past"}).context["cl"].result_list) == [past]
    assert list(client.get(url, {"period": "all"}).context["cl"].result_list) == [past, upcoming]


@pytest.mark.django_db
def test_two_overlapping_shifts_typed_together_are_a_form_error_not_a_crash(client, clinic_a, manager_a):
    client.force_login(manager_a)
    url = reverse("admin:scheduling_professional_add")
    response = client.post(
        url,
        {
            "clinic": clinic_a.pk,
            "name": "Dra. Nova",
            "specialty": "",
            "council_registration": "",
            "google_calendar_id": "",
            "active": "on",
            "working_hours-TOTAL_FORMS": "2",
            "working_hours-INITIAL_FORMS": "0",
            "working_hours-0-weekday": "0",
            "working_hours-0-start": "08:00",
            "working_hours-0-end": "12:00",
            "working_hours-1-weekday": "0",
            "working_hours-1-start": "11:00",
            "working_hours-1-end": "14:00",
            "time_off-TOTAL_FORMS": "0",
            "time_off-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    formset = next(f.formset for f in response.context["inline_admin_formsets"] if f.formset.prefix == "working_hours")
    assert "08:00–12:00" in " ".join(formset.non_form_errors())
    from scheduling.models import Professional

    assert not Professional.objects.filter(name="Dra. Nova").exists()
