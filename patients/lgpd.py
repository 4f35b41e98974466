"""A patient's LGPD rights: the export of everything held about them, and anonymisation.

`patient_export` builds a ZIP: `dados.json` (every record, human-readable field names, datetimes in the clinic's time
zone) plus the media files themselves under `midia/` — one download a patient can open, and the files are what they
sent. `patient_anonymise` erases what identifies the person in every table and keeps the appointment records the
clinic must keep by law (date, professional, service, status).

No message text, name or number is ever logged here: log lines carry ids and counts only.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import re
import zipfile
from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import capfirst
from django.utils.translation import gettext

from patients.audit import audit_record, patient_access_record
from patients.models import (
    AccessKind,
    AuditAction,
    AuditEntry,
    Patient,
    PatientAccess,
    PatientGuardian,
    PrivacyAcknowledgement,
)

logger = logging.getLogger(__name__)

REDACTED = "[anonimizado]"
EXPORT_FORMAT_VERSION = 1
ANONYMISED_ERROR_CODE = "anonymised"


# --- export ------------------------------------------------------------------------------------------------------


def _value(obj: models.Model, field: models.Field, tz: datetime.tzinfo) -> Any:
    if field.is_relation:
        related = getattr(obj, field.name, None)
        return str(related) if related is not None else None
    value = getattr(obj, field.attname)
    if value is None or value == "":
        return value
    if isinstance(field, models.FileField):
        return value.name if value else ""
    if field.choices:
        return str(getattr(obj, f"get_{field.name}_display")())
    if isinstance(value, datetime.datetime):
        return value.astimezone(tz).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bool | int | float | str | list | dict):
        return value
    return str(value)


# Bookkeeping that means nothing to the patient (claims, leases, secrets) stays out of the export.
_SKIP = {"clinic", "turn_lease_until", "claimed_at", "send_started_at", "attempts", "next_attempt_at", "turn"}


def _record(obj: models.Model, tz: datetime.tzinfo, *, skip: set[str] = frozenset()) -> dict[str, Any]:
    """The row as a dict keyed by each field's verbose name (in the active language)."""
    row: dict[str, Any] = {"id": obj.pk}
    for field in obj._meta.concrete_fields:
        if field.primary_key or field.name in _SKIP or field.name in skip:
            continue
        row[str(capfirst(field.verbose_name))] = _value(obj, field, tz)
    return row


def patient_export_data(*, patient: Patient) -> tuple[dict[str, Any], list[Any]]:
    """Everything held about `patient`, as a JSON-ready dict, and the message rows whose media files belong in it.

    Only rows that belong to this patient are read: their own conversation, appointments, waitlist entries, links,
    audit and access rows — never a guardian's or dependent's own data (only the link).
    """
    from conversations.models import Conversation, ConversationNote, Message
    from scheduling.models import Appointment, AppointmentChange
    from scheduling.reminder_models import ReminderStep
    from scheduling.waitlist_models import WaitlistEntry, WaitlistOffer

    tz = patient.clinic.tz
    conversations = []
    media_messages = []
    for conversation in Conversation.objects.filter(patient=patient).order_by("id"):
        messages = []
        for message in Message.objects.filter(conversation=conversation).order_by("created_at", "id"):
            messages.append(_record(message, tz, skip={"conversation", "inbound_event", "quoted", "reminder_step"}))
            if message.media:
                media_messages.append(message)
        notes = ConversationNote.objects.filter(conversation=conversation).order_by("created_at", "id")
        conversations.append(
            {
                **_record(conversation, tz, skip={"patient", "state"}),
                "messages": messages,
                "internal_notes": [_record(note, tz, skip={"conversation", "author"}) for note in notes],
            }
        )
    appointments = []
    for appointment in Appointment.objects.filter(patient=patient).select_related("professional", "service"):
        changes = AppointmentChange.objects.filter(appointment=appointment).order_by("at", "pk")
        steps = ReminderStep.objects.filter(appointment=appointment).order_by("due_at", "id")
        appointments.append(
            {
                **_record(appointment, tz, skip={"patient", "created_by_user", "updated_by_user"}),
                "history": [_record(c, tz, skip={"appointment", "actor_user"}) for c in changes],
                "reminders": [_record(s, tz, skip={"appointment", "rule"}) for s in steps],
            }
        )
    waitlist = [
        {
            **_record(entry, tz, skip={"patient"}),
            "offers": [_record(o, tz, skip={"entry"}) for o in WaitlistOffer.objects.filter(entry=entry)],
        }
        for entry in WaitlistEntry.objects.filter(patient=patient).select_related("service", "professional")
    ]
    data = {
        "format_version": EXPORT_FORMAT_VERSION,
        "clinic": patient.clinic.name,
        "exported_at": timezone.now().astimezone(tz).isoformat(),
        "time_zone": str(patient.clinic.timezone),
        "profile": _record(patient, tz),
        "dependents": [
            _record(link, tz) for link in PatientGuardian.objects.filter(guardian=patient).select_related("dependent")
        ],
        "guardians": [
            _record(link, tz) for link in PatientGuardian.objects.filter(dependent=patient).select_related("guardian")
        ],
        "privacy_notice_acknowledgements": [
            _record(a, tz, skip={"patient"}) for a in PrivacyAcknowledgement.objects.filter(patient=patient)
        ],
        "conversations": conversations,
        "media": [
            {
                "message_id": m.pk,
                "file": f"midia/{m.pk}-{os.path.basename(m.media.name)}",
                "type": m.media_mime_type or m.get_kind_display(),
                "size_bytes": _size(m),
                "date": m.created_at.astimezone(tz).isoformat(),
            }
            for m in media_messages
        ],
        "appointments": appointments,
        "waitlist": waitlist,
        "audit_trail": [
            _record(e, tz, skip={"patient", "actor", "content_type"})
            for e in AuditEntry.objects.filter(patient=patient).order_by("at", "id")
        ],
        "access_log": [
            _record(a, tz, skip={"patient", "user"})
            for a in PatientAccess.objects.filter(patient=patient).order_by("at", "id")
        ],
    }
    return data, media_messages


def _size(message: Any) -> int | None:
    try:
        return message.media.size
    except (OSError, ValueError):
        return None  # the file is gone (retention, storage loss): listed, with no size


def patient_export(*, patient: Patient, requested_by: Any) -> bytes:
    """A ZIP of everything held about `patient` (`dados.json` + the media files), logged as an export access.

    The caller checks the permission (`patients.export_patient`) and the clinic; this only builds the file.
    """
    data, media_messages = patient_export_data(patient=patient)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("dados.json", json.dumps(data, ensure_ascii=False, indent=2, default=str))
        for message, entry in zip(media_messages, data["media"], strict=True):
            try:
                with message.media.open("rb") as handle:
                    archive.writestr(entry["file"], handle.read())
            except OSError:
                logger.warning("export: media of message %s missing", message.pk)
    patient_access_record(user=requested_by, clinic_id=patient.clinic_id, patient_id=patient.pk, kind=AccessKind.EXPORT)
    logger.info("patient %s exported (%s media files)", patient.pk, len(media_messages))
    return buffer.getvalue()


# --- anonymisation -----------------------------------------------------------------------------------------------


def patient_identifiers(patient: Patient, *, strong_only: bool = False) -> list[str]:
    """The values that identify `patient` as stored anywhere: names, number (E.164, digits, national), CPF, e-mail,
    WhatsApp id. Fragments under 4 characters are left out so a scan does not redact unrelated text.

    `strong_only`: for scanning rows that are not the patient's own (other patients' audit entries, raw events),
    names of a single word ("Maria") are left out too — they would redact other people who share the name.
    """
    names = [patient.full_name, patient.whatsapp_name]
    if strong_only:
        names = [name for name in names if len(name.split()) >= 2]
    values = [*names, patient.email, patient.cpf, patient.whatsapp_id]
    if patient.phone:
        digits = re.sub(r"\D", "", patient.phone)
        local = digits[2:] if digits.startswith("55") else digits
        values += [patient.phone, digits, local]
        if len(local) >= 10:
            values += [f"({local[:2]}) {local[2:-4]}-{local[-4:]}", f"{local[2:-4]}-{local[-4:]}"]
    if patient.whatsapp_id:
        values.append(patient.whatsapp_id.split("@", 1)[0])
    return sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)


def _redact(value: Any, identifiers: list[str]) -> Any:
    """`value` (any JSON) with every identifier replaced by REDACTED, case-insensitively."""
    if isinstance(value, str):
        for ident in identifiers:
            value = re.sub(re.escape(ident), REDACTED, value, flags=re.IGNORECASE)
        return value
    if isinstance(value, list):
        return [_redact(v, identifiers) for v in value]
    if isinstance(value, dict):
        return {k: _redact(v, identifiers) for k, v in value.items()}
    return value


def _text_matches(column: str, identifiers: list[str]) -> Q:
    query = Q(pk__in=[])
    for ident in identifiers:
        query |= Q(**{f"{column}__icontains": ident})
    return query


@transaction.atomic
def patient_anonymise(*, patient: Patient, requested_by: Any) -> None:
    """Erase everything that identifies `patient`, everywhere, and stop every message to them. Atomic; idempotent.

    Kept: the patient row (appointments point at it, with its clinic and health plan), appointment rows and their
    history (date, professional, service, status: the clinic must keep them), reminder outcomes without the answers,
    privacy acknowledgements, the access log. Erased: the profile's personal fields, the conversation's memory and
    summary, every message text, media file, template parameter and quoted content, the raw provider events and
    delivery receipts of their messages, reminder answers, internal notes, appointment notes, identifying values in
    the audit trail and Django's admin log, and the Google Calendar event title (re-pushed after commit).

    Nothing is sent to this person again: queued messages fail with code "anonymised", pending reminders are skipped,
    open waitlist offers withdrawn; the row has no number or WhatsApp id left, and the outbox refuses anonymised
    patients (conversations.outbox.sending). If they write again, they are a new patient.
    """
    patient = Patient.objects.select_for_update().select_related("clinic").get(pk=patient.pk)
    identifiers = patient_identifiers(patient)
    strong = patient_identifiers(patient, strong_only=True)
    now = timezone.now()
    counts = _conversations_erase(patient=patient, strong=strong, now=now)
    counts.update(_scheduling_erase(patient=patient, identifiers=identifiers, now=now))
    counts["audit"] = _audit_erase(patient=patient, strong=strong)
    Patient.objects.filter(pk=patient.pk).update(
        full_name="",
        whatsapp_name="",
        phone=None,
        whatsapp_id="",
        cpf="",
        email="",
        birth_date=None,
        health_plan_card_number="",
        notes="",
        opt_out_automated=True,
        opt_out_ai=True,
        anonymised_at=patient.anonymised_at or now,
        updated_at=now,
    )
    patient.refresh_from_db()
    audit_record(
        actor=requested_by,
        clinic_id=patient.clinic_id,
        action=AuditAction.ACTION,
        obj=patient,
        patient_id=patient.pk,
        action_name="anonymise",
    )
    logger.info("patient %s anonymised: %s", patient.pk, counts)


def _conversations_erase(*, patient: Patient, strong: list[str], now: datetime.datetime) -> dict[str, int]:
    from conversations.models import (
        AttentionReason,
        Conversation,
        ConversationNote,
        InboundEvent,
        Message,
        MessageDirection,
        MessageStatus,
        StatusReceipt,
    )
    from scheduling.models import SlotHold

    conversation_ids = list(Conversation.objects.filter(patient=patient).values_list("pk", flat=True))
    messages = Message.objects.filter(conversation_id__in=conversation_ids)
    provider_ids = [p for p in messages.exclude(provider_message_id="").values_list("provider_message_id", flat=True)]
    event_ids = set(messages.exclude(inbound_event=None).values_list("inbound_event_id", flat=True))
    # Status webhooks and events not linked to a message still carry the number or the message ids in the payload.
    event_ids |= _events_naming(patient.clinic_id, [*strong, *provider_ids])
    counts = {"cancelled": 0, "media": 0}
    counts["cancelled"] = messages.filter(direction=MessageDirection.OUTBOUND, status=MessageStatus.QUEUED).update(
        status=MessageStatus.FAILED,
        error=gettext("Not sent: the patient's data was anonymised (LGPD)."),
        error_code=ANONYMISED_ERROR_CODE,
        failed_at=now,
    )
    for message in messages.exclude(media=""):
        message.media.delete(save=False)  # the file; the reference is cleared below
        counts["media"] += 1
    counts["messages"] = messages.update(
        text="", media="", template={}, buttons=[], provider_message_id="", inbound_event=None
    )
    for start in range(0, len(provider_ids), 1000):
        StatusReceipt.objects.filter(
            clinic_id=patient.clinic_id, provider_message_id__in=provider_ids[start : start + 1000]
        ).delete()
    counts["events"] = InboundEvent.objects.filter(pk__in=event_ids).update(payload={}, dedupe_key="", error="")
    # Slots the assistant was holding for this chat: they will not be booked now.
    SlotHold.objects.filter(holder__in=[f"conversation:{pk}" for pk in conversation_ids]).delete()
    counts["notes"] = ConversationNote.objects.filter(conversation_id__in=conversation_ids).update(text=REDACTED)
    Conversation.objects.filter(pk__in=conversation_ids).update(
        state={}, handoff_summary="", needs_attention=False, attention_reason=AttentionReason.NONE
    )
    return counts


def _events_naming(clinic_id: int, values: list[str]) -> set[int]:
    """Ids of the clinic's raw events whose payload contains any of `values` (kept N days: a bounded scan)."""
    if not values:
        return set()
    conditions = " OR ".join(["strpos(lower(payload::text), lower(%s)) > 0"] * len(values))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM conversations_inboundevent WHERE clinic_id = %s AND ({conditions})",  # noqa: S608
            [clinic_id, *values],
        )
        return {row[0] for row in cursor.fetchall()}


def _scheduling_erase(*, patient: Patient, identifiers: list[str], now: datetime.datetime) -> dict[str, int]:
    from integrations.calendar_sync import push_request
    from integrations.models import CalendarEventLink
    from scheduling.models import Appointment, AppointmentChange
    from scheduling.reminder_models import ReminderStep, SkipReason, StepStatus
    from scheduling.waitlist_models import OfferStatus, WaitlistEntry, WaitlistOffer, WaitlistStatus

    appointments = Appointment.objects.filter(patient=patient)
    steps = ReminderStep.objects.filter(appointment__patient=patient)
    counts = {
        "reminders_skipped": steps.filter(status=StepStatus.SCHEDULED).update(
            status=StepStatus.SKIPPED, skip_reason=SkipReason.OPTED_OUT
        )
    }
    steps.exclude(note="").update(note="")
    # Free text staff or the patient typed; date, professional, service and status stay.
    appointments.update(notes="", cancellation_reason="")
    for change in AppointmentChange.objects.filter(appointment__patient=patient):
        redacted = (
            _redact(change.before, identifiers),
            _redact(change.after, identifiers),
            _redact(change.note, identifiers),
        )
        if redacted != (change.before, change.after, change.note):
            change.before, change.after, change.note = redacted
            change.save(update_fields=["before", "after", "note"])
    WaitlistOffer.objects.filter(entry__patient=patient, status=OfferStatus.OFFERED).update(
        status=OfferStatus.DECLINED, answered_at=now
    )
    WaitlistEntry.objects.filter(patient=patient, status=WaitlistStatus.WAITING).update(status=WaitlistStatus.CANCELLED)
    # Google holds the event title we pushed ("{first_name} — …"): forget it and push again after commit, so the
    # event is retitled without the name (the patient row has none left by then).
    linked = list(appointments.filter(calendar_link__isnull=False).select_related("professional", "service", "clinic"))
    CalendarEventLink.objects.filter(appointment__patient=patient).update(pushed_summary="")
    for appointment in linked:
        transaction.on_commit(lambda a=appointment: push_request(appointment=a))
    counts["calendar_events"] = len(linked)
    return counts


def _audit_erase(*, patient: Patient, strong: list[str]) -> int:
    """The audit trail and Django's admin log keep what happened, without the values that name the person.

    The patient's own entries lose every value; other entries (a guardian link, another record that mentions them)
    lose only the values that surely identify this person (`strong`)."""
    patient_type = ContentType.objects.get_for_model(Patient)
    entries = AuditEntry.objects.filter(clinic_id=patient.clinic_id).filter(
        Q(patient=patient)
        | Q(content_type=patient_type, object_id=str(patient.pk))
        | _text_matches("object_repr", strong)
        | _text_matches("changes", strong)
    )
    count = 0
    for entry in entries:
        own = entry.patient_id == patient.pk or (
            entry.content_type_id == patient_type.pk and entry.object_id == str(patient.pk)
        )
        if own:
            entry.object_repr = f"{entry.content_type.name} #{entry.object_id}"
            entry.changes = {name: [REDACTED, REDACTED] for name in entry.changes}
        else:
            entry.object_repr = _redact(entry.object_repr, strong)
            entry.changes = _redact(entry.changes, strong)
        entry.save(update_fields=["object_repr", "changes"])
        count += 1
    for log in LogEntry.objects.filter(
        Q(content_type=patient_type, object_id=str(patient.pk))
        | _text_matches("object_repr", strong)
        | _text_matches("change_message", strong)
    ):
        log.object_repr = f"#{log.object_id}"
        log.change_message = _redact(log.change_message, strong)
        log.save(update_fields=["object_repr", "change_message"])
    return count
