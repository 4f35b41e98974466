"""What an engine may know in a turn: the clinic, the patient, the recent messages — and nothing more.

Both engines (rule-based and LLM) read this, never the models directly, so what reaches a model is decided here:
no CPF, no staff notes, no other patient, no phone numbers. A fixed number of queries whatever the clinic's size.
Times are aware and in the clinic's zone.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db.models import Prefetch
from django.utils import timezone

from cecilia.models import BusinessHours, Clinic
from conversations.models import Conversation, Message, MessageAuthor
from conversations.nlu.when import WEEKDAY_NAMES
from patients.models import HealthPlan, Patient, PatientGuardian
from scheduling.models import Appointment, AppointmentStatus, Professional, Service

logger = logging.getLogger(__name__)

# How far back no-shows count when the receptionist decides to ask for an explicit confirmation.
NO_SHOW_LOOKBACK = datetime.timedelta(days=365)
RECENT_MESSAGES = 12


@dataclass(frozen=True)
class ProfessionalInfo:
    id: int
    name: str
    specialty: str


@dataclass(frozen=True)
class ServiceInfo:
    id: int
    name: str
    duration_minutes: int
    price: Decimal | None  # None: staff give the price
    accepts_private: bool
    health_plans: tuple[str, ...]  # names of the plans that cover it
    professional_ids: tuple[int, ...]  # active professionals who perform it
    preparation: str


@dataclass(frozen=True)
class ClinicInfo:
    id: int
    name: str
    assistant_name: str
    address: str
    city: str
    state: str
    phone: str
    website: str
    timezone: str
    hours: tuple[str, ...]  # pt-BR lines, e.g. "segunda-feira: 08:00–12:00, 13:00–19:00"
    health_plans: tuple[str, ...]
    services: tuple[ServiceInfo, ...]
    professionals: tuple[ProfessionalInfo, ...]
    instructions: str  # the clinic's own instructions for the assistant

    def service(self, service_id: int) -> ServiceInfo | None:
        return next((s for s in self.services if s.id == service_id), None)

    def professional(self, professional_id: int) -> ProfessionalInfo | None:
        return next((p for p in self.professionals if p.id == professional_id), None)


@dataclass(frozen=True)
class AppointmentInfo:
    id: int
    patient_id: int
    patient_first_name: str
    start: datetime.datetime  # clinic-local
    end: datetime.datetime
    professional_id: int
    professional: str
    service_id: int
    service: str
    status: str  # AppointmentStatus value


@dataclass(frozen=True)
class PersonInfo:
    id: int
    first_name: str  # "" when the patient has not told us their name yet
    full_name: str


@dataclass(frozen=True)
class PatientInfo:
    id: int
    first_name: str  # from the registered name, else WhatsApp's display name, else ""
    full_name: str  # "" until the patient (or staff) told us: a new patient is asked once
    known: bool  # registered with a name by the clinic or in an earlier conversation
    health_plan: str  # "" for private patients
    dependents: tuple[PersonInfo, ...]  # people this patient may book for
    upcoming: tuple[AppointmentInfo, ...]  # active appointments from now on, theirs and their dependents'
    recent_no_shows: int  # in the last year
    opted_out_automated: bool

    def may_act_for(self, patient_id: int) -> bool:
        """Tools act only for the patient writing and their dependents (Invariant 4)."""
        return patient_id == self.id or any(person.id == patient_id for person in self.dependents)


@dataclass(frozen=True)
class RecentMessage:
    author: str  # "patient" | "assistant" | "staff" | "system"
    text: str
    at: datetime.datetime  # clinic-local


@dataclass(frozen=True)
class TurnContext:
    clinic: ClinicInfo
    patient: PatientInfo
    recent: tuple[RecentMessage, ...]  # the conversation before this turn's messages, oldest first
    new_messages: tuple[str, ...]  # this turn's patient messages, oldest first
    state: dict[str, Any] = field(default_factory=dict)  # the engine's working memory (Conversation.state)
    now: datetime.datetime = field(default_factory=timezone.now)  # clinic-local


def turn_context(*, conversation: Conversation, new_messages: list[Message], now: datetime.datetime) -> TurnContext:
    clinic = conversation.clinic
    tz = clinic.tz
    local_now = now.astimezone(tz)
    patient = conversation.patient
    patient.clinic = clinic  # the same row, already loaded: patient_info reads its time zone
    new_ids = [message.pk for message in new_messages]
    return TurnContext(
        clinic=clinic_info(clinic),
        patient=patient_info(patient, now=now),
        recent=_recent(conversation, exclude_ids=new_ids, tz=tz),
        new_messages=tuple(_message_text(message) for message in new_messages),
        state=dict(conversation.state or {}),
        now=local_now,
    )


# The clinic's facts change rarely and are read on every turn: kept in the cache (Redis), dropped whenever one of
# the rows they come from is saved or deleted (clinic_info_forget, connected in conversations.apps), and for at most
# this long after a bulk update that sends no signal.
CLINIC_INFO_TTL_SECONDS = 60


def _clinic_info_key(clinic_id: int, created_at: datetime.datetime) -> str:
    # The creation time too: a recreated database (tests, a restore) reuses ids, never (id, created_at).
    return f"engines:clinic-info:v1:{clinic_id}:{created_at.timestamp():.6f}"


def clinic_info(clinic: Clinic) -> ClinicInfo:
    """The clinic's facts for the engines, from the cache when fresh. A cache outage only costs the queries."""
    key = _clinic_info_key(clinic.pk, clinic.created_at)
    try:
        cached = cache.get(key)
    except Exception:
        cached = None
    if isinstance(cached, ClinicInfo):
        return cached
    info = _clinic_info_build(clinic)
    try:
        cache.set(key, info, CLINIC_INFO_TTL_SECONDS)
    except Exception:
        logger.warning("Cache unavailable; clinic facts not kept")
    return info


def clinic_info_forget(clinic_id: int) -> None:
    created_at = Clinic.objects.filter(pk=clinic_id).values_list("created_at", flat=True).first()
    if created_at is None:
        return
    try:
        cache.delete(_clinic_info_key(clinic_id, created_at))
    except Exception:
        logger.warning("Cache unavailable; clinic %s facts expire on their own", clinic_id)


def clinic_info_forget_on_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Receiver for the rows clinic facts come from (clinic, services and their links, professionals, hours, plans)."""
    if isinstance(instance, Clinic):
        if instance.created_at is not None:
            try:
                cache.delete(_clinic_info_key(instance.pk, instance.created_at))
            except Exception:
                logger.warning("Cache unavailable; clinic %s facts expire on their own", instance.pk)
        return
    clinic_id = getattr(instance, "clinic_id", None)
    if clinic_id is not None:
        clinic_info_forget(clinic_id)


def _clinic_info_build(clinic: Clinic) -> ClinicInfo:
    professionals = list(Professional.objects.filter(clinic=clinic, active=True).order_by("name"))
    active_ids = {professional.pk for professional in professionals}
    services = (
        Service.objects.filter(clinic=clinic, active=True)
        .order_by("name")
        .prefetch_related(
            Prefetch("accepted_health_plans", queryset=HealthPlan.objects.filter(active=True).order_by("name")),
            Prefetch("professionals", queryset=Professional.objects.filter(active=True).only("pk")),
        )
    )
    hours = BusinessHours.objects.filter(clinic=clinic).order_by("weekday", "start")
    plans = HealthPlan.objects.filter(clinic=clinic, active=True).order_by("name").values_list("name", flat=True)
    return ClinicInfo(
        id=clinic.pk,
        name=clinic.name,
        assistant_name=clinic.assistant_name,
        address=clinic.address,
        city=clinic.city,
        state=clinic.state,
        phone=clinic.phone,
        website=clinic.website,
        timezone=str(clinic.timezone),
        hours=_hours_lines(list(hours)),
        health_plans=tuple(plans),
        services=tuple(
            ServiceInfo(
                id=service.pk,
                name=service.name,
                duration_minutes=service.duration_minutes,
                price=service.price,
                accepts_private=service.accepts_private,
                health_plans=tuple(plan.name for plan in service.accepted_health_plans.all()),
                professional_ids=tuple(p.pk for p in service.professionals.all() if p.pk in active_ids),
                preparation=service.preparation_instructions,
            )
            for service in services
        ),
        professionals=tuple(ProfessionalInfo(p.pk, p.name, p.specialty) for p in professionals),
        instructions=clinic.ai_instructions,
    )


def patient_info(patient: Patient, *, now: datetime.datetime) -> PatientInfo:
    tz = patient.clinic.tz
    dependents = [
        link.dependent
        for link in PatientGuardian.objects.filter(guardian=patient).select_related("dependent").order_by("pk")
    ]
    people = [patient, *dependents]
    appointments = (
        Appointment.objects.filter(patient__in=people, end__gt=now)
        .exclude(status__in=[AppointmentStatus.CANCELLED, AppointmentStatus.NO_SHOW, AppointmentStatus.COMPLETED])
        .select_related("professional", "service", "patient")
        .order_by("start")[:20]
    )
    no_shows = Appointment.objects.filter(
        patient=patient, status=AppointmentStatus.NO_SHOW, start__gte=now - NO_SHOW_LOOKBACK
    ).count()
    plan = patient.health_plan.name if patient.health_plan_id else ""
    return PatientInfo(
        id=patient.pk,
        first_name=_first_name(patient),
        full_name=patient.full_name,
        known=bool(patient.full_name),
        health_plan=plan,
        dependents=tuple(PersonInfo(d.pk, _first_name(d), d.full_name) for d in dependents),
        upcoming=tuple(
            AppointmentInfo(
                id=a.pk,
                patient_id=a.patient_id,
                patient_first_name=_first_name(a.patient),
                start=a.start.astimezone(tz),
                end=a.end.astimezone(tz),
                professional_id=a.professional_id,
                professional=a.professional.name,
                service_id=a.service_id,
                service=a.service.name,
                status=a.status,
            )
            for a in appointments
        ),
        recent_no_shows=no_shows,
        opted_out_automated=patient.opt_out_automated,
    )


_AUTHORS = {
    MessageAuthor.PATIENT: "patient",
    MessageAuthor.AI: "assistant",
    MessageAuthor.STAFF: "staff",
    MessageAuthor.SYSTEM: "system",
}


def _recent(conversation: Conversation, *, exclude_ids: list[int], tz: Any) -> tuple[RecentMessage, ...]:
    rows = list(
        Message.objects.filter(conversation=conversation)
        .exclude(pk__in=exclude_ids)
        .order_by("-created_at", "-id")[:RECENT_MESSAGES]
    )
    rows.reverse()
    return tuple(
        RecentMessage(_AUTHORS.get(m.author, "system"), _message_text(m), (m.sent_at or m.created_at).astimezone(tz))
        for m in rows
    )


def _message_text(message: Message) -> str:
    """What an engine reads of a message: its text, or what kind of thing it is (a photo, a voice note…)."""
    if message.text:
        return message.text
    return f"[{message.get_kind_display()}]"


def _hours_lines(hours: list[BusinessHours]) -> tuple[str, ...]:
    by_day: dict[int, list[str]] = {}
    for row in hours:
        by_day.setdefault(row.weekday, []).append(f"{row.start:%H:%M}–{row.end:%H:%M}")
    return tuple(f"{WEEKDAY_NAMES[day]}: {', '.join(spans)}" for day, spans in sorted(by_day.items()))


def _first_name(patient: Patient) -> str:
    """Patient.first_name as a greeting reads it ("maria" → "Maria")."""
    return patient.first_name.capitalize()
