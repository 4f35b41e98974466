"""Which messages an appointment gets, when, and what they say.

`steps_plan` runs inside every booking service's transaction (scheduling.services), so an appointment's steps are
always those of its current time, status and the clinic's policy: a moved appointment's pending reminders are
skipped and new ones planned for the new time; a cancelled one's are skipped; a no-show gets its follow-up and a
completed visit its rating question. A step that has been sent is never planned, changed or sent again.

Times: a reminder due outside the clinic's sending window moves earlier, to the end of the window (a 48 h reminder
due at 22:00 goes at 20:00), or for a reminder due before the window opens, to the opening of that morning when that
still leaves half its notice, else to the evening before. Follow-ups (no-show, rating) move later, to the next
opening. Planning never creates a step already due: an appointment booked 20 hours ahead gets no 48 h reminder.

Sending (the sweep in conversations.outreach) checks everything again at send time, so a policy change that has not
been replanned yet, or an opt-out, is honoured anyway.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from scheduling.models import (
    Appointment,
    AppointmentStatus,
    ReminderRule,
    ReminderStep,
    ReminderTemplate,
    SkipReason,
    StepKind,
    StepStatus,
)
from scheduling.reminder_models import STEP_AWAITING_ANSWER, template_placeholders

if TYPE_CHECKING:
    from cecilia.models import Clinic
    from patients.models import Patient

OPEN_STATUSES = (AppointmentStatus.SCHEDULED, AppointmentStatus.CONFIRMED)
NO_SHOW_KEY = "no_show"
SATISFACTION_KEY = "satisfaction"
# Skipped for one of these reasons, a step comes back when the reason goes away (moved back, policy restored).
_REVIVABLE = (SkipReason.APPOINTMENT_CHANGED, SkipReason.POLICY_CHANGED, SkipReason.CANCELLED)
WEEKDAYS = ("segunda", "terça", "quarta", "quinta", "sexta", "sábado", "domingo")


# --------------------------------------------------------------------------------------------------------------
# The sending window
# --------------------------------------------------------------------------------------------------------------


def in_window(moment: datetime.datetime, clinic: Clinic) -> bool:
    local = moment.astimezone(clinic.tz).time()
    return clinic.reminder_window_start <= local <= clinic.reminder_window_end


def _at(date: datetime.date, time: datetime.time, clinic: Clinic) -> datetime.datetime:
    return datetime.datetime.combine(date, time, tzinfo=clinic.tz)


def reminder_due(start: datetime.datetime, hours_before: int, clinic: Clinic) -> datetime.datetime:
    """When a reminder `hours_before` the appointment is sent: then, or earlier, inside the sending window."""
    due = start - datetime.timedelta(hours=hours_before)
    local = due.astimezone(clinic.tz)
    if local.time() > clinic.reminder_window_end:
        return _at(local.date(), clinic.reminder_window_end, clinic)
    if local.time() < clinic.reminder_window_start:
        morning = _at(local.date(), clinic.reminder_window_start, clinic)
        if start - morning >= datetime.timedelta(hours=hours_before) / 2:
            return morning
        return _at(local.date() - datetime.timedelta(days=1), clinic.reminder_window_end, clinic)
    return due


def followup_due(after: datetime.datetime, clinic: Clinic) -> datetime.datetime:
    """The first moment from `after` inside the sending window (follow-ups can wait for the morning)."""
    local = after.astimezone(clinic.tz)
    if local.time() < clinic.reminder_window_start:
        return _at(local.date(), clinic.reminder_window_start, clinic)
    if local.time() > clinic.reminder_window_end:
        return _at(local.date() + datetime.timedelta(days=1), clinic.reminder_window_start, clinic)
    return after


def window_reopens(moment: datetime.datetime, clinic: Clinic) -> datetime.datetime:
    """When the window is next open from `moment` (`moment` itself when it is open)."""
    return followup_due(moment, clinic)


# --------------------------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Wanted:
    kind: str
    due_at: datetime.datetime
    rule: ReminderRule | None = None
    asks_confirmation: bool = False


def rules_for(appointment: Appointment, rules: Iterable[ReminderRule] | None = None) -> list[ReminderRule]:
    """The active reminder rules of the appointment's service, or the clinic's defaults when the service has none.

    A service with rules of its own (even all inactive: "no reminders for this one") never gets the defaults.
    """
    if rules is None:
        rules = ReminderRule.objects.filter(clinic_id=appointment.clinic_id).select_related("template")
    rules = list(rules)
    own = [rule for rule in rules if rule.service_id == appointment.service_id]
    chosen = own or [rule for rule in rules if rule.service_id is None]
    return [rule for rule in chosen if rule.active]


def _wanted(
    appointment: Appointment, now: datetime.datetime, rules: Iterable[ReminderRule] | None
) -> dict[str, _Wanted]:
    clinic = appointment.clinic
    status = appointment.status
    if status in OPEN_STATUSES:
        return {
            f"{rule.hours_before}h": _Wanted(
                StepKind.REMINDER,
                reminder_due(appointment.start, rule.hours_before, clinic),
                rule,
                rule.asks_confirmation,
            )
            for rule in rules_for(appointment, rules)
        }
    if status == AppointmentStatus.NO_SHOW and clinic.no_show_followup:
        return {NO_SHOW_KEY: _Wanted(StepKind.NO_SHOW_FOLLOWUP, followup_due(now, clinic), asks_confirmation=True)}
    if status == AppointmentStatus.COMPLETED and clinic.satisfaction_survey:
        after = max(now, appointment.end + datetime.timedelta(minutes=clinic.satisfaction_delay_minutes))
        return {SATISFACTION_KEY: _Wanted(StepKind.SATISFACTION, followup_due(after, clinic))}
    return {}


def steps_plan(
    appointment: Appointment,
    *,
    now: datetime.datetime | None = None,
    rules: Iterable[ReminderRule] | None = None,
    existing: list[ReminderStep] | None = None,
) -> None:
    """Bring the appointment's planned steps in line with it and its clinic's policy (see the module docstring).

    Call inside the transaction that changed the appointment. `rules` / `existing` let a replan of many
    appointments read them once.
    """
    now = now or timezone.now()
    wanted = _wanted(appointment, now, rules)
    if existing is None:
        existing = list(ReminderStep.objects.filter(appointment_id=appointment.pk))
    start = appointment.start
    seen: set[str] = set()
    for step in existing:
        want = wanted.get(step.key) if step.appointment_start == start else None
        if want is not None:
            seen.add(step.key)
        if step.status == StepStatus.SCHEDULED and want is None:
            _skip(step, _why_not_wanted(appointment, step))
        elif step.status == StepStatus.SCHEDULED:
            _follow(step, want)
        elif step.status == StepStatus.SKIPPED and step.skip_reason in _REVIVABLE and want and want.due_at > now:
            # Its reason went away (moved back, policy restored) while it is still of use: planned again.
            step.status, step.skip_reason = StepStatus.SCHEDULED, SkipReason.NONE
            _follow(step, want, also=["status", "skip_reason"])
    new = [
        ReminderStep(
            clinic_id=appointment.clinic_id,
            appointment_id=appointment.pk,
            kind=want.kind,
            key=key,
            appointment_start=start,
            rule=want.rule,
            asks_confirmation=want.asks_confirmation,
            due_at=want.due_at,
            created_at=now,
        )
        for key, want in wanted.items()
        # A reminder already due when planned is of no use (booked too close); a follow-up is due now or later.
        if key not in seen and (want.kind != StepKind.REMINDER or want.due_at > now)
    ]
    if new:
        # A concurrent planner that got there first is not an error: its row is the step.
        ReminderStep.objects.bulk_create(new, ignore_conflicts=True)


def _follow(step: ReminderStep, want: _Wanted, *, also: list[str] | None = None) -> None:
    """A pending step takes the policy's current time, rule and question (`also`: other fields already set)."""
    rule_id = want.rule.pk if want.rule is not None else None
    if also or (step.due_at, step.rule_id, step.asks_confirmation) != (want.due_at, rule_id, want.asks_confirmation):
        fields = {"due_at": want.due_at, "rule": want.rule, "asks_confirmation": want.asks_confirmation}
        fields |= {name: getattr(step, name) for name in also or []}
        # Conditional on the status read: a step the sweep claimed meanwhile has left, and keeps its status.
        was = StepStatus.SKIPPED if also else StepStatus.SCHEDULED
        ReminderStep.objects.filter(pk=step.pk, status=was).update(**fields, updated_at=timezone.now())


def _why_not_wanted(appointment: Appointment, step: ReminderStep) -> SkipReason:
    if appointment.status not in OPEN_STATUSES and step.kind == StepKind.REMINDER:
        return SkipReason.CANCELLED
    if step.appointment_start != appointment.start:
        return SkipReason.APPOINTMENT_CHANGED
    return SkipReason.POLICY_CHANGED


def _skip(step: ReminderStep, reason: SkipReason) -> None:
    step_skip(step, reason)


def step_skip(step: ReminderStep, reason: SkipReason) -> bool:
    """Skip a step still scheduled (or claimed by the sweep), e.g. the patient opted out; False if it moved on."""
    return bool(
        ReminderStep.objects.filter(pk=step.pk, status=StepStatus.SCHEDULED).update(
            status=StepStatus.SKIPPED, skip_reason=reason, updated_at=timezone.now()
        )
    )


def clinic_steps_replan(*, clinic_id: int, now: datetime.datetime | None = None, batch: int = 500) -> int:
    """Replan every future open appointment of a clinic after its policy changed; returns how many were looked at.

    In batches, each its own transaction with its appointments locked, so a booking running meanwhile either comes
    before (and is replanned here) or after (and plans with the new policy itself).
    """
    now = now or timezone.now()
    rules = list(ReminderRule.objects.filter(clinic_id=clinic_id).select_related("template"))
    last_id = 0
    count = 0
    while True:
        with transaction.atomic():
            appointments = list(
                Appointment.objects.select_for_update(of=("self",))
                .select_related("clinic")
                .filter(clinic_id=clinic_id, status__in=OPEN_STATUSES, start__gt=now, pk__gt=last_id)
                .order_by("pk")[:batch]
            )
            if not appointments:
                return count
            steps: dict[int, list[ReminderStep]] = {a.pk: [] for a in appointments}
            for step in ReminderStep.objects.filter(appointment_id__in=steps):
                steps[step.appointment_id].append(step)
            for appointment in appointments:
                steps_plan(appointment, now=now, rules=rules, existing=steps[appointment.pk])
        last_id = appointments[-1].pk
        count += len(appointments)


# --------------------------------------------------------------------------------------------------------------
# What a step says
# --------------------------------------------------------------------------------------------------------------

DEFAULT_BODIES: dict[str, str] = {
    "reminder": (
        "Olá, {nome}! 😊 Passando para lembrar do seu horário na *{clinica}*:\n"
        "👤 Paciente: {paciente}\n"
        "🩺 *{servico}* com *{profissional}*\n"
        "📅 *{data} às {hora}*\n"
        "📍 {endereco}\n"
        "📝 Preparo: {preparo}"
    ),
    "no_show_followup": (
        "Olá, {nome}! Sentimos sua falta hoje no horário de *{servico}* com *{profissional}*. Está tudo bem? 💙\n"
        "👤 Paciente: {paciente}"
    ),
    "satisfaction": (
        "Olá, {nome}! Obrigada por vir à *{clinica}* 💙\n"
        "De *1 a 5*, como foi o atendimento de *{servico}* com *{profissional}*? (5 = excelente)"
    ),
    "waitlist_offer": (
        "Olá, {nome}! Boa notícia: abriu um horário mais cedo 🎉\n"
        "👤 Paciente: {paciente}\n"
        "🩺 *{servico}* com *{profissional}*\n"
        "📅 *{data} às {hora}*\n"
        "⏳ Guardo para você até as {validade}."
    ),
}
# The answers each message offers: added by Cecília after the clinic's text, as buttons where the provider has
# them and as a numbered list for everyone (ids are the numbers, so a tap and a typed "1" read the same).
CHOICES: dict[str, tuple[tuple[str, str], ...]] = {
    "reminder": (("1", "Confirmo"), ("2", "Não poderei ir"), ("3", "Quero remarcar")),
    "no_show_followup": (("1", "Quero remarcar"), ("2", "Agora não")),
    "waitlist_offer": (("1", "Quero esse horário"), ("2", "Não, obrigado(a)")),
}
_CHOICE_LINES = {
    "reminder": "Você confirma? Responda com o número:\n1. ✅ Confirmo\n2. ❌ Não poderei ir\n3. 🔁 Quero remarcar",
    "no_show_followup": "Quer que eu marque um novo horário?\n1. Sim, quero remarcar\n2. Agora não",
    "waitlist_offer": "Quer ficar com ele?\n1. Sim, quero esse horário\n2. Não, obrigado(a)",
}
_PLACEHOLDER = re.compile(r"\{([a-z]+)\}")


@dataclass(frozen=True)
class Rendered:
    """A step's message: the text staff read (and the patient, on providers without buttons or templates)."""

    text: str
    buttons: tuple[tuple[str, str], ...] = ()
    template_name: str = ""  # Meta's approved template, when the clinic named one
    template_language: str = "pt_BR"
    template_parameters: tuple[str, ...] = ()


def render(body: str, values: Mapping[str, str]) -> str:
    """Fill the placeholders; a line whose placeholders are all empty is left out (no "Preparo:" without one)."""
    lines = []
    for line in body.splitlines():
        names = _PLACEHOLDER.findall(line)
        if names and not any(values.get(name, "").strip() for name in names):
            continue
        lines.append(_PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), line))
    return "\n".join(lines).strip()


def date_label(moment: datetime.datetime, clinic: Clinic) -> str:
    """ "sexta, 28/11": the day as patients say it, in the clinic's zone."""
    local = moment.astimezone(clinic.tz)
    return f"{WEEKDAYS[local.weekday()]}, {local:%d/%m}"


def placeholder_values(
    *,
    clinic: Clinic,
    patient: Patient,
    recipient: Patient,
    service_name: str,
    professional_name: str,
    start: datetime.datetime,
    preparation: str = "",
    held_until: datetime.datetime | None = None,
) -> dict[str, str]:
    local = start.astimezone(clinic.tz)
    address = ", ".join(part for part in (clinic.address.strip(), clinic.city.strip()) if part)
    return {
        "nome": recipient.first_name or "",
        "paciente": patient.first_name if recipient.pk != patient.pk else "",
        "profissional": professional_name,
        "servico": service_name,
        "data": date_label(start, clinic),
        "hora": f"{local:%H:%M}",
        "endereco": address,
        "preparo": preparation.strip(),
        "clinica": clinic.name,
        "validade": f"{held_until.astimezone(clinic.tz):%H:%M}" if held_until else "",
    }


def message_render(
    purpose: str, values: Mapping[str, str], *, template: ReminderTemplate | None, with_choices: bool
) -> Rendered:
    """The message of `purpose` from the clinic's template (or Cecília's standard text), with its answer choices."""
    body = template.body if template is not None else DEFAULT_BODIES[purpose]
    text = render(body, values)
    choices: tuple[tuple[str, str], ...] = ()
    if with_choices and purpose in CHOICES:
        text = f"{text}\n\n{_CHOICE_LINES[purpose]}"
        choices = CHOICES[purpose]
    if template is None or not template.whatsapp_template_name:
        return Rendered(text=text, buttons=choices)
    parameters = tuple(values.get(name, "") or "-" for name in template_placeholders(template.body))
    return Rendered(
        text=text,
        buttons=choices,
        template_name=template.whatsapp_template_name,
        template_language=template.whatsapp_template_language or "pt_BR",
        template_parameters=parameters,
    )


def clinic_template(clinic_id: int, purpose: str) -> ReminderTemplate | None:
    """The clinic's template for a follow-up purpose (the first by name), or None for Cecília's standard text."""
    return ReminderTemplate.objects.filter(clinic_id=clinic_id, purpose=purpose).order_by("name").first()


def step_render(step: ReminderStep, *, recipient: Patient) -> Rendered:
    """What `step` says to `recipient` (the patient, or their guardian) about its appointment as it is now."""
    appointment = step.appointment
    clinic = appointment.clinic
    values = placeholder_values(
        clinic=clinic,
        patient=appointment.patient,
        recipient=recipient,
        service_name=appointment.service.name,
        professional_name=appointment.professional.name,
        start=appointment.start,
        preparation=appointment.service.preparation_instructions,
    )
    if step.kind == StepKind.REMINDER:
        template = step.rule.template if step.rule is not None else None
        # A confirmed appointment is only reminded of; there is nothing left to ask.
        ask = step.asks_confirmation and appointment.status == AppointmentStatus.SCHEDULED
        return message_render("reminder", values, template=template, with_choices=ask)
    template = clinic_template(clinic.pk, step.kind)
    return message_render(step.kind, values, template=template, with_choices=True)


# --------------------------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------------------------

# A step can be answered from the moment its message is queued (a fast patient beats the delivery receipt).
_ANSWERABLE = (StepStatus.QUEUED, *STEP_AWAITING_ANSWER)


def step_answer(
    *,
    step_id: int,
    status: StepStatus,
    note: str = "",
    score: int | None = None,
    now: datetime.datetime | None = None,
) -> bool:
    """Record the patient's answer to a sent step (confirmed, cancelled, reschedule requested, answered with a note
    or a rating). False when it was answered already or never sent: the first answer stands."""
    fields: dict[str, object] = {"status": status, "answered_at": now or timezone.now(), "updated_at": timezone.now()}
    if note:
        fields["note"] = note.strip()[:500]
    if score is not None:
        fields["score"] = score
    return bool(ReminderStep.objects.filter(pk=step_id, status__in=_ANSWERABLE).update(**fields))
