"""The privacy notice (LGPD): sent once per version to each patient, acknowledged when the patient goes on."""

from __future__ import annotations

import datetime

import pytest
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from patients.models import PrivacyAcknowledgement
from patients.privacy import (
    privacy_notice_acknowledged,
    privacy_notice_due,
    privacy_notice_sent,
    privacy_notice_version,
)
from tests import factories

NOTICE = "Seus dados são usados só para o seu atendimento, conforme a LGPD."


@pytest.fixture
def clinic(clinic_a):
    clinic_a.privacy_notice = NOTICE
    clinic_a.privacy_notice_url = "https://clinica-a.example/privacidade"
    clinic_a.save()
    return clinic_a


@pytest.fixture
def patient(clinic):
    return factories.patient(clinic)


@pytest.mark.django_db
def test_a_patient_is_due_the_notice_until_it_is_sent_then_acknowledges_it_by_writing_again(clinic, patient):
    sent_at = timezone.now()
    assert privacy_notice_due(clinic=clinic, patient=patient)
    record = privacy_notice_sent(clinic=clinic, patient=patient, at=sent_at)
    assert not privacy_notice_due(clinic=clinic, patient=patient)
    assert (record.notice_sent_at, record.acknowledged_at, record.channel) == (sent_at, None, "whatsapp")
    assert record.notice_version == privacy_notice_version(clinic)

    replied_at = sent_at + datetime.timedelta(minutes=2)
    privacy_notice_acknowledged(clinic=clinic, patient=patient, at=replied_at)
    record.refresh_from_db()
    assert record.acknowledged_at == replied_at
    # A later message does not move the acknowledgement.
    privacy_notice_acknowledged(clinic=clinic, patient=patient, at=replied_at + datetime.timedelta(hours=1))
    record.refresh_from_db()
    assert record.acknowledged_at == replied_at


@pytest.mark.django_db
def test_a_message_written_before_the_notice_was_sent_acknowledges_nothing(clinic, patient):
    sent_at = timezone.now()
    privacy_notice_sent(clinic=clinic, patient=patient, at=sent_at)
    privacy_notice_acknowledged(clinic=clinic, patient=patient, at=sent_at - datetime.timedelta(seconds=5))
    assert PrivacyAcknowledgement.objects.get(patient=patient).acknowledged_at is None


@pytest.mark.django_db
def test_sending_twice_keeps_the_first_record(clinic, patient):
    first_at = timezone.now()
    first = privacy_notice_sent(clinic=clinic, patient=patient, at=first_at)
    again = privacy_notice_sent(clinic=clinic, patient=patient, at=first_at + datetime.timedelta(minutes=1))
    assert again.pk == first.pk and again.notice_sent_at == first_at
    assert PrivacyAcknowledgement.objects.filter(patient=patient).count() == 1


@pytest.mark.django_db
def test_a_changed_notice_text_or_link_is_due_again_for_everyone(clinic, patient):
    other = factories.patient(clinic)
    now = timezone.now()
    for person in (patient, other):
        privacy_notice_sent(clinic=clinic, patient=person, at=now)
    old_version = privacy_notice_version(clinic)

    clinic.privacy_notice = NOTICE + " Você pode pedir a exclusão a qualquer momento."
    clinic.save()
    assert privacy_notice_version(clinic) != old_version
    assert privacy_notice_due(clinic=clinic, patient=patient) and privacy_notice_due(clinic=clinic, patient=other)
    privacy_notice_sent(clinic=clinic, patient=patient, at=now + datetime.timedelta(days=1))
    assert not privacy_notice_due(clinic=clinic, patient=patient)
    assert PrivacyAcknowledgement.objects.filter(patient=patient).count() == 2  # both versions on record

    clinic.privacy_notice_url = "https://clinica-a.example/lgpd"
    assert privacy_notice_due(clinic=clinic, patient=patient)


@pytest.mark.django_db
def test_spaces_around_the_notice_do_not_make_it_a_new_version(clinic, patient):
    version = privacy_notice_version(clinic)
    clinic.privacy_notice = f"\n  {NOTICE}  \n"
    assert privacy_notice_version(clinic) == version


@pytest.mark.django_db
def test_one_patients_notice_is_theirs_alone(clinic, patient, clinic_b):
    other = factories.patient(clinic)
    privacy_notice_sent(clinic=clinic, patient=patient, at=timezone.now())
    assert privacy_notice_due(clinic=clinic, patient=other)
    clinic_b.privacy_notice, clinic_b.privacy_notice_url = clinic.privacy_notice, clinic.privacy_notice_url
    same_number_at_b = factories.patient(clinic_b, phone=patient.phone)
    assert privacy_notice_due(clinic=clinic_b, patient=same_number_at_b)


@pytest.mark.django_db
def test_the_database_refuses_a_record_pointing_at_another_clinics_patient(clinic, clinic_b):
    theirs = factories.patient(clinic_b)
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the composite FK is deferred like Django's own
        PrivacyAcknowledgement.objects.create(
            clinic=clinic, patient=theirs, notice_version="abc", notice_sent_at=timezone.now()
        )


@pytest.mark.django_db
def test_staff_see_the_notices_on_the_patient_page_and_cannot_edit_them(client, receptionist_a, clinic, patient):
    sent_at = timezone.now()
    record = privacy_notice_sent(clinic=clinic, patient=patient, at=sent_at)
    client.force_login(receptionist_a)
    response = client.get(reverse("admin:patients_patient_change", args=[patient.pk]))
    page = response.content.decode()
    assert record.notice_version in page
    formset = next(
        f.formset for f in response.context["inline_admin_formsets"] if f.formset.model is PrivacyAcknowledgement
    )
    # Every column is read-only: the only form fields left are the hidden row and parent ids.
    assert formset.forms and all(field.widget.is_hidden for form in formset.forms for field in form.fields.values())
    assert not any(
        f.has_add_permission or f.has_delete_permission
        for f in response.context["inline_admin_formsets"]
        if f.formset.model is PrivacyAcknowledgement
    )
