"""The benchmark clinic: 10,000 patients and 50,000 appointments, built with bulk inserts from a fixed seed.

Everything hangs off one clinic (slug `bench-admin`), so the data can share a database with anything else and be
thrown away on its own. When the clinic already holds exactly the wanted counts it is reused as it is.

Appointments sit on a 30-minute grid of the professionals' working hours (services last 20 or 30 minutes), so one
professional never has two at once; the patients of one grid slot are drawn without replacement, so one patient
never has two at once either. Both no-overlap exclusion constraints hold without asking the database slot by slot.
"""

from __future__ import annotations

import datetime
import random
import time
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import connection, transaction

from cecilia.models import Clinic, StaffMembership, StaffRole
from cecilia.services import staff_membership_set
from patients.models import HealthPlan, Patient
from scheduling.models import (
    ActorKind,
    Appointment,
    AppointmentSource,
    AppointmentStatus,
    Professional,
    Service,
    WorkingHours,
)

CLINIC_SLUG = "bench-admin"
STAFF_USERNAME = "bench-recepcao"
PATIENTS = 10_000
APPOINTMENTS = 50_000
SEED = 20260105
BATCH = 5_000
TIMEZONE = "America/Sao_Paulo"
FIRST_DAY = datetime.date(2025, 11, 3)  # a Monday; fixed so the data is the same whenever it is built
AS_OF = datetime.date(2026, 11, 2)  # before it appointments are history (completed, no-show); after, upcoming
SLOT = datetime.timedelta(minutes=30)
BOOKED_SHARE = 0.85

_T = datetime.time
# weekday → working intervals (the same for every professional: the grid, not the variety, is what matters here)
HOURS = {day: ((_T(8), _T(12)), (_T(13), _T(18))) for day in range(5)} | {5: ((_T(8), _T(12)),)}

PROFESSIONALS = (
    ("Dra. Ana Souza", "Clínica geral", "CRM-SP 123456"),
    ("Dr. Bruno Lima", "Odontologia", "CRO-SP 54321"),
    ("Dra. Carla Mendes", "Dermatologia", "CRM-SP 234567"),
    ("Dr. Diego Rocha", "Ortodontia", "CRO-SP 65432"),
    ("Dra. Elisa Prado", "Pediatria", "CRM-SP 345678"),
    ("Dr. Fábio Nunes", "Cardiologia", "CRM-SP 456789"),
    ("Dra. Gabriela Teixeira", "Ginecologia", "CRM-SP 567890"),
    ("Dr. Henrique Castro", "Endodontia", "CRO-SP 76543"),
)

SERVICES = (
    # name, minutes (≤ the 30-minute slot), private price, indexes into PROFESSIONALS
    ("Consulta de clínica geral", 30, "250.00", (0, 4, 5, 6)),
    ("Retorno de consulta", 20, None, (0, 2, 4, 5, 6)),
    ("Limpeza dental", 30, "200.00", (1, 7)),
    ("Avaliação odontológica", 30, "120.00", (1, 3, 7)),
    ("Consulta dermatológica", 30, "320.00", (2,)),
    ("Manutenção de aparelho", 20, "150.00", (3,)),
    ("Eletrocardiograma", 20, "180.00", (5,)),
    ("Tratamento de canal", 30, "900.00", (7,)),
)

HEALTH_PLANS = ("Unimed", "Bradesco Saúde", "SulAmérica", "Amil", "Porto Seguro Saúde")

FIRST_NAMES = (
    "Maria", "José", "Ana", "João", "Francisca", "Antônio", "Juliana", "Carlos", "Fernanda", "Lucas", "Patrícia",
    "Rafael", "Camila", "Marcos", "Aline", "Bruno", "Letícia", "Gabriel", "Beatriz", "Thiago", "Larissa", "Pedro",
    "Vanessa", "Mateus", "Renata", "Felipe", "Cláudia", "Gustavo", "Sônia", "Eduardo",
)  # fmt: skip
SURNAMES = (
    "Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima", "Gomes", "Costa",
    "Ribeiro", "Martins", "Carvalho", "Almeida", "Lopes", "Soares", "Fernandes", "Vieira", "Barbosa", "Rocha",
    "Dias", "Nascimento", "Andrade", "Moreira", "Nunes", "Marques", "Machado", "Mendes", "Freitas",
)  # fmt: skip


@dataclass(frozen=True)
class BenchData:
    clinic: Clinic
    staff: object  # the receptionist (a User)
    professionals: list[Professional]
    built: bool
    seconds: float


def bench_data_get_or_build(*, rebuild: bool = False) -> BenchData:
    began = time.perf_counter()
    clinic = Clinic.objects.filter(slug=CLINIC_SLUG).first()
    if clinic is not None and not rebuild and _counts(clinic) == (PATIENTS, APPOINTMENTS):
        built = False
    else:
        if clinic is not None:
            _clinic_delete(clinic)
        clinic = _build()
        built = True
    staff = _receptionist(clinic)
    professionals = list(Professional.objects.filter(clinic=clinic).order_by("name"))
    return BenchData(clinic, staff, professionals, built, time.perf_counter() - began)


def _counts(clinic: Clinic) -> tuple[int, int]:
    return Patient.objects.filter(clinic=clinic).count(), Appointment.objects.filter(clinic=clinic).count()


def _receptionist(clinic: Clinic) -> object:
    User = get_user_model()
    user, created = User.objects.get_or_create(username=STAFF_USERNAME, defaults={"is_staff": True})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    staff_membership_set(user_id=user.pk, clinic=clinic, role=StaffRole.RECEPTIONIST)
    return User.objects.get(pk=user.pk)


@transaction.atomic
def _clinic_delete(clinic: Clinic) -> None:
    """Remove a bench clinic whose counts are not the wanted ones, children first (most of them protect the clinic)."""
    Appointment.objects.filter(clinic=clinic).delete()
    Patient.objects.filter(clinic=clinic).delete()
    Service.objects.filter(clinic=clinic).delete()
    Professional.objects.filter(clinic=clinic).delete()
    StaffMembership.objects.filter(clinic=clinic).delete()
    clinic.delete()


@transaction.atomic
def _build() -> Clinic:
    rng = random.Random(SEED)
    clinic = Clinic.objects.create(
        name="Clínica Bench (10 mil pacientes)", slug=CLINIC_SLUG, timezone=TIMEZONE, city="São Paulo", state="SP"
    )
    plans = HealthPlan.objects.bulk_create(HealthPlan(clinic=clinic, name=name) for name in HEALTH_PLANS)
    professionals = Professional.objects.bulk_create(
        Professional(clinic=clinic, name=name, specialty=specialty, council_registration=registration)
        for name, specialty, registration in PROFESSIONALS
    )
    WorkingHours.objects.bulk_create(
        WorkingHours(clinic=clinic, professional=p, weekday=day, start=start, end=end)
        for p in professionals
        for day, intervals in HOURS.items()
        for start, end in intervals
    )
    services = Service.objects.bulk_create(
        Service(clinic=clinic, name=name, duration_minutes=minutes, price=Decimal(price) if price else None)
        for name, minutes, price, _who in SERVICES
    )
    Service.professionals.through.objects.bulk_create(
        Service.professionals.through(service_id=s.pk, professional_id=professionals[i].pk)
        for s, (_n, _m, _p, who) in zip(services, SERVICES, strict=True)
        for i in who
    )
    Service.accepted_health_plans.through.objects.bulk_create(
        Service.accepted_health_plans.through(service_id=s.pk, healthplan_id=plan.pk)
        for s in services
        for plan in plans[:3]
    )
    patient_ids = _patients(clinic, plans, rng)
    services_of = {
        p.pk: [s for s, (_n, _m, _p, who) in zip(services, SERVICES, strict=True) if i in who]
        for i, p in enumerate(professionals)
    }
    _appointments(clinic, professionals, services_of, patient_ids, rng)
    with connection.cursor() as cursor:
        # Patients arrive over two years, not all in the second the bench ran: the date hierarchy has something to
        # show. One statement, derived from the id, so it costs nothing and stays the same on every build.
        cursor.execute(
            f"UPDATE {Patient._meta.db_table} SET created_at = created_at - make_interval(days => mod(id, 730)::int) "
            "WHERE clinic_id = %s",
            [clinic.pk],
        )
    for model in (Patient, Appointment, Professional, Service, HealthPlan):
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    return clinic


def _cpf(n: int) -> str:
    base = f"{100_000_000 + n * 7_919:09d}"
    for _ in range(2):
        weight = len(base) + 1
        remainder = sum(int(d) * (weight - i) for i, d in enumerate(base)) * 10 % 11
        base += "0" if remainder == 10 else str(remainder)
    return base


def _patients(clinic: Clinic, plans: list[HealthPlan], rng: random.Random) -> list[int]:
    rows = []
    for n in range(PATIENTS):
        first = rng.choice(FIRST_NAMES)
        full_name = f"{first} {rng.choice(SURNAMES)} {rng.choice(SURNAMES)}"
        whatsapp_only = rng.random() < 0.08  # known only by the name their WhatsApp shows
        plan = rng.choice(plans) if rng.random() < 0.4 else None
        rows.append(
            Patient(
                clinic=clinic,
                full_name="" if whatsapp_only else full_name,
                whatsapp_name=first if rng.random() < 0.7 or whatsapp_only else "",
                # A few dependents (children) have no phone of their own.
                phone=None if rng.random() < 0.04 else f"+55119{10_000_000 + n * 7_919:08d}",
                birth_date=datetime.date(1940, 1, 1) + datetime.timedelta(days=rng.randrange(0, 365 * 84)),
                cpf=_cpf(n) if rng.random() < 0.6 else "",
                email=f"paciente{n}@example.com" if rng.random() < 0.3 else "",
                health_plan=plan,
                health_plan_card_number=f"{plan.name[:3].upper()}{1_000_000 + n}" if plan else "",
                opt_out_automated=rng.random() < 0.03,
                opt_out_ai=rng.random() < 0.02,
            )
        )
    created = Patient.objects.bulk_create(rows, batch_size=BATCH)
    return [p.pk for p in created]


def _slots() -> Iterator[datetime.datetime]:
    tz = zoneinfo.ZoneInfo(TIMEZONE)
    day = FIRST_DAY
    while True:
        for start, end in HOURS.get(day.weekday(), ()):
            moment = datetime.datetime.combine(day, start, tzinfo=tz)
            last = datetime.datetime.combine(day, end, tzinfo=tz)
            while moment + SLOT <= last:
                yield moment
                moment += SLOT
        day += datetime.timedelta(days=1)


def _appointments(
    clinic: Clinic,
    professionals: list[Professional],
    services_of: dict[int, list[Service]],
    patient_ids: list[int],
    rng: random.Random,
) -> None:
    as_of = datetime.datetime.combine(AS_OF, _T(0), tzinfo=zoneinfo.ZoneInfo(TIMEZONE))
    rows: list[Appointment] = []
    slots = _slots()
    while len(rows) < APPOINTMENTS:
        start = next(slots)
        booked = [p for p in professionals if rng.random() < BOOKED_SHARE][: APPOINTMENTS - len(rows)]
        patients = rng.sample(patient_ids, len(booked))  # distinct: no patient twice in one slot
        for professional, patient_id in zip(booked, patients, strict=True):
            service = rng.choice(services_of[professional.pk])
            status = _status(rng, past=start < as_of)
            rows.append(
                Appointment(
                    clinic=clinic,
                    patient_id=patient_id,
                    professional=professional,
                    service=service,
                    start=start,
                    end=start + datetime.timedelta(minutes=service.duration_minutes),
                    status=status,
                    cancellation_reason="Paciente desmarcou" if status == AppointmentStatus.CANCELLED else "",
                    source=AppointmentSource.WHATSAPP if rng.random() < 0.6 else AppointmentSource.ADMIN,
                    created_by_kind=ActorKind.PATIENT if rng.random() < 0.6 else ActorKind.SYSTEM,
                    updated_by_kind=ActorKind.SYSTEM,
                )
            )
    Appointment.objects.bulk_create(rows, batch_size=BATCH)


_PAST = ((AppointmentStatus.COMPLETED, 0.82), (AppointmentStatus.NO_SHOW, 0.06), (AppointmentStatus.CANCELLED, 0.12))
_UPCOMING = ((AppointmentStatus.SCHEDULED, 0.6), (AppointmentStatus.CONFIRMED, 0.3), (AppointmentStatus.CANCELLED, 0.1))


def _status(rng: random.Random, *, past: bool) -> str:
    choices = _PAST if past else _UPCOMING
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]
