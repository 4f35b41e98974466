"""LGPD anonymisation: afterwards no identifying value of the patient remains in any table or log line, the
appointment records stay, and nothing is sent to that number again."""

from __future__ import annotations

import datetime
import logging
import os

import pytest
from django.db import connection
from django.urls import reverse

from cecilia.models import StaffRole
from conversations.models import Message, MessageStatus
from conversations.outbox.sending import Outcome, message_send
from conversations.outreach import outreach_sweep
from patients.lgpd import patient_anonymise
from patients.models import AuditAction, AuditEntry, Patient
from scheduling.models import Appointment
from scheduling.reminder_models import SkipReason, StepStatus
from scheduling.waitlist_models import OfferStatus, WaitlistStatus
from tests import factories

IDENTIFYING = ("full_name", "whatsapp_name", "phone", "digits", "national", "jid", "email", "cpf", "text", "reply")


@pytest.fixture
def seeded(settings, tmp_path, clinic_a):
    settings.MEDIA_ROOT = tmp_path / "media"
    return {
        "alfa": factories.lgpd_seeded_patient(clinic_a, tag="ALFA", phone="+5511987650001", cpf="52998224725"),
        "beta": factories.lgpd_seeded_patient(clinic_a, tag="BETA", phone="+5521987650002", cpf="11144477735"),
    }


def _database_dump() -> str:
    """Every row of every table of the database, as JSON text."""
    rows = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT row_to_json(t)::text FROM "{table}" t')
            rows += [f"{table}: {row[0]}" for row in cursor.fetchall()]
    return "\n".join(rows).lower()


@pytest.fixture
def anonymised(seeded, manager_a, caplog):
    caplog.set_level(logging.DEBUG)  # the root logger and every child, at DEBUG
    alfa = seeded["alfa"]
    media_path = alfa["voice"].media.path
    patient_anonymise(patient=alfa["patient"], requested_by=manager_a)
    logs = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records) + caplog.text
    return {**seeded, "media_path": media_path, "logs": logs.lower()}


@pytest.mark.django_db
def test_no_identifying_value_remains_in_any_table(anonymised):
    dump = _database_dump()
    values = anonymised["alfa"]["values"]
    for name in (*IDENTIFYING, "tag"):
        assert values[name].lower() not in dump, name


@pytest.mark.django_db
def test_no_identifying_value_appears_in_any_log_line(anonymised):
    assert anonymised["logs"], "the anonymisation logs what it did (counts only)"
    values = anonymised["alfa"]["values"]
    for name in (*IDENTIFYING, "tag"):
        assert values[name].lower() not in anonymised["logs"], name


@pytest.mark.django_db
def test_the_other_patients_data_is_untouched(anonymised):
    dump = _database_dump()
    for name in IDENTIFYING:
        if name == "national":
            continue  # never stored in that format
        assert anonymised["beta"]["values"][name].lower() in dump, name


@pytest.mark.django_db
def test_the_media_file_is_deleted_from_disk(anonymised):
    assert not os.path.exists(anonymised["media_path"])
    assert not Message.objects.filter(conversation=anonymised["alfa"]["conversation"]).exclude(media="").exists()


@pytest.mark.django_db
def test_the_appointment_rows_remain_with_date_professional_service_and_status(anonymised):
    before = anonymised["alfa"]["appointment"]
    after = Appointment.objects.get(pk=before.pk)
    assert (after.start, after.professional_id, after.service_id, after.status) == (
        before.start,
        before.professional_id,
        before.service_id,
        before.status,
    )
    assert after.patient_id == before.patient_id and after.notes == ""


@pytest.mark.django_db
def test_the_patient_is_marked_anonymised_and_an_audit_entry_records_it(anonymised, manager_a):
    patient = Patient.objects.get(pk=anonymised["alfa"]["patient"].pk)
    assert patient.anonymised_at is not None
    assert (patient.phone, patient.whatsapp_id, patient.full_name) == (None, "", "")
    entry = AuditEntry.objects.get(action=AuditAction.ACTION, action_name="anonymise")
    assert (entry.patient_id, entry.actor, entry.changes) == (patient.pk, manager_a, {})


@pytest.mark.django_db
def test_queued_messages_are_cancelled_and_never_sent(anonymised):
    queued = anonymised["alfa"]["queued"]
    assert message_send(message_id=queued.pk) == Outcome.SKIPPED
    queued.refresh_from_db()
    assert (queued.status, queued.error_code) == (MessageStatus.FAILED, "anonymised")


@pytest.mark.django_db
def test_a_message_written_to_them_later_is_refused_by_the_outbox(anonymised, clinic_a):
    later = Message.objects.create(
        clinic=clinic_a,
        conversation=anonymised["alfa"]["conversation"],
        direction="out",
        author="system",
        status="queued",
        text="Oi",
    )
    assert message_send(message_id=later.pk) == Outcome.FAILED
    later.refresh_from_db()
    assert (later.status, later.error_code) == (MessageStatus.FAILED, "anonymised")


@pytest.mark.django_db
def test_a_reminder_due_later_is_not_sent(anonymised, time_machine):
    step = anonymised["alfa"]["pending_step"]
    outbound_before = Message.objects.filter(conversation=anonymised["alfa"]["conversation"]).count()
    time_machine.move_to(step.due_at + datetime.timedelta(minutes=1), tick=False)
    outreach_sweep()
    step.refresh_from_db()
    assert (step.status, step.skip_reason) == (StepStatus.SKIPPED, SkipReason.OPTED_OUT)
    assert Message.objects.filter(conversation=anonymised["alfa"]["conversation"]).count() == outbound_before


@pytest.mark.django_db
def test_waitlist_entries_and_open_offers_are_withdrawn(anonymised):
    entry, offer = anonymised["alfa"]["entry"], anonymised["alfa"]["offer"]
    entry.refresh_from_db()
    offer.refresh_from_db()
    assert (entry.status, offer.status) == (WaitlistStatus.CANCELLED, OfferStatus.DECLINED)


@pytest.mark.django_db
def test_the_calendar_event_is_re_pushed_without_the_name(seeded, manager_a, django_capture_on_commit_callbacks):
    alfa = seeded["alfa"]
    with django_capture_on_commit_callbacks() as callbacks:
        patient_anonymise(patient=alfa["patient"], requested_by=manager_a)
    alfa["link"].refresh_from_db()
    assert alfa["link"].pushed_summary == ""
    assert len(callbacks) == 1  # the re-push of the one linked appointment


@pytest.mark.django_db
def test_anonymising_twice_changes_nothing_more(anonymised, manager_a):
    patient = Patient.objects.get(pk=anonymised["alfa"]["patient"].pk)
    first = patient.anonymised_at
    patient_anonymise(patient=patient, requested_by=manager_a)
    patient.refresh_from_db()
    assert patient.anonymised_at == first


# --- the admin --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_manager_anonymises_after_typing_the_confirmation(client, seeded, manager_a):
    patient = seeded["alfa"]["patient"]
    client.force_login(manager_a)
    url = reverse("admin:patients_patient_anonymise", args=[patient.pk])
    page = client.get(url)
    assert page.status_code == 200 and b"ANONIMIZAR" in page.content
    refused = client.post(url, {"confirm": "sim"})
    assert refused.status_code == 200 and Patient.objects.get(pk=patient.pk).anonymised_at is None
    done = client.post(url, {"confirm": "ANONIMIZAR"})
    assert done.status_code == 302
    assert Patient.objects.get(pk=patient.pk).anonymised_at is not None


@pytest.mark.django_db
def test_an_anonymised_patients_page_says_so_and_cannot_be_edited(client, anonymised, manager_a):
    patient = anonymised["alfa"]["patient"]
    client.force_login(manager_a)
    page = client.get(reverse("admin:patients_patient_change", args=[patient.pk]))
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert "full_name" not in form.fields and "phone" not in form.fields
    assert reverse("admin:patients_patient_anonymise", args=[patient.pk]).encode() not in page.content


@pytest.mark.django_db
def test_a_receptionist_cannot_anonymise(client, seeded, receptionist_a):
    patient = seeded["alfa"]["patient"]
    client.force_login(receptionist_a)
    url = reverse("admin:patients_patient_anonymise", args=[patient.pk])
    assert url.encode() not in client.get(reverse("admin:patients_patient_change", args=[patient.pk])).content
    assert client.get(url).status_code == 403
    assert client.post(url, {"confirm": "ANONIMIZAR"}).status_code == 403
    assert Patient.objects.get(pk=patient.pk).anonymised_at is None


@pytest.mark.django_db
def test_a_manager_of_another_clinic_gets_404(client, seeded, clinic_b):
    client.force_login(factories.staff_user(clinic_b, role=StaffRole.MANAGER))
    url = reverse("admin:patients_patient_anonymise", args=[seeded["alfa"]["patient"].pk])
    assert client.post(url, {"confirm": "ANONIMIZAR"}).status_code == 404
    assert Patient.objects.get(pk=seeded["alfa"]["patient"].pk).anonymised_at is None


@pytest.mark.django_db
def test_another_patients_audit_entry_keeps_a_shared_first_name_but_loses_the_number(seeded, manager_a):
    from django.contrib.contenttypes.models import ContentType

    alfa, beta = seeded["alfa"], seeded["beta"]
    Patient.objects.filter(pk=alfa["patient"].pk).update(whatsapp_name="Fulana")  # one word: a weak identifier
    other = AuditEntry.objects.create(
        clinic=beta["patient"].clinic,
        actor_label="gestao",
        action=AuditAction.UPDATE,
        content_type=ContentType.objects.get_for_model(Patient),
        object_id=str(beta["patient"].pk),
        object_repr="Fulana BETA da Silva",
        patient=beta["patient"],
        changes={"notes": ["", f"Irmã de Fulana, tel. {alfa['values']['phone']}"]},
    )
    patient_anonymise(patient=Patient.objects.get(pk=alfa["patient"].pk), requested_by=manager_a)
    other.refresh_from_db()
    assert other.object_repr == "Fulana BETA da Silva"
    assert other.changes == {"notes": ["", "Irmã de Fulana, tel. [anonimizado]"]}
