"""The availability bench clinic: 30 professionals with realistic hours and 20,000 appointments, from a fixed seed.

Everything hangs off one clinic (slug `bench-availability`), so the data can share a database with other benches and
be thrown away on its own; it is reused while its counts match. The bench's "now" is fixed (`AS_OF`, a Monday
morning), so the data means the same whatever day the bench runs.

* Five weekly patterns of split shifts (08–12 + 13–18, 07–11 + 14–19, three days plus Saturday morning, …), one per
  professional in turn; clinic business hours Mon–Fri 07–20 and Saturday 08–13.
* Services: a 30-minute consultation (everyone), a 20-minute return visit (everyone), a 60-minute procedure with
  10-minute buffers before and after (the first ten professionals).
* 20,000 appointments on the 30-minute grid of each professional's hours: 14,000 in the 60 days from `AS_OF`
  (a busy agenda, about 60 % full; 10 % of them cancelled) and 6,000 in the 30 days before. A procedure takes two
  grid cells. The patients of one grid cell are drawn without replacement, so no one is booked twice at once.
* A week of vacation for every seventh professional, a one-off closed date and a yearly one inside the window, and
  São Paulo's holidays (9 July) from the `holidays` library.
"""

from __future__ import annotations

import datetime
import random
import time
import uuid
import zoneinfo
from dataclasses import dataclass

from django.db import connection, transaction

from cecilia.models import BusinessHours, Clinic, ClosedDate
from patients.models import Patient
from scheduling.models import (
    ActorKind,
    Appointment,
    AppointmentSource,
    AppointmentStatus,
    Professional,
    Service,
    SlotHold,
    TimeOff,
    WorkingHours,
)

CLINIC_SLUG = "bench-availability"
TIMEZONE = "America/Sao_Paulo"
PROFESSIONALS = 30
PATIENTS = 3_000
UPCOMING = 14_000
PAST = 6_000
APPOINTMENTS = UPCOMING + PAST
SEED = 20260601
BATCH = 5_000
AS_OF = datetime.datetime(2026, 6, 1, 8, 0, tzinfo=zoneinfo.ZoneInfo(TIMEZONE))  # a Monday, 08:00
WINDOW_DAYS = 60
PAST_DAYS = 30
CELL = datetime.timedelta(minutes=30)

_T = datetime.time
PATTERNS: tuple[dict[int, tuple[tuple[_T, _T], ...]], ...] = (
    {d: ((_T(8), _T(12)), (_T(13), _T(18))) for d in range(5)},
    {d: ((_T(7), _T(11)), (_T(14), _T(19))) for d in range(5)},
    {0: ((_T(8), _T(12)), (_T(13), _T(17))), 2: ((_T(8), _T(12)), (_T(13), _T(17))),
     4: ((_T(8), _T(12)), (_T(13), _T(17))), 5: ((_T(8), _T(12)),)},
    {1: ((_T(9), _T(13)), (_T(14), _T(20))), 3: ((_T(9), _T(13)), (_T(14), _T(20))), 5: ((_T(8), _T(13)),)},
    {d: ((_T(10), _T(14)), (_T(15), _T(19))) for d in range(4)},
)  # fmt: skip
BUSINESS = {d: ((_T(7), _T(20)),) for d in range(5)} | {5: ((_T(8), _T(13)),)}

FIRST = ("Ana", "Bruno", "Carla", "Diego", "Elisa", "Fábio", "Gabriela", "Henrique", "Isabela", "João")
LAST = ("Souza", "Lima", "Mendes")


@dataclass(frozen=True)
class BenchData:
    clinic: Clinic
    consultation: Service
    procedure: Service
    professionals: list[Professional]
    built: bool
    seconds: float


def bench_data_get_or_build(*, rebuild: bool = False) -> BenchData:
    began = time.perf_counter()
    clinic = Clinic.objects.filter(slug=CLINIC_SLUG).first()
    if clinic is None or rebuild or _counts(clinic) != (PROFESSIONALS, APPOINTMENTS):
        if clinic is not None:
            _clinic_delete(clinic)
        clinic = _build()
        built = True
    else:
        built = False
    services = {s.name: s for s in Service.objects.filter(clinic=clinic)}
    return BenchData(
        clinic,
        services["Consulta"],
        services["Procedimento"],
        list(Professional.objects.filter(clinic=clinic).order_by("name")),
        built,
        time.perf_counter() - began,
    )


def _counts(clinic: Clinic) -> tuple[int, int]:
    return Professional.objects.filter(clinic=clinic).count(), Appointment.objects.filter(clinic=clinic).count()


@transaction.atomic
def _clinic_delete(clinic: Clinic) -> None:
    Appointment.objects.filter(clinic=clinic).delete()
    SlotHold.objects.filter(clinic=clinic).delete()
    Patient.objects.filter(clinic=clinic).delete()
    Service.objects.filter(clinic=clinic).delete()
    TimeOff.objects.filter(clinic=clinic).delete()
    WorkingHours.objects.filter(clinic=clinic).delete()
    Professional.objects.filter(clinic=clinic).delete()
    clinic.delete()


@transaction.atomic
def _build() -> Clinic:
    rng = random.Random(SEED)
    clinic = Clinic.objects.create(
        name="Clínica Bench (agenda)",
        slug=CLINIC_SLUG,
        timezone=TIMEZONE,
        city="São Paulo",
        state="SP",
        booking_min_notice_minutes=120,
        booking_horizon_days=WINDOW_DAYS,
    )
    BusinessHours.objects.bulk_create(
        BusinessHours(clinic=clinic, weekday=d, start=s, end=e) for d, spans in BUSINESS.items() for s, e in spans
    )
    ClosedDate.objects.create(clinic=clinic, date=AS_OF.date() + datetime.timedelta(days=24), reason="Dedetização")
    ClosedDate.objects.create(clinic=clinic, date=datetime.date(2001, 7, 20), every_year=True, reason="Aniversário")
    professionals = Professional.objects.bulk_create(
        Professional(clinic=clinic, name=f"Dr(a). {FIRST[i % 10]} {LAST[i // 10]}") for i in range(PROFESSIONALS)
    )
    pattern_of = {p.pk: PATTERNS[i % len(PATTERNS)] for i, p in enumerate(professionals)}
    WorkingHours.objects.bulk_create(
        WorkingHours(clinic=clinic, professional=p, weekday=d, start=s, end=e)
        for p in professionals
        for d, spans in pattern_of[p.pk].items()
        for s, e in spans
    )
    consultation, visit, procedure = Service.objects.bulk_create(
        [
            Service(clinic=clinic, name="Consulta", duration_minutes=30),
            Service(clinic=clinic, name="Retorno", duration_minutes=20),
            Service(
                clinic=clinic, name="Procedimento", duration_minutes=60, buffer_before_minutes=10,
                buffer_after_minutes=10,
            ),
        ]
    )  # fmt: skip
    through = Service.professionals.through
    through.objects.bulk_create(
        [through(service_id=s.pk, professional_id=p.pk) for s in (consultation, visit) for p in professionals]
        + [through(service_id=procedure.pk, professional_id=p.pk) for p in professionals[:10]]
    )
    vacation = [
        TimeOff(
            clinic=clinic,
            professional=p,
            start=AS_OF + datetime.timedelta(days=7 * (i % 8)),
            end=AS_OF + datetime.timedelta(days=7 * (i % 8) + 7),
            reason="Férias",
        )
        for i, p in enumerate(professionals)
        if i % 7 == 0
    ]
    TimeOff.objects.bulk_create(vacation)
    patients = Patient.objects.bulk_create(
        (
            Patient(clinic=clinic, full_name=f"Paciente {n}", phone=f"+55119{30_000_000 + n:08d}")
            for n in range(PATIENTS)
        ),
        batch_size=BATCH,
    )
    patient_ids = [p.pk for p in patients]
    services_of = {
        p.pk: [consultation, visit, procedure] if i < 10 else [consultation, visit] for i, p in enumerate(professionals)
    }
    rows = _appointments(clinic, professionals, pattern_of, services_of, patient_ids, rng)
    Appointment.objects.bulk_create(rows, batch_size=BATCH)
    for model in (Appointment, Professional, WorkingHours, TimeOff, SlotHold, Patient):
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    return clinic


def _cells(pattern: dict, first: datetime.date, days: int) -> list[datetime.datetime]:
    """Every 30-minute grid cell of a weekly pattern over `days` days from `first`."""
    tz = AS_OF.tzinfo
    cells = []
    for offset in range(days):
        day = first + datetime.timedelta(days=offset)
        for start, end in pattern.get(day.weekday(), ()):
            moment = datetime.datetime.combine(day, start, tzinfo=tz)
            last = datetime.datetime.combine(day, end, tzinfo=tz)
            while moment + CELL <= last:
                cells.append(moment)
                moment += CELL
    return cells


def _appointments(
    clinic: Clinic,
    professionals: list[Professional],
    pattern_of: dict[int, dict],
    services_of: dict[int, list[Service]],
    patient_ids: list[int],
    rng: random.Random,
) -> list[Appointment]:
    """UPCOMING appointments over the window and PAST over the days before, on each professional's grid."""
    by_pk = {p.pk: p for p in professionals}
    rows: list[Appointment] = []
    for first, days, count in (
        (AS_OF.date(), WINDOW_DAYS, UPCOMING),
        (AS_OF.date() - datetime.timedelta(days=PAST_DAYS), PAST_DAYS, PAST),
    ):
        cells = [(c, p.pk) for p in professionals for c in _cells(pattern_of[p.pk], first, days)]
        valid = set(cells)
        order = rng.sample(cells, len(cells))  # the first `count` cells that fit are booked
        taken: set[tuple[datetime.datetime, int]] = set()
        booked = 0
        for cell, pk in order:
            if booked == count:
                break
            if (cell, pk) in taken:
                continue
            service = rng.choice(services_of[pk])
            following = (cell + CELL, pk)
            if service.duration_minutes > 30 and (following not in valid or following in taken):
                service = services_of[pk][0]  # a procedure needs the next cell too; a consultation fits instead
            taken.add((cell, pk))
            if service.duration_minutes > 30:
                taken.add(following)
            status = _status(rng, past=cell < AS_OF)
            rows.append(
                Appointment(
                    clinic=clinic,
                    professional=by_pk[pk],
                    service=service,
                    start=cell,
                    end=cell + datetime.timedelta(minutes=service.duration_minutes),
                    status=status,
                    cancellation_reason="Paciente desmarcou" if status == AppointmentStatus.CANCELLED else "",
                    source=AppointmentSource.WHATSAPP,
                    created_by_kind=ActorKind.PATIENT,
                    updated_by_kind=ActorKind.SYSTEM,
                )
            )
            booked += 1
    _patients_assign(rows, patient_ids, rng)
    return rows


def _patients_assign(rows: list[Appointment], patient_ids: list[int], rng: random.Random) -> None:
    """Give each appointment a patient who has nothing else in any 30-minute cell it covers."""
    busy: dict[datetime.datetime, set[int]] = {}
    for row in rows:
        covered = [row.start + CELL * k for k in range(-(-(row.end - row.start) // CELL))]
        while True:
            candidate = rng.choice(patient_ids)
            if all(candidate not in busy.get(c, ()) for c in covered):
                break
        row.patient_id = candidate
        for c in covered:
            busy.setdefault(c, set()).add(candidate)


_PAST = ((AppointmentStatus.COMPLETED, 0.82), (AppointmentStatus.NO_SHOW, 0.06), (AppointmentStatus.CANCELLED, 0.12))
_UPCOMING = ((AppointmentStatus.SCHEDULED, 0.6), (AppointmentStatus.CONFIRMED, 0.3), (AppointmentStatus.CANCELLED, 0.1))


def _status(rng: random.Random, *, past: bool) -> str:
    choices = _PAST if past else _UPCOMING
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def holds_refresh(data: BenchData, *, count: int = 20) -> None:
    """A few live holds of other patients (conversations choosing right now), renewed before each run."""
    SlotHold.objects.filter(clinic=data.clinic).delete()
    rng = random.Random(SEED + 1)
    rows = []
    for n in range(count):
        professional = data.professionals[n % len(data.professionals)]
        start = AS_OF + datetime.timedelta(days=rng.randrange(1, 10), hours=rng.randrange(0, 8))
        rows.append(
            SlotHold(
                clinic=data.clinic,
                professional=professional,
                service=data.consultation,
                holder=f"bench:{n}",
                token=uuid.uuid4(),
                start=start,
                end=start + CELL,
                expires_at=AS_OF + datetime.timedelta(minutes=5),
            )
        )
    SlotHold.objects.bulk_create(rows)
