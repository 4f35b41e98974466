"""The access log: every time staff open a patient's data in the admin, who opened whose data and when is kept."""

from __future__ import annotations

import logging

import pytest
from django.urls import reverse

from cecilia.models import StaffRole
from conversations.models import Conversation
from patients.audit import patient_access_record
from patients.models import AccessKind, PatientAccess
from tests import factories
from tests.admin_forms import changeform_data


@pytest.fixture
def maria(clinic_a):
    return factories.patient(clinic_a, full_name="Maria Souza", phone="+5511970001234")


@pytest.mark.django_db
def test_opening_a_patients_page_logs_who_opened_it_once_per_view(client, receptionist_a, maria):
    client.force_login(receptionist_a)
    url = reverse("admin:patients_patient_change", args=[maria.pk])
    assert client.get(url).status_code == 200
    access = PatientAccess.objects.get()
    assert (access.patient, access.user, access.user_label) == (maria, receptionist_a, "recepcao_a")
    assert (access.clinic_id, access.kind) == (maria.clinic_id, AccessKind.PATIENT)

    client.get(url)
    assert PatientAccess.objects.count() == 2


@pytest.mark.django_db
def test_a_form_re_rendered_after_a_post_is_not_another_access(client, receptionist_a, maria):
    client.force_login(receptionist_a)
    url = reverse("admin:patients_patient_change", args=[maria.pk])
    data = changeform_data(client.get(url))
    data["email"] = "not an e-mail"
    response = client.post(url, data)
    assert response.status_code == 200 and response.context["adminform"].form.errors
    assert PatientAccess.objects.count() == 1  # the GET only


@pytest.mark.django_db
def test_the_patient_list_is_not_an_access_to_one_patients_record(client, receptionist_a, maria):
    client.force_login(receptionist_a)
    assert client.get(reverse("admin:patients_patient_changelist")).status_code == 200
    assert not PatientAccess.objects.exists()


@pytest.mark.django_db
def test_opening_an_appointment_logs_an_access_to_its_patient(client, receptionist_a, clinic_a, maria):
    ana = factories.professional(clinic_a)
    appointment = factories.appointment(
        patient=maria, professional=ana, service=factories.service(clinic_a, professionals=[ana])
    )
    client.force_login(receptionist_a)
    assert client.get(reverse("admin:scheduling_appointment_change", args=[appointment.pk])).status_code == 200
    access = PatientAccess.objects.get()
    assert (access.patient, access.kind, access.user) == (maria, AccessKind.APPOINTMENT, receptionist_a)


@pytest.mark.django_db
def test_opening_a_conversation_logs_an_access_to_its_patient(client, receptionist_a, clinic_a, maria):
    conversation = Conversation.objects.create(clinic=clinic_a, patient=maria)
    client.force_login(receptionist_a)
    assert client.get(reverse("admin:conversations_conversation_change", args=[conversation.pk])).status_code == 200
    access = PatientAccess.objects.get()
    assert (access.patient, access.kind) == (maria, AccessKind.CONVERSATION)


@pytest.mark.django_db
def test_another_clinics_patient_page_answers_404_and_logs_nothing(client, clinic_b, receptionist_a):
    bruno = factories.patient(clinic_b, full_name="Bruno")
    client.force_login(receptionist_a)
    assert client.get(reverse("admin:patients_patient_change", args=[bruno.pk])).status_code == 404
    assert not PatientAccess.objects.exists()


@pytest.mark.django_db
def test_a_failure_to_log_never_breaks_the_page_and_logs_no_personal_data(caplog, receptionist_a, maria):
    with caplog.at_level(logging.ERROR, logger="patients.audit"):
        patient_access_record(user=receptionist_a, clinic_id=None, patient_id=maria.pk, kind=AccessKind.PATIENT)
    assert not PatientAccess.objects.exists()
    [record] = [r for r in caplog.records if r.name == "patients.audit"]
    assert "IntegrityError" in record.getMessage()
    assert "Maria" not in record.getMessage() and "recepcao_a" not in record.getMessage()
    # The caller's transaction is still usable after the failed insert.
    patient_access_record(user=receptionist_a, clinic_id=maria.clinic_id, patient_id=maria.pk, kind=AccessKind.PATIENT)
    assert PatientAccess.objects.count() == 1


# --- the access log page ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_receptionist_cannot_see_the_access_log(client, receptionist_a, maria):
    patient_access_record(user=receptionist_a, clinic_id=maria.clinic_id, patient_id=maria.pk, kind=AccessKind.PATIENT)
    client.force_login(receptionist_a)
    assert client.get(reverse("admin:patients_patientaccess_changelist")).status_code == 403


@pytest.mark.django_db
def test_a_manager_sees_who_opened_a_patients_data_filtered_by_patient_and_kind(
    client, clinic_a, manager_a, receptionist_a, maria
):
    joao = factories.patient(clinic_a, full_name="João")
    for patient, kind in ((maria, AccessKind.PATIENT), (maria, AccessKind.CONVERSATION), (joao, AccessKind.PATIENT)):
        patient_access_record(user=receptionist_a, clinic_id=clinic_a.pk, patient_id=patient.pk, kind=kind)
    client.force_login(manager_a)
    url = reverse("admin:patients_patientaccess_changelist")

    page = client.get(url, {"patient__id__exact": maria.pk})
    assert page.status_code == 200
    assert {(a.patient_id, a.kind) for a in page.context["cl"].result_list} == {
        (maria.pk, AccessKind.PATIENT),
        (maria.pk, AccessKind.CONVERSATION),
    }
    assert client.get(url, {"kind__exact": "conversation"}).context["cl"].result_count == 1
    by_user = client.get(url, {"user__id__exact": receptionist_a.pk})
    assert by_user.context["cl"].result_count == 3
    detail = client.get(reverse("admin:patients_patientaccess_change", args=[page.context["cl"].result_list[0].pk]))
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()


@pytest.mark.django_db
def test_staff_of_clinic_b_see_none_of_clinic_as_accesses(client, clinic_a, clinic_b, receptionist_a, maria):
    patient_access_record(user=receptionist_a, clinic_id=clinic_a.pk, patient_id=maria.pk, kind=AccessKind.PATIENT)
    manager_b = factories.staff_user(clinic_b, role=StaffRole.MANAGER, username="gestao_b")
    client.force_login(manager_b)
    page = client.get(reverse("admin:patients_patientaccess_changelist"))
    assert page.status_code == 200 and list(page.context["cl"].result_list) == []
    access = PatientAccess.objects.get()
    assert client.get(reverse("admin:patients_patientaccess_change", args=[access.pk])).status_code == 404
