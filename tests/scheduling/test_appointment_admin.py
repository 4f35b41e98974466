"""The appointment form tells staff, in words, why a booking cannot be saved."""

import datetime

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.http import urlencode

from scheduling.errors import SlotTaken
from scheduling.models import (
    ActorKind,
    Appointment,
    AppointmentAction,
    AppointmentChange,
    AppointmentStatus,
    WorkingHours,
)
from tests import factories


def _working_week(professional, start, end):
    for weekday in range(7):
        WorkingHours.objects.create(
            clinic=professional.clinic, professional=professional, weekday=weekday, start=start, end=end
        )


@pytest.fixture
def setup(clinic_a, receptionist_a, client):
    client.force_login(receptionist_a)
    # Bookings go through the booking services, which hold staff to working hours unless they choose otherwise:
    # both professionals work every day, and holidays do not close this clinic (the tests' dates are relative).
    clinic_a.open_on_holidays = True
    clinic_a.save(update_fields=["open_on_holidays"])
    pro = factories.professional(clinic_a, name="Dra. Ana")
    other_pro = factories.professional(clinic_a, name="Dr. Beto")
    for professional in (pro, other_pro):
        _working_week(professional, datetime.time(8), datetime.time(18))
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
def test_a_slot_freed_by_a_cancellation_can_be_booked_again_and_new_bookings_start_scheduled(client, setup):
    # A booking through the services starts "scheduled" (the add form has no status): recording a cancelled
    # appointment over a busy slot is no longer a thing; cancelling the one in the way frees the slot.
    busy = factories.appointment(
        patient=factories.patient(setup["clinic"]),
        professional=setup["pro"],
        service=setup["svc"],
        start=setup["start"],
    )
    assert "status" not in client.get(reverse("admin:scheduling_appointment_add")).context["adminform"].form.fields
    assert _post(client, setup, status="cancelled").status_code == 200
    busy.status, busy.cancellation_reason = "cancelled", "Desistiu"
    busy.save()
    response = _post(client, setup, status="cancelled")
    assert response.status_code == 302
    assert Appointment.objects.exclude(pk=busy.pk).get().status == "scheduled"


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


# --- through the booking services: history, signals, overrides, actions ------------------------------------------


def _messages(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def _change_data(client, appointment, **overrides):
    from tests.admin_forms import changeform_data

    page = client.get(reverse("admin:scheduling_appointment_change", args=[appointment.pk]))
    data = changeform_data(page)
    local = timezone.localtime(appointment.start)
    data.update({"start_0": local.strftime("%d/%m/%Y"), "start_1": local.strftime("%H:%M:%S")})
    data.update(overrides)
    return data


@pytest.mark.django_db
def test_a_booking_in_the_admin_is_recorded_in_the_history_and_announced(
    client, setup, receptionist_a, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert _post(client, setup).status_code == 302
    change = AppointmentChange.objects.get()
    assert (change.action, change.actor_kind, change.actor_user) == (AppointmentAction.BOOKED, "staff", receptionist_a)
    assert callbacks
    page = client.get(reverse("admin:scheduling_appointment_change", args=[change.appointment_id]))
    history = page.content.decode().split('class="appointment-history"')[1].split("</table>")[0]
    assert receptionist_a.username in history and "09:00" in history


@pytest.mark.django_db
def test_outside_the_hours_staff_are_offered_to_book_anyway_and_the_override_is_noted(client, setup):
    evening = setup["start"].replace(hour=20)
    response = _post(client, setup, start_1="20:00:00")
    assert response.status_code == 200
    assert response.context["adminform"].form.offer_force is True
    assert 'id="id_force"' in response.content.decode()
    assert not Appointment.objects.exists()

    response = _post(client, setup, start_1="20:00:00", force="on")
    assert response.status_code == 302
    appointment = Appointment.objects.get()
    assert appointment.start == evening
    assert "forced" in AppointmentChange.objects.get().note


@pytest.mark.django_db
def test_the_book_anyway_box_is_not_offered_for_a_clash(client, setup):
    factories.appointment(
        patient=factories.patient(setup["clinic"]),
        professional=setup["pro"],
        service=setup["svc"],
        start=setup["start"],
    )
    response = _post(client, setup, force="on")
    assert response.status_code == 200
    assert 'id="id_force"' in response.content.decode()  # it was ticked: shown again, but it does not help
    assert Appointment.objects.count() == 1
    response = _post(client, setup)
    assert 'id="id_force"' not in response.content.decode()


@pytest.mark.django_db
def test_moving_an_appointment_in_the_form_is_a_reschedule(client, setup, receptionist_a):
    appointment = factories.appointment(
        patient=setup["patient"], professional=setup["pro"], service=setup["svc"], start=setup["start"], minutes=40
    )
    data = _change_data(client, appointment, start_1="10:00:00")
    assert client.post(reverse("admin:scheduling_appointment_change", args=[appointment.pk]), data).status_code == 302
    appointment.refresh_from_db()
    assert appointment.start == setup["start"].replace(hour=10)
    change = AppointmentChange.objects.get()
    assert (change.action, change.actor_user) == (AppointmentAction.RESCHEDULED, receptionist_a)


@pytest.mark.django_db
def test_confirming_and_cancelling_in_the_form_go_through_the_services(client, setup):
    appointment = factories.appointment(
        patient=setup["patient"], professional=setup["pro"], service=setup["svc"], start=setup["start"]
    )
    url = reverse("admin:scheduling_appointment_change", args=[appointment.pk])
    client.post(url, _change_data(client, appointment, status="confirmed"))
    client.post(url, _change_data(client, appointment, status="cancelled", cancellation_reason="Viagem"))
    appointment.refresh_from_db()
    assert (appointment.status, appointment.cancellation_reason) == (AppointmentStatus.CANCELLED, "Viagem")
    assert list(AppointmentChange.objects.values_list("action", flat=True)) == ["confirmed", "cancelled"]


@pytest.mark.django_db
def test_a_status_the_service_refuses_is_a_message_on_the_form_not_a_crash(client, setup):
    appointment = factories.appointment(
        patient=setup["patient"], professional=setup["pro"], service=setup["svc"], start=setup["start"]
    )
    url = reverse("admin:scheduling_appointment_change", args=[appointment.pk])
    with translation.override("pt-br"):
        response = client.post(url, _change_data(client, appointment, status="no_show"))  # it has not started
    assert response.status_code == 302 and response["Location"] == url
    assert [level for level, _text in _messages(response)] == ["error"]
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.SCHEDULED


@pytest.mark.django_db
def test_editing_only_the_notes_is_recorded_without_their_text(client, setup):
    appointment = factories.appointment(
        patient=setup["patient"], professional=setup["pro"], service=setup["svc"], start=setup["start"]
    )
    url = reverse("admin:scheduling_appointment_change", args=[appointment.pk])
    client.post(url, _change_data(client, appointment, notes="Alergia a dipirona"))
    appointment.refresh_from_db()
    assert appointment.notes == "Alergia a dipirona"
    change = AppointmentChange.objects.get()
    assert change.action == AppointmentAction.EDITED
    assert "dipirona" not in str(change.before) + str(change.after) + change.note


@pytest.mark.django_db
def test_a_booking_that_loses_a_race_at_save_says_so_and_saves_nothing(client, setup, monkeypatch):
    def taken(**kwargs):
        raise SlotTaken()

    monkeypatch.setattr("scheduling.admin.appointment_book", taken)
    response = _post(client, setup)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:scheduling_appointment_add")
    assert [level for level, _text in _messages(response)] == ["error"]
    assert not Appointment.objects.exists()


@pytest.mark.django_db
def test_a_booking_made_from_the_agenda_returns_to_it(client, setup):
    agenda = reverse("admin:scheduling_appointment_agenda") + "?date=2031-01-01"
    url = reverse("admin:scheduling_appointment_add") + "?" + urlencode({"next": agenda})
    data = {
        "clinic": setup["clinic"].pk,
        "patient": setup["patient"].pk,
        "professional": setup["pro"].pk,
        "service": setup["svc"].pk,
        "start_0": setup["start"].strftime("%d/%m/%Y"),
        "start_1": "09:00:00",
        "source": "admin",
    }
    assert client.post(url, data)["Location"] == agenda
    evil = reverse("admin:scheduling_appointment_add") + "?" + urlencode({"next": "https://evil.example/"})
    data["start_1"] = "11:00:00"
    assert client.post(evil, data)["Location"] == reverse("admin:scheduling_appointment_changelist")


@pytest.mark.django_db
def test_list_actions_confirm_what_they_can_and_name_what_they_cannot(client, setup):
    open_one = factories.appointment(
        patient=setup["patient"], professional=setup["pro"], service=setup["svc"], start=setup["start"]
    )
    cancelled = factories.appointment(
        patient=factories.patient(setup["clinic"], full_name="Joana Cancelada"),
        professional=setup["pro"],
        service=setup["svc"],
        start=setup["start"] + datetime.timedelta(hours=2),
        status="cancelled",
        cancellation_reason="x",
    )
    response = client.post(
        reverse("admin:scheduling_appointment_changelist"),
        {"action": "confirm_selected", "_selected_action": [open_one.pk, cancelled.pk]},
    )
    assert response.status_code == 302
    open_one.refresh_from_db()
    cancelled.refresh_from_db()
    assert (open_one.status, cancelled.status) == ("confirmed", "cancelled")
    levels = dict(_messages(response))
    assert "Joana Cancelada" in levels["error"]

    client.post(
        reverse("admin:scheduling_appointment_changelist"),
        {"action": "cancel_selected", "_selected_action": [open_one.pk]},
    )
    open_one.refresh_from_db()
    assert open_one.status == "cancelled"
