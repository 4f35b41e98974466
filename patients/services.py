"""Writes about patients."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from cecilia.models import Clinic
from patients.models import Patient
from patients.phones import normalize_phone


def _e164_or_none(phone: str | None) -> str | None:
    if not phone:
        return None
    try:
        return normalize_phone(phone)
    except ValidationError:
        return None  # WhatsApp knows numbers our library does not (new ranges, odd countries): keep the chat id


def patient_for_chat(*, clinic: Clinic, phone: str | None, whatsapp_id: str, whatsapp_name: str = "") -> Patient:
    """The clinic's patient behind a WhatsApp chat, created on first contact.

    Found by the normalised phone first (any spelling, with or without the ninth digit), then by WhatsApp id — a chat
    first seen by its privacy id (`…@lid`, no phone) is the same patient once the phone shows up, and gets it then.
    The name shown on WhatsApp is refreshed; the full name staff typed is never touched.
    """
    e164 = _e164_or_none(phone)
    lookup = Q(whatsapp_id=whatsapp_id) if whatsapp_id else Q(pk__in=[])
    if e164:
        lookup |= Q(phone=e164)
    for _attempt in range(2):
        candidates = list(Patient.objects.filter(lookup, clinic=clinic).order_by("pk"))
        patient = next((p for p in candidates if e164 and p.phone == e164), None) or next(iter(candidates), None)
        if patient is not None:
            return _refresh(patient, e164=e164, whatsapp_id=whatsapp_id, whatsapp_name=whatsapp_name)
        try:
            with transaction.atomic():
                return Patient.objects.create(
                    clinic=clinic, phone=e164, whatsapp_id=whatsapp_id, whatsapp_name=whatsapp_name[:120]
                )
        except IntegrityError:
            continue  # the same patient's other message won the race; read theirs
    raise RuntimeError("patient_for_chat could not create or find the patient")  # unreachable in practice


def _refresh(patient: Patient, *, e164: str | None, whatsapp_id: str, whatsapp_name: str) -> Patient:
    changed = []
    if e164 and not patient.phone:
        patient.phone = e164
        changed.append("phone")
    if whatsapp_id and patient.whatsapp_id != whatsapp_id and not _whatsapp_id_taken(patient, whatsapp_id):
        patient.whatsapp_id = whatsapp_id
        changed.append("whatsapp_id")
    if whatsapp_name and patient.whatsapp_name != whatsapp_name[:120]:
        patient.whatsapp_name = whatsapp_name[:120]
        changed.append("whatsapp_name")
    if changed:
        patient.save(update_fields=[*changed, "updated_at"])
    return patient


def _whatsapp_id_taken(patient: Patient, whatsapp_id: str) -> bool:
    return Patient.objects.filter(clinic_id=patient.clinic_id, whatsapp_id=whatsapp_id).exclude(pk=patient.pk).exists()


_NAME_PARTICLES = frozenset({"da", "das", "de", "do", "dos", "e"})


def patient_name_record(*, patient: Patient, full_name: str) -> Patient:
    """Record the full name a patient told the assistant ("maria da silva" → "Maria da Silva").

    Spaces are tidied and an all-lower or all-upper name is capitalised the Brazilian way (particles stay lower);
    a name typed with its own capitals is kept as typed. Staff can correct it in the admin. Raises ValueError for a
    blank name.
    """
    name = " ".join(full_name.split())[: Patient._meta.get_field("full_name").max_length]
    if not name:
        raise ValueError("A patient's name cannot be blank.")
    if name.islower() or name.isupper():
        name = " ".join(
            word.lower() if index and word.lower() in _NAME_PARTICLES else word.capitalize()
            for index, word in enumerate(name.split())
        )
    patient.full_name = name
    patient.save(update_fields=["full_name", "updated_at"])
    return patient


def patient_automated_messages_set(*, patient_id: int, allowed: bool) -> None:
    """The patient's own "parar" / "voltar": no reminders or other automatic messages while opted out (staff and the
    assistant still answer what the patient writes)."""
    Patient.objects.filter(pk=patient_id).update(opt_out_automated=not allowed, updated_at=timezone.now())
