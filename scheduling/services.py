"""Booking: the only writers of appointments. The admin, the assistant's tools and the API all call these.

Each service runs in one transaction (a savepoint when the caller already has one, so a refused booking never breaks
the caller's transaction) and serialises on rows it locks: the professional for anything that takes time on their
agenda (book, reschedule), the appointment for any change to it. Lock order is appointment first, then
professionals by id, so two services never wait for each other in a cycle.

The rules are `scheduling.availability.slot_problems`; PostgreSQL's exclusion constraints have the last word
(a writer that skipped the lock, a raw INSERT): their IntegrityError becomes SlotTaken or PatientOverlap.

Who may do what: patients (through the assistant) and the system are held to the booking policy (minimum notice,
horizon, start times on the grid); patients cannot cancel or move an appointment later than the clinic's
cancellation notice. Staff are not bound by the policy, and with `force=True` they may also book outside working or
opening hours, on closed days, over Google Calendar busy time or into a buffer — never over another appointment,
another patient's hold, or time off. Every change records the actor and a history row, and tells
`appointment_changed` after commit.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from patients.audit import audit_changes, audit_record, audit_snapshot
from patients.models import AuditAction
from scheduling.availability import holds_consume, slot_problems, with_alternatives
from scheduling.errors import (
    CancellationTooLate,
    InvalidTransition,
    PatientOverlap,
    SlotTaken,
)
from scheduling.models import (
    ActorKind,
    Appointment,
    AppointmentAction,
    AppointmentChange,
    AppointmentSource,
    AppointmentStatus,
    Professional,
    Service,
)
from scheduling.reminders import steps_plan
from scheduling.signals import appointment_changed

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from patients.models import Patient

logger = logging.getLogger(__name__)

_OPEN = (AppointmentStatus.SCHEDULED, AppointmentStatus.CONFIRMED)
_PROFESSIONAL_OVERLAP = "appointment_no_overlap_per_professional"
_PATIENT_OVERLAP = "appointment_no_overlap_per_patient"


@dataclass(frozen=True)
class Actor:
    """Who is making a change: a staff user, the patient (through the assistant), or Cecilia herself."""

    kind: ActorKind
    user: User | None = None

    @classmethod
    def staff(cls, user: User) -> Actor:
        return cls(ActorKind.STAFF, user)

    @classmethod
    def patient(cls) -> Actor:
        return cls(ActorKind.PATIENT)

    @classmethod
    def system(cls) -> Actor:
        return cls(ActorKind.SYSTEM)

    @property
    def is_staff(self) -> bool:
        return self.kind == ActorKind.STAFF

    @property
    def user_id(self) -> int | None:
        return self.user.pk if self.is_staff and self.user is not None else None


def appointment_book(
    *,
    patient: Patient,
    service: Service,
    professional: Professional,
    start: datetime.datetime,
    actor: Actor,
    source: AppointmentSource,
    notes: str = "",
    holder: str | None = None,
    force: bool = False,
) -> Appointment:
    """Book `service` with `professional` for `patient` at `start` (lasting the service's duration).

    `holder`: the booking may take a slot this holder holds, and consumes those holds. Raises a BookingError.
    """
    _check_force(actor, force)
    if patient.clinic_id != service.clinic_id:
        raise ValueError("The patient and the service belong to different clinics.")
    end = start + datetime.timedelta(minutes=service.duration_minutes)
    with transaction.atomic():
        locked = _lock_professionals(professional.pk)[professional.pk]
        forced = _check_slot(service, locked, start, actor=actor, holder=holder, ignore_id=None, force=force)
        _check_patient(patient.pk, start, end, exclude_id=None)
        appointment = Appointment(
            clinic=service.clinic,
            patient=patient,
            professional=locked,
            service=service,
            start=start,
            end=end,
            status=AppointmentStatus.SCHEDULED,
            source=source,
            notes=notes,
            created_by_kind=actor.kind,
            created_by_user_id=actor.user_id,
            updated_by_kind=actor.kind,
            updated_by_user_id=actor.user_id,
        )
        _save_guarded(appointment, holder=holder)
        if holder:
            holds_consume(holder=holder, professional_id=locked.pk, start=start, end=end)
        _record(appointment, AppointmentAction.BOOKED, actor, before={}, note=forced)
    return appointment


def appointment_reschedule(
    *,
    appointment: Appointment,
    start: datetime.datetime,
    actor: Actor,
    professional: Professional | None = None,
    holder: str | None = None,
    force: bool = False,
) -> Appointment:
    """Move the appointment to `start` (and `professional`, if given), keeping the row; it becomes scheduled again
    (a confirmation was for the old time). It lasts its service's duration. Cancelled, completed and no-show
    appointments cannot move; patients cannot move one later than the clinic's cancellation notice.
    """
    _check_force(actor, force)
    with transaction.atomic():
        current = _lock_appointment(appointment.pk)
        _check_open(current, "reschedule")
        _check_patient_notice(current, actor)
        target_id = professional.pk if professional is not None else current.professional_id
        locked = _lock_professionals(current.professional_id, target_id)[target_id]
        service = current.service
        end = start + datetime.timedelta(minutes=service.duration_minutes)
        if (start, end, target_id) == (current.start, current.end, current.professional_id):
            return current  # nothing moves: not a change, keeps a confirmation
        forced = _check_slot(service, locked, start, actor=actor, holder=holder, ignore_id=current.pk, force=force)
        _check_patient(current.patient_id, start, end, exclude_id=current.pk)
        before = _snapshot(current)
        current.start, current.end, current.professional = start, end, locked
        current.status = AppointmentStatus.SCHEDULED
        _stamp(current, actor)
        _save_guarded(
            current,
            holder=holder,
            update_fields=[
                "start",
                "end",
                "professional",
                "status",
                "updated_at",
                "updated_by_kind",
                "updated_by_user",
            ],
        )
        if holder:
            holds_consume(holder=holder, professional_id=locked.pk, start=start, end=end)
        _record(current, AppointmentAction.RESCHEDULED, actor, before=before, note=forced)
    return current


def appointment_cancel(*, appointment: Appointment, actor: Actor, reason: str = "") -> Appointment:
    """Cancel a scheduled or confirmed appointment. A patient later than the clinic's cancellation notice gets
    CancellationTooLate (staff must do it)."""
    with transaction.atomic():
        current = _lock_appointment(appointment.pk)
        _check_open(current, "cancel")
        _check_patient_notice(current, actor)
        before = _snapshot(current)
        current.status = AppointmentStatus.CANCELLED
        current.cancellation_reason = reason.strip()[:200]
        _stamp(current, actor)
        current.save(
            update_fields=["status", "cancellation_reason", "updated_at", "updated_by_kind", "updated_by_user"]
        )
        _record(current, AppointmentAction.CANCELLED, actor, before=before)
    return current


def appointment_confirm(*, appointment: Appointment, actor: Actor) -> Appointment:
    """Scheduled → confirmed. Confirming a confirmed appointment again changes nothing (a patient says "sim" twice)."""
    with transaction.atomic():
        current = _lock_appointment(appointment.pk)
        if current.status == AppointmentStatus.CONFIRMED:
            return current
        if current.status != AppointmentStatus.SCHEDULED:
            raise InvalidTransition(status=current.status, action="confirm")
        return _set_status(current, AppointmentStatus.CONFIRMED, AppointmentAction.CONFIRMED, actor)


def appointment_mark_no_show(*, appointment: Appointment, actor: Actor) -> Appointment:
    """Scheduled or confirmed → no-show, once the appointment has started; staff or the system only."""
    with transaction.atomic():
        current = _lock_appointment(appointment.pk)
        _check_after_start(current, actor, "no_show")
        return _set_status(current, AppointmentStatus.NO_SHOW, AppointmentAction.NO_SHOW, actor)


def appointment_complete(*, appointment: Appointment, actor: Actor) -> Appointment:
    """Scheduled or confirmed → completed, once the appointment has started; staff or the system only."""
    with transaction.atomic():
        current = _lock_appointment(appointment.pk)
        _check_after_start(current, actor, "complete")
        return _set_status(current, AppointmentStatus.COMPLETED, AppointmentAction.COMPLETED, actor)


def appointment_details_edit(
    *, appointment: Appointment, actor: Actor, notes: str, cancellation_reason: str
) -> Appointment:
    """Notes (or a cancelled appointment's reason) edited by staff: no rule to check, but audited and announced.

    The change row names the fields, never their text: notes may hold health data.
    """
    with transaction.atomic():
        current = _lock_appointment(appointment.pk)
        changed = [
            name
            for name, value in (("notes", notes), ("cancellation_reason", cancellation_reason))
            if getattr(current, name) != value
        ]
        if not changed:
            return current
        audited_before = audit_snapshot(current, fields=changed)
        current.notes, current.cancellation_reason = notes, cancellation_reason
        _stamp(current, actor)
        current.save(update_fields=[*changed, "updated_by_kind", "updated_by_user", "updated_at"])
        AppointmentChange.objects.create(
            clinic_id=current.clinic_id,
            appointment=current,
            action=AppointmentAction.EDITED,
            actor_kind=actor.kind,
            actor_user_id=actor.user_id,
            after={"changed": changed},
        )
        _audit_staff(current, AppointmentAction.EDITED, actor, audited_before, fields=changed)
        _announce(current, AppointmentAction.EDITED)
    return current


# --------------------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------------------


def _check_force(actor: Actor, force: bool) -> None:
    if force and not actor.is_staff:
        raise ValueError("Only staff can book outside the usual rules (force=True).")


def _check_slot(
    service: Service,
    professional: Professional,
    start: datetime.datetime,
    *,
    actor: Actor,
    holder: str | None,
    ignore_id: int | None,
    force: bool,
) -> str:
    """Raise the slot's most important problem; return a note naming the rules staff forced past ("" if none)."""
    problems = slot_problems(
        service=service,
        professional=professional,
        start=start,
        holder=holder,
        ignore_appointment_id=ignore_id,
        enforce_policy=not actor.is_staff,
    )
    forced = [p for p in problems if force and p.forceable]
    blocking = [p for p in problems if not (force and p.forceable)]
    if blocking:
        raise with_alternatives(
            blocking[0].error, service=service, professional=professional, start=start, holder=holder
        )
    return ("forced: " + ", ".join(_problem_label(p.error) for p in forced))[:200] if forced else ""


def _problem_label(error: Any) -> str:
    reason = getattr(error, "reason", None) or error.details.get("reason")
    return f"{error.code}/{reason}" if reason else error.code


def _check_patient(
    patient_id: int, start: datetime.datetime, end: datetime.datetime, *, exclude_id: int | None
) -> None:
    qs = Appointment.objects.filter(patient_id=patient_id, start__lt=end, end__gt=start).exclude(
        status=AppointmentStatus.CANCELLED
    )
    if exclude_id is not None:
        qs = qs.exclude(pk=exclude_id)
    if qs.exists():
        raise PatientOverlap()


def _check_open(appointment: Appointment, action: str) -> None:
    if appointment.status not in _OPEN:
        raise InvalidTransition(status=appointment.status, action=action)


def _check_patient_notice(appointment: Appointment, actor: Actor) -> None:
    if actor.kind != ActorKind.PATIENT:
        return
    hours = appointment.clinic.cancellation_notice_hours
    if timezone.now() > appointment.start - datetime.timedelta(hours=hours):
        raise CancellationTooLate(notice_hours=hours)


def _check_after_start(appointment: Appointment, actor: Actor, action: str) -> None:
    if actor.kind == ActorKind.PATIENT:
        raise InvalidTransition(
            status=appointment.status, action=action, message=_("Only staff can record how an appointment went.")
        )
    _check_open(appointment, action)
    if timezone.now() < appointment.start:
        raise InvalidTransition(
            status=appointment.status, action=action, message=_("This appointment has not started yet.")
        )


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------


def _lock_professionals(*ids: int) -> dict[int, Professional]:
    """Lock the professionals' rows, lowest id first (a fixed order: no deadlock between two reschedules)."""
    locked = Professional.objects.select_for_update().filter(pk__in=set(ids)).order_by("pk")
    found = {p.pk: p for p in locked}
    missing = set(ids) - set(found)
    if missing:
        raise Professional.DoesNotExist(f"No professional with id {sorted(missing)}.")
    return found


def _lock_appointment(pk: int) -> Appointment:
    return (
        Appointment.objects.select_for_update(of=("self",))
        .select_related("clinic", "service", "professional")
        .get(pk=pk)
    )


def _save_guarded(appointment: Appointment, *, holder: str | None, update_fields: list[str] | None = None) -> None:
    """Save in a savepoint; the exclusion constraints' refusal becomes the domain error (the caller's transaction
    survives)."""
    try:
        with transaction.atomic():
            appointment.save(update_fields=update_fields)
    except IntegrityError as exc:
        constraint = _constraint_name(exc)
        if constraint == _PROFESSIONAL_OVERLAP:
            raise with_alternatives(
                SlotTaken(),
                service=appointment.service,
                professional=appointment.professional,
                start=appointment.start,
                holder=holder,
            ) from exc
        if constraint == _PATIENT_OVERLAP:
            raise PatientOverlap() from exc
        raise


def _constraint_name(exc: IntegrityError) -> str:
    diag = getattr(exc.__cause__, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if name:
        return name
    text = str(exc)
    return next((n for n in (_PROFESSIONAL_OVERLAP, _PATIENT_OVERLAP) if n in text), "")


def _stamp(appointment: Appointment, actor: Actor) -> None:
    appointment.updated_by_kind = actor.kind
    appointment.updated_by_user_id = actor.user_id


def _set_status(appointment: Appointment, status: str, action: str, actor: Actor) -> Appointment:
    before = _snapshot(appointment)
    appointment.status = status
    _stamp(appointment, actor)
    appointment.save(update_fields=["status", "updated_at", "updated_by_kind", "updated_by_user"])
    _record(appointment, action, actor, before=before)
    return appointment


def _snapshot(appointment: Appointment) -> dict[str, Any]:
    """The appointment's own scheduling fields: never notes, reasons or anything about the patient's health."""
    tz = appointment.clinic.tz
    return {
        "start": appointment.start.astimezone(tz).isoformat(),
        "end": appointment.end.astimezone(tz).isoformat(),
        "professional_id": appointment.professional_id,
        "service_id": appointment.service_id,
        "status": appointment.status,
    }


def _record(appointment: Appointment, action: str, actor: Actor, *, before: dict[str, Any], note: str = "") -> None:
    AppointmentChange.objects.create(
        clinic_id=appointment.clinic_id,
        appointment=appointment,
        action=action,
        actor_kind=actor.kind,
        actor_user_id=actor.user_id,
        before=before,
        after=_snapshot(appointment),
        note=note,
    )
    _audit_staff(appointment, action, actor, _audit_before(appointment, before), fields=_AUDITED_FIELDS)
    # The reminders follow the appointment in the same transaction: a moved or cancelled one never keeps the old ones.
    steps_plan(appointment)
    _announce(appointment, action)


# The staff audit trail (patients.audit): one entry per staff action, written here because every staff change — the
# form, the list actions, the agenda — comes through these services, and only they know the actor is staff.
# The patient's and Cecilia's own changes are not audited there; AppointmentChange keeps their history.
_AUDITED_FIELDS = ("start", "end", "professional", "service", "status", "cancellation_reason")
_AUDIT_NAMES = {
    AppointmentAction.BOOKED: "book",
    AppointmentAction.RESCHEDULED: "reschedule",
    AppointmentAction.CANCELLED: "cancel",
    AppointmentAction.CONFIRMED: "confirm",
    AppointmentAction.NO_SHOW: "no_show",
    AppointmentAction.COMPLETED: "complete",
    AppointmentAction.EDITED: "edit",
}


def _audit_before(appointment: Appointment, before: dict[str, Any]) -> dict[str, Any]:
    """`_snapshot`'s ids and codes before the change, as the audit shows them (names and labels)."""
    if not before:
        return {}
    shown: dict[str, Any] = {"start": before["start"], "end": before["end"]}
    shown["status"] = str(AppointmentStatus(before["status"]).label)
    for name, model in (("professional", Professional), ("service", Service)):
        pk = before[f"{name}_id"]
        current = getattr(appointment, name)
        shown[name] = str(current) if current.pk == pk else str(model.objects.filter(pk=pk).first() or pk)
    return shown


def _audit_staff(appointment: Appointment, action: str, actor: Actor, before: dict[str, Any], *, fields: Any) -> None:
    if not actor.is_staff:
        return
    audit_record(
        actor=actor.user,
        clinic_id=appointment.clinic_id,
        action=AuditAction.ACTION,
        obj=appointment,
        patient_id=appointment.patient_id,
        changes=audit_changes(before, audit_snapshot(appointment, fields=fields)),
        action_name=_AUDIT_NAMES.get(action, action),
    )


def _announce(appointment: Appointment, action: str) -> None:
    """Tell receivers after commit (never about a change that was rolled back); one failing receiver does not stop
    the others, nor undo the change."""

    def send() -> None:
        for receiver, result in appointment_changed.send_robust(
            sender=Appointment, appointment=appointment, action=action
        ):
            if isinstance(result, Exception):
                logger.error(
                    "appointment_changed receiver %s failed for appointment %s (%s)",
                    getattr(receiver, "__qualname__", receiver),
                    appointment.pk,
                    action,
                    exc_info=result,
                )

    transaction.on_commit(send)
