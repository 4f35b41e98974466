import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils.translation import gettext as _

from patients.models import Patient
from tests import factories


@pytest.mark.django_db
def test_one_phone_written_two_ways_is_one_patient_per_clinic(clinic_a, clinic_b):
    first = Patient(clinic=clinic_a, full_name="Maria", phone="(11) 98765-4321")
    first.full_clean()
    first.save()
    second = Patient(clinic=clinic_a, full_name="Maria de novo", phone="+55 11 8765-4321")
    with pytest.raises(ValidationError) as excinfo:
        second.full_clean()
    assert str(_("Another patient of this clinic has this phone number.")) in excinfo.value.messages
    # The same person may be a patient of another clinic too.
    other = Patient(clinic=clinic_b, full_name="Maria", phone="11 98765-4321")
    other.full_clean()
    other.save()
    assert other.phone == first.phone == "+5511987654321"


@pytest.mark.django_db
def test_saving_normalises_the_phone_and_the_database_refuses_anything_else(clinic_a):
    patient = Patient.objects.create(clinic=clinic_a, full_name="X", phone="11 98765-4321")
    patient.refresh_from_db()
    assert patient.phone == "+5511987654321"
    assert Patient.objects.filter(phone="(11) 8765-4321").get() == patient  # lookups normalise too
    with pytest.raises(IntegrityError) as excinfo, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE patients_patient SET phone = '11 98765-4321' WHERE id = %s", [patient.pk])
    assert "patient_phone_e164" in str(excinfo.value)


@pytest.mark.django_db
def test_a_cleaned_patient_gets_a_readable_error_for_a_bad_phone(clinic_a):
    patient = Patient(clinic=clinic_a, full_name="X", phone="telefone")
    with pytest.raises(ValidationError) as excinfo:
        patient.full_clean()
    assert "phone" in excinfo.value.message_dict


@pytest.mark.django_db
def test_a_dependent_without_a_phone_is_allowed_but_a_guardian_must_be_of_the_same_clinic(clinic_a, clinic_b):
    from patients.models import PatientGuardian

    child = factories.patient(clinic_a, phone=None, full_name="Pedro")
    mother = factories.patient(clinic_a, full_name="Ana")
    stranger = factories.patient(clinic_b, full_name="Outra")
    link = PatientGuardian(guardian=mother, dependent=child)
    link.full_clean()  # takes the clinic from the guardian
    link.save()
    assert link.clinic_id == clinic_a.pk
    bad = PatientGuardian(guardian=stranger, dependent=child)
    with pytest.raises(ValidationError):
        bad.full_clean()
