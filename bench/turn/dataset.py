"""The bench clinic of bench.turn: a small dental and general practice answering on Evolution, and nothing else.

Built once through the ORM and reused; every run re-keys its channel (the encryption key is new each run) and wipes
what earlier runs left (patients, conversations, appointments, webhooks), so each run's patients are new ones and the
agenda is as empty as the first time.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

CLINIC_SLUG = "bench-turn"
INSTANCE = "bench-turn"
# Evolution sends the instance token in every webhook body and the webhook checks it against the clinic's API key;
# the bench's fake Evolution checks the same key on every send. A made-up value, not a credential.
API_KEY = "B3NCH7UR-0000-4000-8000-000000000001"

_T = datetime.time
_SHIFTS = ((_T(8), _T(12)), (_T(13), _T(19)))
_PROFESSIONALS = (
    ("Dr. Bruno Lima", "Odontologia"),
    ("Dra. Paula Reis", "Odontologia"),
    ("Dra. Ana Souza", "Clínica geral"),
)
_SERVICES = (
    # name, minutes, price, professionals (indexes into _PROFESSIONALS)
    ("Limpeza dental", 45, "200.00", (0, 1)),
    ("Avaliação odontológica", 30, "120.00", (0, 1)),
    ("Consulta de clínica geral", 30, "250.00", (2,)),
)
PRIVACY_NOTICE = "Seus dados são usados só para o seu atendimento na clínica, conforme a LGPD."


def clinic_prepare(*, fake_evolution_url: str, webhook_secret: str) -> tuple[int, int]:
    """The bench clinic, created when missing, its channel pointed at the fake Evolution; earlier runs' rows wiped.

    Returns the clinic's id and how many patients of earlier runs were removed.
    """
    from django.db import transaction

    from cecilia.models import BusinessHours, Clinic, WhatsAppProvider

    channel = {
        "whatsapp_provider": WhatsAppProvider.EVOLUTION,
        "whatsapp_instance": INSTANCE,
        "whatsapp_api_url": fake_evolution_url,
        "whatsapp_api_key": API_KEY,
        "whatsapp_webhook_secret": webhook_secret,
        "whatsapp_verify_token": "",
        # The rule-based receptionist unless a scenario sets a model (llm_configure).
        "llm_api_key": "",
        "llm_base_url": "",
        "llm_daily_token_budget": 0,
    }
    with transaction.atomic():
        # values_list: the stored secrets were encrypted with an earlier run's key; they are overwritten, never read.
        clinic_id = Clinic.objects.filter(slug=CLINIC_SLUG).values_list("pk", flat=True).first()
        if clinic_id is None:
            clinic = Clinic(
                name="Clínica Bench (turnos)",
                slug=CLINIC_SLUG,
                timezone="America/Sao_Paulo",
                address="Av. Paulista, 1000 — Bela Vista, São Paulo/SP",
                city="São Paulo",
                state="SP",
                phone="+55 11 3000-1000",
                privacy_notice=PRIVACY_NOTICE,
                **channel,
            )
            clinic.save()
            for weekday in range(6):
                for start, end in _SHIFTS:
                    BusinessHours.objects.create(clinic=clinic, weekday=weekday, start=start, end=end)
            _agenda(clinic)
            return clinic.pk, 0
        # Encrypted fields go through save() (update() would store them as they are); the rest with it.
        clinic = Clinic.objects.only("pk").get(pk=clinic_id)
        for name, value in channel.items():
            setattr(clinic, name, value)
        clinic.save(update_fields=list(channel))
        removed = _wipe(clinic_id)
    return clinic_id, removed


def llm_configure(clinic_id: int, *, base_url: str, api_key: str, model: str) -> None:
    """Point the clinic's receptionist at a model (the LLM scenario): its own key, base URL and a large budget."""
    from cecilia.models import Clinic

    clinic = Clinic.objects.only("pk").get(pk=clinic_id)
    clinic.llm_api_key = api_key
    clinic.llm_base_url = base_url
    clinic.llm_model = model
    clinic.llm_daily_token_budget = 100_000_000
    clinic.save(update_fields=["llm_api_key", "llm_base_url", "llm_model", "llm_daily_token_budget"])


def clinic_reset(clinic_id: int) -> int:
    """Between scenarios: the patients, chats and bookings of the previous one removed. Returns patients removed."""
    from django.db import transaction

    with transaction.atomic():
        return _wipe(clinic_id)


def _agenda(clinic: object) -> None:
    from scheduling.models import Professional, Service, WorkingHours

    professionals = []
    for name, specialty in _PROFESSIONALS:
        professional = Professional.objects.create(clinic=clinic, name=name, specialty=specialty)
        WorkingHours.objects.bulk_create(
            WorkingHours(clinic=clinic, professional=professional, weekday=day, start=start, end=end)
            for day in range(6)
            for start, end in _SHIFTS
        )
        professionals.append(professional)
    for name, minutes, price, who in _SERVICES:
        service = Service.objects.create(clinic=clinic, name=name, duration_minutes=minutes, price=Decimal(price))
        service.professionals.set([professionals[index] for index in who])


def _wipe(clinic_id: int) -> int:
    """Everything patients brought into the bench clinic, in the order the PROTECT foreign keys require."""
    from conversations.models import Conversation, InboundEvent, StatusReceipt
    from patients.models import Patient
    from scheduling.models import Appointment, SlotHold

    SlotHold.objects.filter(clinic_id=clinic_id).delete()
    Appointment.objects.filter(clinic_id=clinic_id).delete()
    Conversation.objects.filter(clinic_id=clinic_id).delete()  # turns and messages with them
    patients = Patient.objects.filter(clinic_id=clinic_id)
    removed = patients.count()
    patients.delete()
    InboundEvent.objects.filter(clinic_id=clinic_id).delete()
    StatusReceipt.objects.filter(clinic_id=clinic_id).delete()
    return removed
