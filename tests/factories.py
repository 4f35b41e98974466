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


# --- LGPD (patients.lgpd tests): one patient seeded in every table that can hold their data ------------------------


def lgpd_seeded_patient(clinic: Clinic, *, tag: str, phone: str, cpf: str = "") -> dict:
    """A patient with a conversation (texts in and out, a voice note with a file, a quoted reply, a queued reply),
    a raw webhook and a delivery receipt naming them, an internal note, a future appointment with a scheduled
    reminder and an answered one, a waitlist entry with an open offer, a calendar link, a privacy acknowledgement,
    audit and access rows. Returns the rows and every identifying value (`values`), all containing `tag`."""
    from django.contrib.contenttypes.models import ContentType
    from django.core.files.base import ContentFile

    from conversations.models import Conversation, ConversationNote, InboundEvent, Message, StatusReceipt
    from integrations.models import CalendarEventLink, LinkState
    from patients.models import AccessKind, AuditAction, AuditEntry, PatientAccess, PrivacyAcknowledgement
    from scheduling.reminder_models import ReminderStep, StepStatus
    from scheduling.waitlist_models import WaitlistEntry, WaitlistOffer

    digits = phone.lstrip("+")
    jid = f"{digits}@s.whatsapp.net"
    person = patient(
        clinic,
        full_name=f"Fulana {tag} da Silva",
        whatsapp_name=f"Fulaninha {tag}",
        phone=phone,
        whatsapp_id=jid,
        cpf=cpf,
        email=f"fulana.{tag.lower()}@example.com",
        birth_date=datetime.date(1987, 3, 14),
        notes=f"Prefere manhãs {tag}",
    )
    pro = professional(clinic)
    svc = service(clinic, professionals=[pro])
    now = timezone.now()
    booked = appointment(
        patient=person, professional=pro, service=svc, start=now + datetime.timedelta(days=3), notes=f"Alergia {tag}"
    )
    conversation = Conversation.objects.create(
        clinic=clinic,
        patient=person,
        state={"flow": "booking", "name": f"Fulana {tag}"},
        handoff_summary=f"Resumo {tag}",
    )
    event = InboundEvent.objects.create(
        clinic=clinic,
        provider="evolution",
        event_type="messages.upsert",
        dedupe_key=f"inst:upsert:MSG{tag}1",
        payload={"data": {"key": {"remoteJid": jid, "id": f"MSG{tag}1"}, "pushName": f"Fulaninha {tag}"}},
        processed_at=now,
    )
    inbound = Message.objects.create(
        clinic=clinic,
        conversation=conversation,
        direction="in",
        author="patient",
        status="received",
        text=f"Oi, aqui é a Fulana {tag}",
        provider_message_id=f"MSG{tag}1",
        inbound_event=event,
    )
    voice = Message(
        clinic=clinic, conversation=conversation, direction="in", author="patient", status="received", kind="audio"
    )
    voice.text = f"Transcrição {tag}"
    voice.media_mime_type = "audio/ogg"
    voice.media.save(f"voz-{tag}.ogg", ContentFile(f"OGG {tag}".encode()), save=False)
    voice.save()
    reply = Message.objects.create(
        clinic=clinic,
        conversation=conversation,
        direction="out",
        author="ai",
        status="sent",
        text=f"Olá Fulana {tag}, tudo bem?",
        provider_message_id=f"OUT{tag}1",
        quoted=inbound,
    )
    queued = Message.objects.create(
        clinic=clinic,
        conversation=conversation,
        direction="out",
        author="ai",
        status="queued",
        text=f"Confirmado, Fulana {tag}",
        template={"name": "lembrete", "language": "pt_BR", "body_parameters": [f"Fulana {tag}"]},
    )
    receipt = StatusReceipt.objects.create(
        clinic=clinic, provider_message_id=f"OUT{tag}1", status="read", occurred_at=now
    )
    InboundEvent.objects.create(
        clinic=clinic,
        provider="evolution",
        event_type="messages.update",
        dedupe_key=f"inst:update:OUT{tag}1:read",
        payload={"data": {"remoteJid": jid, "keyId": f"OUT{tag}1", "status": "READ"}},
        processed_at=now,
    )
    note = ConversationNote.objects.create(
        clinic=clinic, conversation=conversation, author_label="staff", text=f"Ligar para Fulana {tag}"
    )
    pending = ReminderStep.objects.create(
        clinic=clinic,
        appointment=booked,
        key="24h",
        appointment_start=booked.start,
        due_at=booked.start - datetime.timedelta(hours=24),
    )
    answered = ReminderStep.objects.create(
        clinic=clinic,
        appointment=booked,
        key="48h",
        appointment_start=booked.start,
        due_at=now - datetime.timedelta(hours=1),
        status=StepStatus.ANSWERED,
        note=f"Vou sim {tag}",
        answered_at=now,
    )
    entry = WaitlistEntry.objects.create(clinic=clinic, patient=person, service=svc, professional=pro)
    offer = WaitlistOffer.objects.create(
        clinic=clinic,
        entry=entry,
        professional=pro,
        start=now + datetime.timedelta(days=1),
        end=now + datetime.timedelta(days=1, minutes=30),
        expires_at=now + datetime.timedelta(hours=1),
    )
    link = CalendarEventLink.objects.create(
        clinic=clinic,
        appointment=booked,
        event_id=f"cecilia{booked.pk}",
        calendar_id="agenda@example.com",
        pushed_summary=f"Fulana — {svc.name}",
        pushed_live=True,
        state=LinkState.SYNCED,
    )
    ack = PrivacyAcknowledgement.objects.create(
        clinic=clinic, patient=person, notice_version=f"n{person.pk}", notice_sent_at=now, acknowledged_at=now
    )
    audit = AuditEntry.objects.create(
        clinic=clinic,
        actor_label="gestao",
        action=AuditAction.UPDATE,
        content_type=ContentType.objects.get_for_model(person),
        object_id=str(person.pk),
        object_repr=str(person),
        patient=person,
        changes={"email": ["", person.email], "full_name": ["Fulana", person.full_name]},
    )
    access = PatientAccess.objects.create(clinic=clinic, patient=person, user_label="gestao", kind=AccessKind.PATIENT)
    return {
        "patient": person,
        "appointment": booked,
        "conversation": conversation,
        "messages": [inbound, voice, reply, queued],
        "voice": voice,
        "queued": queued,
        "receipt": receipt,
        "note": note,
        "pending_step": pending,
        "answered_step": answered,
        "entry": entry,
        "offer": offer,
        "link": link,
        "ack": ack,
        "audit": audit,
        "access": access,
        "values": {
            "full_name": person.full_name,
            "whatsapp_name": person.whatsapp_name,
            "phone": phone,
            "digits": digits,
            "national": f"({digits[2:4]}) {digits[4:-4]}-{digits[-4:]}",
            "jid": jid,
            "email": person.email,
            "cpf": cpf,
            "text": inbound.text,
            "reply": reply.text,
            "note": note.text,
            "tag": tag,
        },
    }
