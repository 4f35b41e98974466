"""Small builders for test data: plain functions with sensible defaults, overridable by keyword."""

from __future__ import annotations

import datetime
import itertools
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from cecilia.models import Clinic, StaffRole
from cecilia.services import staff_membership_set
from patients.models import Patient
from scheduling.models import ActorKind, Appointment, AppointmentSource, Professional, Service

_seq = itertools.count(1)


def clinic(**kwargs: Any) -> Clinic:
    n = next(_seq)
    defaults = {"name": f"Clínica {n}", "slug": f"clinica-{n}"}
    return Clinic.objects.create(**{**defaults, **kwargs})


def staff_user(clinic: Clinic, *, role: StaffRole = StaffRole.RECEPTIONIST, username: str | None = None) -> Any:
    user = get_user_model().objects.create_user(
        username=username or f"staff{next(_seq)}", password="pw-for-tests-1234", is_staff=True
    )
    staff_membership_set(user_id=user.pk, clinic=clinic, role=role)
    user.refresh_from_db()
    return user


def patient(clinic: Clinic, **kwargs: Any) -> Patient:
    n = next(_seq)
    defaults = {"full_name": f"Paciente {n}", "phone": f"+55119{70000000 + n:08d}"}
    return Patient.objects.create(clinic=clinic, **{**defaults, **kwargs})


def professional(clinic: Clinic, **kwargs: Any) -> Professional:
    return Professional.objects.create(clinic=clinic, **{"name": f"Dra. Profissional {next(_seq)}", **kwargs})


def service(clinic: Clinic, *, professionals: list[Professional] = (), **kwargs: Any) -> Service:
    svc = Service.objects.create(clinic=clinic, **{"name": f"Consulta {next(_seq)}", "duration_minutes": 30, **kwargs})
    svc.professionals.set(professionals)
    return svc


def appointment(
    *,
    patient: Patient,
    professional: Professional,
    service: Service,
    start: datetime.datetime | None = None,
    minutes: int = 30,
    **kwargs: Any,
) -> Appointment:
    start = start or (timezone.now() + datetime.timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    return Appointment.objects.create(
        clinic=patient.clinic,
        patient=patient,
        professional=professional,
        service=service,
        start=start,
        end=start + datetime.timedelta(minutes=minutes),
        source=AppointmentSource.ADMIN,
        created_by_kind=ActorKind.SYSTEM,
        updated_by_kind=ActorKind.SYSTEM,
        **kwargs,
    )
