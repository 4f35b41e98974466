"""The demo clinic: enough realistic data to see Cecilia work (`python manage.py seed_demo`).

Idempotent: rows are found by natural keys (slug, name, phone, username) and only missing ones are created, so running
it again changes nothing. Appointments are created only when the clinic has none in the coming days.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from cecilia.models import BusinessHours, Clinic, ClosedDate, StaffRole, WhatsAppProvider
from cecilia.services import staff_membership_set
from conversations.models import (
    AttentionReason,
    Conversation,
    ConversationOwner,
    FaqEntry,
    Message,
    MessageAuthor,
    MessageDirection,
    MessageStatus,
    Turn,
    TurnOutcome,
)
from patients.models import GuardianRelationship, HealthPlan, Patient, PatientGuardian
from scheduling.models import (
    ActorKind,
    Appointment,
    AppointmentSource,
    AppointmentStatus,
    Professional,
    ReminderRule,
    ReminderTemplate,
    Service,
    WorkingHours,
)
from scheduling.reminder_defaults import reminder_defaults_create
from scheduling.reminders import clinic_steps_replan

DEMO_SLUG = "demo"
SURGERY_SERVICE = "Extração de siso"
DEMO_PASSWORD = "cecilia-demo"  # noqa: S105 - only used with DEBUG on; see seed_demo
DEMO_USERS = (
    ("admin", None, True),
    ("recepcao", StaffRole.RECEPTIONIST, False),
    ("gestao", StaffRole.MANAGER, False),
)

_T = datetime.time
_MORNING_AFTERNOON = ((_T(8), _T(12)), (_T(13), _T(18)))

_PROFESSIONALS = (
    # name, specialty, registration, weekdays, intervals
    ("Dra. Ana Souza", "Clínica geral", "CRM-SP 123456", (0, 1, 2, 3, 4), _MORNING_AFTERNOON),
    ("Dr. Bruno Lima", "Odontologia", "CRO-SP 54321", (0, 2, 4), ((_T(8), _T(12)), (_T(14), _T(19)))),
    ("Dra. Carla Mendes", "Dermatologia", "CRM-SP 234567", (1, 3), ((_T(9), _T(13)), (_T(14), _T(17)))),
    ("Dr. Diego Rocha", "Ortodontia", "CRO-SP 65432", (1, 3, 5), ((_T(8), _T(12)),)),
)

_SERVICES = (
    # name, minutes, price, professionals, preparation
    ("Consulta de clínica geral", 30, "250.00", ("Dra. Ana Souza",), ""),
    ("Retorno de consulta", 20, None, ("Dra. Ana Souza", "Dra. Carla Mendes"), ""),
    ("Limpeza dental", 45, "200.00", ("Dr. Bruno Lima",), "Escove os dentes normalmente antes de vir."),
    ("Avaliação odontológica", 30, "120.00", ("Dr. Bruno Lima", "Dr. Diego Rocha"), ""),
    (
        "Consulta dermatológica",
        40,
        "320.00",
        ("Dra. Carla Mendes",),
        "Venha sem maquiagem ou cremes na área a avaliar.",
    ),
    ("Manutenção de aparelho", 30, "150.00", ("Dr. Diego Rocha",), ""),
    (
        SURGERY_SERVICE,
        60,
        "650.00",
        ("Dr. Bruno Lima",),
        "Faça uma refeição leve até 2 horas antes e venha com um acompanhante. "
        "Se toma anticoagulante, avise a clínica antes.",
    ),
)
# A surgery-like service: reminded 7 days, 48 h and 2 h before, each with its preparation.
SURGERY_REMINDER_HOURS = (168, 48, 2)
_SURGERY_TEMPLATE = (
    "Olá, {nome}! Sua *{servico}* com *{profissional}* está marcada para *{data} às {hora}*.\n"
    "👤 Paciente: {paciente}\n"
    "📝 Preparo: {preparo}\n"
    "📍 {endereco}"
)

_HEALTH_PLANS = ("Unimed", "Bradesco Saúde", "SulAmérica", "Amil")

_PRIVACY_NOTICE = (
    "Seus dados (nome, telefone e informações das consultas) são usados só para o seu atendimento na clínica, "
    "conforme a LGPD. Você pode pedir acesso, correção ou exclusão a qualquer momento."
)

_FAQ = (
    # question, keywords, answer
    (
        "Tem estacionamento?",
        "estacionar carro vaga garagem valet",
        "Temos *estacionamento conveniado* no próprio prédio (entrada pela Alameda Santos). "
        "Pacientes pagam R$ 10 pelo período da consulta — é só carimbar o tíquete na recepção. 🚗",
    ),
    (
        "Quais formas de pagamento vocês aceitam?",
        "pagar cartao credito debito pix dinheiro parcelar parcela",
        "Aceitamos *Pix*, *cartão de débito* e *cartão de crédito* (em até 3x sem juros a partir de R$ 300) "
        "e dinheiro. Não aceitamos cheque.",
    ),
    (
        "Vocês atendem convênio?",
        "plano de saude convenio carteirinha reembolso particular",
        "Atendemos *Unimed* e *Bradesco Saúde* para consultas e limpeza. Para outros planos, atendemos "
        "particular e emitimos nota fiscal e recibo para você pedir *reembolso* ao seu plano.",
    ),
    (
        "O que preciso levar na primeira consulta?",
        "documentos documento rg cpf carteirinha primeira vez levar trazer exames",
        "Na primeira consulta, traga:\n1. Um documento com foto (RG ou CNH)\n2. A *carteirinha do convênio*, "
        "se for usar\n3. Exames e receitas recentes, se tiver\nChegue uns *10 minutos antes* para o cadastro. 😊",
    ),
    (
        "Como funciona o cancelamento?",
        "cancelar desmarcar remarcar falta atraso",
        "Você pode cancelar ou remarcar por aqui mesmo, até *24 horas antes* da consulta, sem custo. "
        "Se precisar cancelar mais em cima da hora, avise assim mesmo: a recepção vai te ajudar. "
        "Atrasos de mais de 15 minutos podem precisar de remarcação.",
    ),
    (
        "Vocês atendem crianças?",
        "criança filho filha infantil bebê pediatria idade",
        "Atendemos crianças a partir de *3 anos* na odontologia e na clínica geral. Menores de 18 anos "
        "precisam vir acompanhados de um responsável.",
    ),
    (
        "Tem acessibilidade para cadeirantes?",
        "cadeira de rodas elevador rampa mobilidade reduzida acessivel",
        "Sim! O prédio tem *rampa e elevador*, e o consultório é acessível para cadeira de rodas. ♿",
    ),
)

_PATIENT_NAMES = (
    "Maria Aparecida Silva",
    "José Carlos Santos",
    "Ana Paula Oliveira",
    "João Pedro Souza",
    "Francisca Lima",
    "Antônio Pereira",
    "Juliana Costa",
    "Carlos Eduardo Rodrigues",
    "Fernanda Almeida",
    "Lucas Nascimento",
    "Patrícia Gomes",
    "Rafael Martins",
    "Camila Araújo",
    "Marcos Ribeiro",
    "Aline Carvalho",
    "Bruno Ferreira",
    "Letícia Barbosa",
    "Gabriel Rocha",
    "Beatriz Dias",
    "Thiago Moreira",
)


@dataclass(frozen=True)
class DemoResult:
    clinic: Clinic
    created_patients: int
    created_appointments: int
    password: str


@transaction.atomic
def demo_clinic_seed(*, password: str = DEMO_PASSWORD, today: datetime.date | None = None) -> DemoResult:
    clinic = _clinic()
    _users(clinic, password)
    plans = _health_plans(clinic)
    professionals = _professionals(clinic)
    services = _services(clinic, professionals, plans)
    patients, created_patients = _patients(clinic, plans)
    today = today or timezone.localdate(timezone=clinic.tz)
    created_appointments = _appointments(clinic, patients, services, today)
    _reminders(clinic, services)
    _conversations(clinic, patients)
    _faq(clinic)
    return DemoResult(clinic, created_patients, created_appointments, password)


def _clinic() -> Clinic:
    clinic, created = Clinic.objects.get_or_create(
        slug=DEMO_SLUG,
        defaults={
            "name": "Clínica Sorriso & Saúde",
            "timezone": "America/Sao_Paulo",
            "address": "Av. Paulista, 1000, conj. 52 — Bela Vista, São Paulo/SP, 01310-100",
            "city": "São Paulo",
            "state": "SP",
            "phone": "+55 11 3000-1000",
            "email": "contato@sorrisoesaude.example",
            "website": "https://sorrisoesaude.example",
            "whatsapp_provider": WhatsAppProvider.CONSOLE,
            "whatsapp_instance": "demo",
            "privacy_notice": _PRIVACY_NOTICE,
            "privacy_notice_url": "https://sorrisoesaude.example/privacidade",
        },
    )
    if created:
        for weekday in range(5):
            BusinessHours.objects.create(clinic=clinic, weekday=weekday, start=_T(8), end=_T(12))
            BusinessHours.objects.create(clinic=clinic, weekday=weekday, start=_T(13), end=_T(19))
        BusinessHours.objects.create(clinic=clinic, weekday=5, start=_T(8), end=_T(12))
        year = timezone.localdate().year
        ClosedDate.objects.create(clinic=clinic, date=datetime.date(year, 12, 24), reason="Véspera de Natal")
        ClosedDate.objects.create(clinic=clinic, date=datetime.date(year, 12, 31), reason="Véspera de Ano-Novo")
    return clinic


def _users(clinic: Clinic, password: str) -> None:
    User = get_user_model()
    for username, role, is_superuser in DEMO_USERS:
        user, created = User.objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": is_superuser}
        )
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
        if role is not None:
            staff_membership_set(user_id=user.pk, clinic=clinic, role=role)


def _health_plans(clinic: Clinic) -> list[HealthPlan]:
    return [HealthPlan.objects.get_or_create(clinic=clinic, name=name)[0] for name in _HEALTH_PLANS]


def _professionals(clinic: Clinic) -> dict[str, Professional]:
    result = {}
    for name, specialty, registration, weekdays, intervals in _PROFESSIONALS:
        professional, created = Professional.objects.get_or_create(
            clinic=clinic, name=name, defaults={"specialty": specialty, "council_registration": registration}
        )
        if created:
            WorkingHours.objects.bulk_create(
                WorkingHours(clinic=clinic, professional=professional, weekday=day, start=start, end=end)
                for day in weekdays
                for start, end in intervals
            )
        result[name] = professional
    return result


def _services(clinic: Clinic, professionals: dict[str, Professional], plans: list[HealthPlan]) -> list[Service]:
    result = []
    for name, minutes, price, who, preparation in _SERVICES:
        service, created = Service.objects.get_or_create(
            clinic=clinic,
            name=name,
            defaults={
                "duration_minutes": minutes,
                "price": Decimal(price) if price else None,
                "preparation_instructions": preparation,
            },
        )
        if created:
            service.professionals.set([professionals[n] for n in who])
            service.accepted_health_plans.set(plans[:2])
        result.append(service)
    return result


def _patients(clinic: Clinic, plans: list[HealthPlan]) -> tuple[list[Patient], int]:
    patients, created_count = [], 0
    for i, name in enumerate(_PATIENT_NAMES):
        plan = plans[i % len(plans)] if i % 3 == 0 else None
        patient, created = Patient.objects.get_or_create(
            clinic=clinic,
            phone=f"+55119{8100_0000 + i * 7919:08d}",
            defaults={
                "full_name": name,
                "whatsapp_name": name.split()[0],
                "health_plan": plan,
                "health_plan_card_number": f"{plan.name[:3].upper()}{100000 + i}" if plan else "",
            },
        )
        created_count += created
        patients.append(patient)
    child, created = Patient.objects.get_or_create(
        clinic=clinic, full_name="Pedro Silva", phone=None, defaults={"birth_date": datetime.date(2018, 5, 10)}
    )
    created_count += created
    PatientGuardian.objects.get_or_create(
        clinic=clinic, guardian=patients[0], dependent=child, defaults={"relationship": GuardianRelationship.CHILD}
    )
    return patients, created_count


def _appointments(clinic: Clinic, patients: list[Patient], services: list[Service], today: datetime.date) -> int:
    horizon = today + datetime.timedelta(days=10)
    if Appointment.objects.filter(clinic=clinic, start__date__gte=today, start__date__lte=horizon).exists():
        return 0
    rng = random.Random(20261123)  # noqa: S311 - demo data, not security
    taken: dict[int, list[tuple[datetime.datetime, datetime.datetime]]] = {}
    busy_patients: dict[int, list[tuple[datetime.datetime, datetime.datetime]]] = {}
    rows = []
    for offset in range(1, 8):
        day = today + datetime.timedelta(days=offset)
        for service in services:
            for professional in service.professionals.all():
                hours = professional.working_hours.filter(weekday=day.weekday())
                for interval in hours:
                    if rng.random() < 0.45:
                        continue
                    start = datetime.datetime.combine(day, interval.start, tzinfo=clinic.tz) + datetime.timedelta(
                        minutes=30 * rng.randrange(0, 4)
                    )
                    end = start + datetime.timedelta(minutes=service.duration_minutes)
                    patient = patients[rng.randrange(len(patients))]
                    if _overlaps(taken.get(professional.pk, []), start, end) or _overlaps(
                        busy_patients.get(patient.pk, []), start, end
                    ):
                        continue
                    taken.setdefault(professional.pk, []).append((start, end))
                    busy_patients.setdefault(patient.pk, []).append((start, end))
                    rows.append(
                        Appointment(
                            clinic=clinic,
                            patient=patient,
                            professional=professional,
                            service=service,
                            start=start,
                            end=end,
                            status=AppointmentStatus.CONFIRMED if offset <= 2 else AppointmentStatus.SCHEDULED,
                            source=AppointmentSource.WHATSAPP if rng.random() < 0.6 else AppointmentSource.ADMIN,
                            created_by_kind=ActorKind.SYSTEM,
                            updated_by_kind=ActorKind.SYSTEM,
                        )
                    )
    Appointment.objects.bulk_create(rows)
    return len(rows)


def _reminders(clinic: Clinic, services: list[Service]) -> None:
    """The standard templates and rules (48 h and 2 h), the surgery's own three, then steps for the agenda."""
    reminder_defaults_create(clinic=clinic)
    surgery = next(s for s in services if s.name == SURGERY_SERVICE)
    if not ReminderRule.objects.filter(clinic=clinic, service=surgery).exists():
        template, _created = ReminderTemplate.objects.get_or_create(
            clinic=clinic, name="Lembrete de cirurgia", defaults={"body": _SURGERY_TEMPLATE}
        )
        ReminderRule.objects.bulk_create(
            ReminderRule(clinic=clinic, service=surgery, hours_before=hours, template=template)
            for hours in SURGERY_REMINDER_HOURS
        )
    # The demo's appointments are inserted in bulk, without the booking services that plan their steps.
    clinic_steps_replan(clinic_id=clinic.pk)


def _overlaps(
    intervals: list[tuple[datetime.datetime, datetime.datetime]], start: datetime.datetime, end: datetime.datetime
) -> bool:
    return any(s < end and start < e for s, e in intervals)


_DEMO_CHATS = (
    # patient index, needs attention reason, messages (direction, text)
    (
        1,
        AttentionReason.NONE,
        (
            ("in", "Oi, bom dia! Vocês atendem pelo Bradesco Saúde?"),
            ("out", "Bom dia! Atendemos sim pelo *Bradesco Saúde* 😊 Quer marcar uma consulta?"),
        ),
    ),
    (
        4,
        AttentionReason.ASKED_FOR_HUMAN,
        (
            ("in", "Queria falar com uma atendente, por favor"),
            ("out", "Claro! Já chamei a equipe da recepção, em instantes alguém te responde."),
        ),
    ),
    (
        7,
        AttentionReason.NONE,
        (
            ("in", "Qual o endereço da clínica?"),
            ("out", "Estamos na *Av. Paulista, 1000, conj. 52* — Bela Vista, São Paulo."),
        ),
    ),
)


def _conversations(clinic: Clinic, patients: list[Patient]) -> None:
    now = timezone.now()
    for index, reason, messages in _DEMO_CHATS:
        patient = patients[index]
        conversation, created = Conversation.objects.get_or_create(
            clinic=clinic,
            patient=patient,
            defaults={
                "needs_attention": bool(reason),
                "attention_reason": reason,
                "owner": ConversationOwner.HUMAN if reason else ConversationOwner.AI,
                "last_inbound_at": now,
                "last_outbound_at": now,
            },
        )
        if not created:
            continue
        # The history was answered already: its messages belong to a finished turn, so none is answered again.
        turn = Turn.objects.create(
            clinic=clinic,
            conversation=conversation,
            outcome=TurnOutcome.HANDED_OFF if reason else TurnOutcome.ANSWERED,
            engine="demo",
            started_at=now,
            finished_at=now,
        )
        for direction, text in messages:
            inbound = direction == "in"
            Message.objects.create(
                clinic=clinic,
                conversation=conversation,
                direction=MessageDirection.INBOUND if inbound else MessageDirection.OUTBOUND,
                text=text,
                status=MessageStatus.RECEIVED if inbound else MessageStatus.DELIVERED,
                author=MessageAuthor.PATIENT if inbound else MessageAuthor.AI,
                turn=turn if inbound else None,
            )


def _faq(clinic: Clinic) -> None:
    for question, keywords, answer in _FAQ:
        FaqEntry.objects.get_or_create(
            clinic=clinic, question=question, defaults={"keywords": keywords, "answer": answer}
        )
