"""The audit trail: every staff change to patient data or an appointment is one entry saying who, what, when, and
each changed field before and after; the patient's and Cecilia's own changes are not staff actions."""

from __future__ import annotations

import datetime
import json

import pytest
from django.urls import reverse
from django.utils import timezone

from cecilia.models import StaffRole
from patients.audit import audit_changes, audit_record, audit_snapshot
from patients.models import AuditAction, AuditEntry, PatientGuardian
from scheduling.models import AppointmentChange, AppointmentSource, AppointmentStatus, WorkingHours
from scheduling.services import Actor, appointment_book, appointment_cancel
from tests import factories
from tests.admin_forms import changeform_data


@pytest.fixture
def maria(clinic_a):
    return factories.patient(clinic_a, full_name="Maria Souza", phone="+5511970001234")


@pytest.fixture
def agenda(clinic_a):
    """A professional working every day, a 30-minute service and an appointment three days from now at 09:00."""
    clinic_a.open_on_holidays = True
    clinic_a.save(update_fields=["open_on_holidays"])
    ana = factories.professional(clinic_a, name="Dra. Ana")
    beto = factories.professional(clinic_a, name="Dr. Beto")
    for professional in (ana, beto):
        for weekday in range(7):
            WorkingHours.objects.create(
                clinic=clinic_a,
                professional=professional,
                weekday=weekday,
                start=datetime.time(8),
                end=datetime.time(18),
            )
    consulta = factories.service(clinic_a, name="Consulta", duration_minutes=30, professionals=[ana, beto])
    start = timezone.localtime(timezone.now() + datetime.timedelta(days=3), clinic_a.tz).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    return {"ana": ana, "beto": beto, "consulta": consulta, "start": start}


def _booked(maria, agenda):
    return factories.appointment(
        patient=maria, professional=agenda["ana"], service=agenda["consulta"], start=agenda["start"]
    )


def _patient_url(patient):
    return reverse("admin:patients_patient_change", args=[patient.pk])


def _appointment_form(client, appointment, **overrides):
    data = changeform_data(client.get(reverse("admin:scheduling_appointment_change", args=[appointment.pk])))
    local = timezone.localtime(appointment.start)
    data.update({"start_0": local.strftime("%d/%m/%Y"), "start_1": local.strftime("%H:%M:%S"), **overrides})
    return data


# --- patient data edited in the admin ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_staff_edit_of_a_patients_name_and_phone_records_one_entry_with_the_exact_before_and_after(
    client, receptionist_a, maria
):
    client.force_login(receptionist_a)
    data = changeform_data(client.get(_patient_url(maria)))
    data.update({"full_name": "Maria Souza Lima", "phone": "(11) 98765-4321"})

    assert client.post(_patient_url(maria), data).status_code == 302

    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor, entry.actor_label) == (AuditAction.UPDATE, receptionist_a, "recepcao_a")
    assert (entry.clinic_id, entry.patient_id, entry.object_id) == (maria.clinic_id, maria.pk, str(maria.pk))
    assert entry.content_type.model == "patient"
    assert entry.changes == {
        "full_name": ["Maria Souza", "Maria Souza Lima"],
        "phone": ["+5511970001234", "+5511987654321"],
    }
    assert abs((timezone.now() - entry.at).total_seconds()) < 60


@pytest.mark.django_db
def test_saving_a_patient_unchanged_records_nothing(client, receptionist_a, maria):
    client.force_login(receptionist_a)
    data = changeform_data(client.get(_patient_url(maria)))
    assert client.post(_patient_url(maria), data).status_code == 302
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_a_patient_added_by_staff_is_recorded_as_created_with_what_was_typed(client, receptionist_a, clinic_a):
    client.force_login(receptionist_a)
    page = client.get(reverse("admin:patients_patient_add"))
    data = changeform_data(page)
    data.update({"clinic": clinic_a.pk, "full_name": "João Lima", "phone": "11 91234-5678"})
    assert client.post(reverse("admin:patients_patient_add"), data).status_code == 302

    entry = AuditEntry.objects.get()
    assert entry.action == AuditAction.CREATE
    assert entry.patient.full_name == "João Lima"
    assert entry.changes["full_name"] == [None, "João Lima"]
    assert entry.changes["phone"] == [None, "+5511912345678"]
    assert "notes" not in entry.changes  # blank fields are not noise in the trail


@pytest.mark.django_db
def test_a_guardian_added_on_the_patient_page_is_recorded_for_the_dependent(client, receptionist_a, clinic_a, maria):
    child = factories.patient(clinic_a, full_name="Pedro Souza")
    client.force_login(receptionist_a)
    data = changeform_data(client.get(_patient_url(child)))
    # Two guardian-link inlines (dependents and guardians) share the model; pick the one whose fk is the dependent.
    page = client.get(_patient_url(child))
    inline = next(i for i in page.context["inline_admin_formsets"] if i.formset.fk.name == "dependent")
    prefix = inline.formset.prefix
    data[f"{prefix}-TOTAL_FORMS"] = "1"
    data[f"{prefix}-0-guardian"] = str(maria.pk)
    data[f"{prefix}-0-relationship"] = PatientGuardian._meta.get_field("relationship").choices[0][0]

    response = client.post(_patient_url(child), data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""

    entry = AuditEntry.objects.get()
    assert (entry.action, entry.patient_id, entry.content_type.model) == (
        AuditAction.CREATE,
        child.pk,
        "patientguardian",
    )
    assert entry.changes["guardian"] == [None, str(maria)]
    assert entry.changes["dependent"] == [None, str(child)]


@pytest.mark.django_db
def test_deleting_a_guardian_link_records_what_it_was(client, manager_a, clinic_a, maria):
    child = factories.patient(clinic_a, full_name="Pedro Souza")
    link = PatientGuardian.objects.create(
        clinic=clinic_a,
        guardian=maria,
        dependent=child,
        relationship=PatientGuardian._meta.get_field("relationship").choices[0][0],
    )
    client.force_login(manager_a)
    url = reverse("admin:patients_patientguardian_delete", args=[link.pk])
    assert client.post(url, {"post": "yes"}).status_code == 302

    entry = AuditEntry.objects.get()
    assert (entry.action, entry.object_id, entry.patient_id) == (AuditAction.DELETE, str(link.pk), child.pk)
    assert entry.changes["guardian"] == [str(maria), None]


# --- appointments: one entry per staff action, from the form, the list and the agenda -----------------------------


@pytest.mark.django_db
def test_an_appointment_cancelled_by_staff_in_the_admin_form_records_who_what_when_before_and_after(
    client, receptionist_a, maria, agenda
):
    appointment = _booked(maria, agenda)
    client.force_login(receptionist_a)
    url = reverse("admin:scheduling_appointment_change", args=[appointment.pk])
    data = _appointment_form(client, appointment, status="cancelled", cancellation_reason="Viagem")

    assert client.post(url, data).status_code == 302

    entry = AuditEntry.objects.get()  # one entry for the action, not one per service call plus one for the form
    assert (entry.action, entry.action_name, entry.actor) == (AuditAction.ACTION, "cancel", receptionist_a)
    assert (entry.patient_id, entry.object_id) == (maria.pk, str(appointment.pk))
    assert entry.changes == {
        "status": [str(AppointmentStatus.SCHEDULED.label), str(AppointmentStatus.CANCELLED.label)],
        "cancellation_reason": [None, "Viagem"],
    }
    assert AppointmentChange.objects.filter(appointment=appointment).count() == 1


@pytest.mark.django_db
def test_an_appointment_moved_by_staff_in_the_admin_form_records_the_old_and_new_time_and_professional(
    client, receptionist_a, maria, agenda
):
    appointment = _booked(maria, agenda)
    client.force_login(receptionist_a)
    url = reverse("admin:scheduling_appointment_change", args=[appointment.pk])
    data = _appointment_form(client, appointment, start_1="10:00:00", professional=agenda["beto"].pk)

    assert client.post(url, data).status_code == 302

    entry = AuditEntry.objects.get()
    assert (entry.action, entry.action_name) == (AuditAction.ACTION, "reschedule")
    old, new = agenda["start"], agenda["start"].replace(hour=10)
    assert entry.changes["start"] == [old.isoformat(), new.isoformat()]
    assert entry.changes["end"] == [
        (old + datetime.timedelta(minutes=30)).isoformat(),
        (new + datetime.timedelta(minutes=30)).isoformat(),
    ]
    assert entry.changes["professional"] == ["Dra. Ana", "Dr. Beto"]


@pytest.mark.django_db
def test_an_appointment_cancelled_on_the_agenda_is_audited_once(client, manager_a, maria, agenda):
    appointment = _booked(maria, agenda)
    client.force_login(manager_a)
    url = reverse("admin:scheduling_appointment_agenda_action", args=[appointment.pk, "cancel"])

    assert client.post(url, {"reason": "Paciente pediu"}).status_code == 302

    entry = AuditEntry.objects.get()
    assert (entry.action_name, entry.actor_label, entry.patient_id) == ("cancel", "gestao_a", maria.pk)
    assert entry.changes["status"][1] == str(AppointmentStatus.CANCELLED.label)


@pytest.mark.django_db
def test_confirming_from_the_list_action_records_one_entry_per_appointment(client, receptionist_a, maria, agenda):
    first = _booked(maria, agenda)
    joao = factories.patient(first.clinic, full_name="João")
    second = factories.appointment(
        patient=joao,
        professional=agenda["beto"],
        service=agenda["consulta"],
        start=agenda["start"],
    )
    client.force_login(receptionist_a)
    response = client.post(
        reverse("admin:scheduling_appointment_changelist"),
        {"action": "confirm_selected", "_selected_action": [first.pk, second.pk]},
    )
    assert response.status_code == 302
    entries = AuditEntry.objects.order_by("patient__full_name")
    assert [(e.action_name, e.patient_id) for e in entries] == [("confirm", joao.pk), ("confirm", maria.pk)]


@pytest.mark.django_db
def test_a_booking_made_by_staff_is_audited_and_the_patients_own_booking_through_the_assistant_is_not(
    maria, agenda, receptionist_a
):
    later = agenda["start"] + datetime.timedelta(hours=2)
    by_patient = appointment_book(
        patient=maria,
        service=agenda["consulta"],
        professional=agenda["ana"],
        start=agenda["start"],
        actor=Actor.patient(),
        source=AppointmentSource.WHATSAPP,
    )
    appointment_cancel(appointment=by_patient, actor=Actor.patient())
    assert not AuditEntry.objects.exists()
    assert AppointmentChange.objects.filter(appointment=by_patient).count() == 2  # their history is kept there

    by_staff = appointment_book(
        patient=maria,
        service=agenda["consulta"],
        professional=agenda["ana"],
        start=later,
        actor=Actor.staff(receptionist_a),
        source=AppointmentSource.ADMIN,
    )
    entry = AuditEntry.objects.get()
    assert (entry.action_name, entry.object_id, entry.actor) == ("book", str(by_staff.pk), receptionist_a)
    assert entry.changes["start"] == [None, later.isoformat()]


@pytest.mark.django_db
def test_cecilias_own_changes_are_not_staff_actions(maria, agenda):
    appointment = _booked(maria, agenda)
    appointment_cancel(appointment=appointment, actor=Actor.system())
    assert not AuditEntry.objects.exists()


# --- secrets ----------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_secret_field_is_never_in_a_snapshot_or_in_changes(clinic_a, manager_a):
    before = audit_snapshot(clinic_a)
    clinic_a.whatsapp_api_key = "sk-very-secret-value"
    clinic_a.whatsapp_webhook_secret = "hook-secret-value"
    clinic_a.name = "Clínica A Renomeada"
    clinic_a.save()
    after = audit_snapshot(clinic_a)
    changes = audit_changes(before, after)

    assert changes["name"] == ["Clínica A", "Clínica A Renomeada"]
    for name in ("whatsapp_api_key", "whatsapp_webhook_secret", "whatsapp_verify_token"):
        assert name not in after and name not in changes
    # Even asked for by name, a secret stays out.
    assert "whatsapp_api_key" not in audit_snapshot(clinic_a, fields=["whatsapp_api_key", "name"])
    entry = audit_record(
        actor=manager_a,
        clinic_id=clinic_a.pk,
        action=AuditAction.UPDATE,
        obj=clinic_a,
        patient_id=None,
        changes=changes,
    )
    stored = json.dumps(AuditEntry.objects.get(pk=entry.pk).changes)
    assert "sk-very-secret-value" not in stored and "hook-secret-value" not in stored


@pytest.mark.django_db
def test_snapshots_are_json_safe_with_choices_relations_and_dates_as_staff_read_them(clinic_a, maria, agenda):
    maria.birth_date = datetime.date(1990, 5, 17)
    appointment = _booked(maria, agenda)
    patient_values = audit_snapshot(maria)
    assert patient_values["birth_date"] == "1990-05-17"
    values = audit_snapshot(appointment, fields=["patient", "status", "start"])
    assert values == {
        "patient": str(maria),
        "status": str(AppointmentStatus.SCHEDULED.label),
        "start": agenda["start"].isoformat(),
    }
    json.dumps(audit_snapshot(appointment))


@pytest.mark.django_db
def test_a_long_object_name_is_cut_to_fit_and_the_system_has_no_actor(clinic_a):
    long_name = factories.patient(clinic_a, full_name="M" * 160, whatsapp_name="W" * 120)
    entry = audit_record(
        actor=None, clinic_id=clinic_a.pk, action=AuditAction.ACTION, obj=long_name, patient_id=long_name.pk
    )
    assert len(entry.object_repr) <= 200 and (entry.actor, entry.actor_label) == (None, "")


# --- who sees the trail -----------------------------------------------------------------------------------------------


def _entry_for(clinic, patient, actor):
    return audit_record(
        actor=actor,
        clinic_id=clinic.pk,
        action=AuditAction.UPDATE,
        obj=patient,
        patient_id=patient.pk,
        changes={"full_name": ["Antes", "Depois"], "opt_out_ai": [False, True]},
    )


@pytest.mark.django_db
def test_a_receptionist_cannot_see_the_audit_trail(client, receptionist_a, manager_a, maria):
    entry = _entry_for(maria.clinic, maria, manager_a)
    client.force_login(receptionist_a)
    assert client.get(reverse("admin:patients_auditentry_changelist")).status_code == 403
    # The row is outside what their role may view: the scoped admin answers 404, as for another clinic's rows.
    assert client.get(reverse("admin:patients_auditentry_change", args=[entry.pk])).status_code in (403, 404)


@pytest.mark.django_db
def test_a_manager_reads_the_before_and_after_as_a_table_not_raw_json(client, manager_a, maria):
    entry = _entry_for(maria.clinic, maria, manager_a)
    client.force_login(manager_a)
    page = client.get(reverse("admin:patients_auditentry_change", args=[entry.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="audit-changes"' in html
    assert "<td>Antes</td><td>Depois</td>" in html
    assert '"full_name"' not in html  # labels, not field names in JSON
    assert 'name="_save"' not in html  # read-only


@pytest.mark.django_db
def test_staff_of_clinic_b_see_none_of_clinic_as_entries(client, clinic_a, clinic_b, manager_a, maria):
    entry = _entry_for(clinic_a, maria, manager_a)
    bruno = factories.patient(clinic_b, full_name="Bruno")
    _entry_for(clinic_b, bruno, None)
    manager_b = factories.staff_user(clinic_b, role=StaffRole.MANAGER, username="gestao_b")
    client.force_login(manager_b)

    page = client.get(reverse("admin:patients_auditentry_changelist"))
    assert page.status_code == 200
    assert [e.patient_id for e in page.context["cl"].result_list] == [bruno.pk]
    assert client.get(reverse("admin:patients_auditentry_change", args=[entry.pk])).status_code == 404
    filtered = client.get(reverse("admin:patients_auditentry_changelist"), {"patient__id__exact": maria.pk})
    assert list(filtered.context["cl"].result_list) == []


@pytest.mark.django_db
def test_managers_get_links_from_the_patient_page_to_the_patients_trail_and_accesses(
    client, manager_a, receptionist_a, maria
):
    _entry_for(maria.clinic, maria, manager_a)
    client.force_login(manager_a)
    html = client.get(_patient_url(maria)).content.decode()
    trail = f"{reverse('admin:patients_auditentry_changelist')}?patient__id__exact={maria.pk}"
    accesses = f"{reverse('admin:patients_patientaccess_changelist')}?patient__id__exact={maria.pk}"
    assert trail in html and accesses in html
    listed = client.get(trail)
    assert listed.status_code == 200 and [e.patient_id for e in listed.context["cl"].result_list] == [maria.pk]

    client.force_login(receptionist_a)
    assert trail not in client.get(_patient_url(maria)).content.decode()


@pytest.mark.django_db
def test_the_trail_filters_by_who_what_and_type(client, manager_a, receptionist_a, maria):
    _entry_for(maria.clinic, maria, manager_a)
    _entry_for(maria.clinic, maria, receptionist_a)
    client.force_login(manager_a)
    url = reverse("admin:patients_auditentry_changelist")
    by_actor = client.get(url, {"actor__id__exact": receptionist_a.pk})
    assert [e.actor_id for e in by_actor.context["cl"].result_list] == [receptionist_a.pk]
    assert client.get(url, {"action__exact": "delete"}).context["cl"].result_count == 0
    ct = AuditEntry.objects.first().content_type_id
    assert client.get(url, {"type": ct}).context["cl"].result_count == 2


# --- roles: clinic settings ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_receptionist_gets_403_posting_the_clinic_settings_and_a_manager_can_change_them(
    client, clinic_a, receptionist_a, manager_a
):
    url = reverse("admin:cecilia_clinic_change", args=[clinic_a.pk])
    client.force_login(receptionist_a)
    assert client.post(url, {"name": "Tomada"}).status_code == 403
    clinic_a.refresh_from_db()
    assert clinic_a.name == "Clínica A"

    client.force_login(manager_a)
    data = changeform_data(client.get(url), skip=frozenset({"whatsapp_api_key", "whatsapp_webhook_secret"}))
    data["name"] = "Clínica A Centro"
    assert client.post(url, data).status_code == 302
    clinic_a.refresh_from_db()
    assert clinic_a.name == "Clínica A Centro"


@pytest.mark.django_db
def test_the_trail_names_a_staff_action_in_words_not_its_code(client, receptionist_a, manager_a, maria, agenda):
    from django.contrib import admin as django_admin
    from django.utils import translation

    appointment = _booked(maria, agenda)
    appointment_cancel(appointment=appointment, actor=Actor.staff(receptionist_a), reason="Viagem")
    entry = AuditEntry.objects.get()
    with translation.override("en"):
        assert django_admin.site._registry[AuditEntry].what(entry) == "cancelled the appointment"
    client.force_login(manager_a)
    page = client.get(reverse("admin:patients_auditentry_changelist"))
    assert page.status_code == 200 and [e.pk for e in page.context["cl"].result_list] == [entry.pk]
