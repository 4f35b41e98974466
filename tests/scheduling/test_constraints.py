"""The database itself refuses double booking and cross-clinic references (Invariant 2)."""

import datetime

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from scheduling.models import Appointment, AppointmentStatus
from tests import factories


@pytest.fixture
def agenda(clinic_a):
    pro = factories.professional(clinic_a)
    svc = factories.service(clinic_a, professionals=[pro])
    start = (timezone.now() + datetime.timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0)
    return {
        "clinic": clinic_a,
        "professional": pro,
        "service": svc,
        "start": start,
        "patients": [factories.patient(clinic_a) for _ in range(3)],
    }


def _book(agenda, patient_index, start, minutes=30, **kwargs):
    return factories.appointment(
        patient=agenda["patients"][patient_index],
        professional=agenda["professional"],
        service=agenda["service"],
        start=start,
        minutes=minutes,
        **kwargs,
    )


@pytest.mark.django_db
def test_two_overlapping_active_appointments_of_one_professional_fail_at_the_database(agenda):
    _book(agenda, 0, agenda["start"])
    with pytest.raises(IntegrityError) as excinfo, transaction.atomic():
        _book(agenda, 1, agenda["start"] + datetime.timedelta(minutes=15))
    assert "appointment_no_overlap_per_professional" in str(excinfo.value)


@pytest.mark.django_db
def test_back_to_back_appointments_fit(agenda):
    _book(agenda, 0, agenda["start"])
    _book(agenda, 1, agenda["start"] + datetime.timedelta(minutes=30))
    assert Appointment.objects.count() == 2


@pytest.mark.django_db
def test_a_raw_sql_insert_cannot_double_book_either(agenda):
    first = _book(agenda, 0, agenda["start"])
    with pytest.raises(IntegrityError) as excinfo, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO scheduling_appointment
                (clinic_id, patient_id, professional_id, service_id, start, "end", status, source, notes,
                 cancellation_reason, created_at, created_by_kind, updated_at, updated_by_kind)
            VALUES (%s, %s, %s, %s, %s, %s, 'confirmed', 'api', '', '', now(), 'system', now(), 'system')
            """,
            [
                first.clinic_id,
                agenda["patients"][1].pk,
                first.professional_id,
                first.service_id,
                first.start + datetime.timedelta(minutes=10),
                first.end + datetime.timedelta(minutes=10),
            ],
        )
    assert "appointment_no_overlap_per_professional" in str(excinfo.value)


@pytest.mark.django_db
def test_a_cancelled_appointment_does_not_block_its_slot(agenda):
    _book(agenda, 0, agenda["start"], status=AppointmentStatus.CANCELLED, cancellation_reason="Paciente desistiu")
    _book(agenda, 1, agenda["start"])
    assert Appointment.objects.filter(status=AppointmentStatus.SCHEDULED).count() == 1


@pytest.mark.django_db
def test_a_patient_cannot_be_in_two_places_at_once(agenda, clinic_a):
    other_pro = factories.professional(clinic_a)
    _book(agenda, 0, agenda["start"])
    with pytest.raises(IntegrityError) as excinfo, transaction.atomic():
        factories.appointment(
            patient=agenda["patients"][0], professional=other_pro, service=agenda["service"], start=agenda["start"]
        )
    assert "appointment_no_overlap_per_patient" in str(excinfo.value)


@pytest.mark.django_db
def test_an_appointment_must_end_after_it_starts(agenda):
    with pytest.raises(IntegrityError), transaction.atomic():
        _book(agenda, 0, agenda["start"], minutes=0)


@pytest.mark.django_db
def test_an_appointment_cannot_point_at_another_clinics_patient(agenda, clinic_b):
    foreign_patient = factories.patient(clinic_b)
    with pytest.raises(IntegrityError) as excinfo, transaction.atomic():
        Appointment.objects.create(
            clinic=agenda["clinic"],
            patient=foreign_patient,
            professional=agenda["professional"],
            service=agenda["service"],
            start=agenda["start"],
            end=agenda["start"] + datetime.timedelta(minutes=30),
            source="admin",
            created_by_kind="system",
            updated_by_kind="system",
        )
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the composite FK is deferred like Django's own
    assert "same_clinic" in str(excinfo.value)


@pytest.mark.django_db
def test_validation_reports_a_double_booking_in_words_before_the_database_does(agenda):
    _book(agenda, 0, agenda["start"])
    clash = Appointment(
        clinic=agenda["clinic"],
        patient=agenda["patients"][1],
        professional=agenda["professional"],
        service=agenda["service"],
        start=agenda["start"] + datetime.timedelta(minutes=5),
        source="admin",
        created_by_kind="system",
        updated_by_kind="system",
    )
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as excinfo:
        clash.full_clean()
    assert clash.end == clash.start + datetime.timedelta(minutes=30)  # taken from the service
    assert any("already has an appointment" in m or "já tem" in m for m in excinfo.value.messages)


@pytest.mark.django_db
def test_working_hours_of_one_day_cannot_overlap(clinic_a):
    from scheduling.models import WorkingHours

    pro = factories.professional(clinic_a)
    WorkingHours.objects.create(
        clinic=clinic_a, professional=pro, weekday=0, start=datetime.time(8), end=datetime.time(12)
    )
    WorkingHours.objects.create(
        clinic=clinic_a, professional=pro, weekday=0, start=datetime.time(13), end=datetime.time(18)
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        WorkingHours.objects.create(
            clinic=clinic_a, professional=pro, weekday=0, start=datetime.time(11), end=datetime.time(14)
        )


@pytest.mark.django_db
def test_a_service_cannot_list_another_clinics_professional_or_health_plan(agenda, clinic_b):
    from patients.models import HealthPlan

    foreign_pro = factories.professional(clinic_b)
    with pytest.raises(IntegrityError) as excinfo, transaction.atomic():
        agenda["service"].professionals.add(foreign_pro)
    assert "cross-clinic link" in str(excinfo.value)
    foreign_plan = HealthPlan.objects.create(clinic=clinic_b, name="Plano B")
    with pytest.raises(IntegrityError), transaction.atomic():
        agenda["service"].accepted_health_plans.add(foreign_plan)
    own_plan = HealthPlan.objects.create(clinic=agenda["clinic"], name="Plano A")
    agenda["service"].accepted_health_plans.add(own_plan)  # the same clinic's links are fine
    assert list(agenda["service"].accepted_health_plans.all()) == [own_plan]
