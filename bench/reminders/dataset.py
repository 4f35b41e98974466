"""The reminders bench clinic: 10,000 appointments three to fifty days ahead, each with one 48 h reminder due now.

Everything hangs off one clinic (slug `bench-reminders`, Evolution with an unreachable API URL: nothing is sent, no
worker runs), so it can share a database with the other benches and is reused while its counts match. The bench's
"now" is fixed (`AS_OF`, a Monday 10:00 in São Paulo, inside the default 08:00–20:00 sending window); each step is
due in the hour before it (spread a minute apart), as after a short outage or a busy morning.

* 10 professionals, one 30-minute service, the clinic's default 48 h rule asking to confirm (Cecília's standard
  text: the rendering is the real one).
* 10,000 patients with their own phone (no dependents, no opt-outs: every step ends in a message).
* 1,000 appointments per professional on the 30-minute grid, 08:00–18:00, 50 days from `AS_OF` + 3 days; one each
  per patient, so no overlap for a professional or a patient.

`reset` puts the state back before each measured sweep: the bench clinic's messages deleted, every step scheduled
again, and for a cold run its conversations deleted too (the sweep then creates all 10,000 in bulk).
"""

from __future__ import annotations

import datetime
import time
import zoneinfo
from dataclasses import dataclass

from django.db import connection, transaction

from cecilia.models import Clinic, WhatsAppProvider
from conversations.models import Conversation, Message
from patients.models import Patient
from scheduling.models import (
    ActorKind,
    Appointment,
    AppointmentSource,
    AppointmentStatus,
    Professional,
    ReminderRule,
    ReminderStep,
    Service,
    StepKind,
    StepStatus,
)

CLINIC_SLUG = "bench-reminders"
TIMEZONE = zoneinfo.ZoneInfo("America/Sao_Paulo")
PROFESSIONALS = 10
STEPS = 10_000
AS_OF = datetime.datetime(2026, 6, 1, 10, 0, tzinfo=TIMEZONE)  # a Monday, 10:00
BATCH = 5_000
_SLOTS = [datetime.time(h, m) for h in range(8, 18) for m in (0, 30)]  # 20 a day


@dataclass
class BenchData:
    clinic: Clinic
    built: bool
    seconds: float


def bench_data_get_or_build(*, rebuild: bool = False) -> BenchData:
    began = time.perf_counter()
    clinic = Clinic.objects.filter(slug=CLINIC_SLUG).first()
    if clinic is not None and not rebuild and _complete(clinic):
        return BenchData(clinic, built=False, seconds=time.perf_counter() - began)
    if clinic is not None:
        _drop(clinic)
    clinic = _build()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return BenchData(clinic, built=True, seconds=time.perf_counter() - began)


def _complete(clinic: Clinic) -> bool:
    return (
        ReminderStep.objects.filter(clinic=clinic).count() == STEPS
        and Appointment.objects.filter(clinic=clinic).count() == STEPS
    )


def _drop(clinic: Clinic) -> None:
    with transaction.atomic():
        Message.objects.filter(clinic=clinic).delete()
        Conversation.objects.filter(clinic=clinic).delete()
        ReminderStep.objects.filter(clinic=clinic).delete()
        Appointment.objects.filter(clinic=clinic).delete()
        ReminderRule.objects.filter(clinic=clinic).delete()
        Patient.objects.filter(clinic=clinic).delete()
        Service.objects.filter(clinic=clinic).delete()
        Professional.objects.filter(clinic=clinic).delete()
        clinic.delete()


@transaction.atomic
def _build() -> Clinic:
    clinic = Clinic.objects.create(
        name="Clínica Bench Lembretes",
        slug=CLINIC_SLUG,
        timezone=str(TIMEZONE),
        whatsapp_provider=WhatsAppProvider.EVOLUTION,
        whatsapp_instance=CLINIC_SLUG,
        whatsapp_api_url="http://127.0.0.1:9",  # never called: the bench runs no worker
        whatsapp_api_key="bench-token",
        address="Rua das Flores, 100",
        city="São Paulo",
    )
    rule = ReminderRule.objects.create(clinic=clinic, hours_before=48, asks_confirmation=True)
    pros = Professional.objects.bulk_create(
        Professional(clinic=clinic, name=f"Dra. Profissional {n + 1}") for n in range(PROFESSIONALS)
    )
    service = Service.objects.create(clinic=clinic, name="Consulta", duration_minutes=30)
    service.professionals.set(pros)
    patients = Patient.objects.bulk_create(
        (
            Patient(clinic=clinic, full_name=f"Paciente Bench {n + 1}", phone=f"+55119{60000000 + n:08d}")
            for n in range(STEPS)
        ),
        batch_size=BATCH,
    )
    appointments = []
    first_day = AS_OF.date() + datetime.timedelta(days=3)
    for n, patient in enumerate(patients):
        pro, cell = pros[n % PROFESSIONALS], n // PROFESSIONALS
        day = first_day + datetime.timedelta(days=cell // len(_SLOTS))
        start = datetime.datetime.combine(day, _SLOTS[cell % len(_SLOTS)], tzinfo=TIMEZONE)
        appointments.append(
            Appointment(
                clinic=clinic,
                patient=patient,
                professional=pro,
                service=service,
                start=start,
                end=start + datetime.timedelta(minutes=30),
                status=AppointmentStatus.SCHEDULED,
                source=AppointmentSource.ADMIN,
                created_by_kind=ActorKind.SYSTEM,
                updated_by_kind=ActorKind.SYSTEM,
            )
        )
    Appointment.objects.bulk_create(appointments, batch_size=BATCH)
    ReminderStep.objects.bulk_create(
        (
            ReminderStep(
                clinic=clinic,
                appointment=appointment,
                kind=StepKind.REMINDER,
                key="48h",
                appointment_start=appointment.start,
                rule=rule,
                asks_confirmation=True,
                due_at=AS_OF - datetime.timedelta(minutes=n % 60),
                created_at=AS_OF - datetime.timedelta(days=1),
            )
            for n, appointment in enumerate(appointments)
        ),
        batch_size=BATCH,
    )
    return clinic


def reset(clinic: Clinic, *, cold: bool) -> None:
    """Back to "every step due, nothing sent" (and no conversations when `cold`)."""
    with transaction.atomic(), connection.cursor() as cursor:
        # Plain DELETEs: the ORM's cascade collector would read every row first, for nothing here (no turns, no
        # quotes, no receipts in the bench clinic).
        cursor.execute("DELETE FROM conversations_message WHERE clinic_id = %s", [clinic.pk])
        if cold:
            cursor.execute("DELETE FROM conversations_conversation WHERE clinic_id = %s", [clinic.pk])
        else:
            Conversation.objects.filter(clinic=clinic).update(state={})
        ReminderStep.objects.filter(clinic=clinic).update(
            status=StepStatus.SCHEDULED, skip_reason="", queued_at=None, sent_at=None
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE conversations_message")
        cursor.execute("VACUUM ANALYZE scheduling_reminderstep")
        cursor.execute("VACUUM ANALYZE conversations_conversation")
