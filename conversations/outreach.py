"""The reminder sweep: every minute (beat → `conversations.tasks.reminders_sweep`) Cecilia sends what is due.

One sweep, in this order:

1. **No-shows.** An open appointment `clinic.no_show_after_minutes` past its start (0: off) becomes a no-show through
   `appointment_mark_no_show`, which plans the rebooking follow-up itself. Staff's "completed" or "cancelled" is
   never overruled: only scheduled or confirmed appointments are looked at, under their row lock.
2. **Due steps.** Scheduled `ReminderStep`s due by now, oldest first, in batches claimed with
   `FOR UPDATE SKIP LOCKED` (the step and its appointment), so two sweeps, two beats or a sweep racing a booking
   never take the same step; each batch is one transaction, and every step in it ends queued (its message written,
   the send enqueued on commit), skipped (with its reason), or left for later (the clinic's sending window).
   Everything is checked again at send time: the appointment is still open and at the time the step was planned
   for, the clinic's current policy still wants the step, the appointment has not started, nobody opted out, the
   clinic's window is open (or, closed, reopens only after the start: skipped), a later reminder of the same
   appointment is not due too (catch-up after downtime: only the latest goes), the patient (or, for a dependent
   with no WhatsApp, their first guardian with one) can be reached, and on Meta after 24 h of silence the clinic
   named an approved template. `Message.reminder_step` is one-to-one: a second message for a step cannot exist.
3. **No answer.** Reminders still waiting for an answer when their appointment starts become `no_answer`;
   follow-ups after 72 hours.
4. **Hooks** (`SWEEP_HOOKS`): other periodic expiries that belong on the same minute (the waitlist's offers).

The work per batch is a fixed number of queries (steps with their appointment, patient, service, professional and
clinic; the clinics' rules and templates; the guardians; the conversations, created in bulk; one INSERT of all
messages; one UPDATE per outcome), whatever the batch size — see bench/reminders.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from django.db import connection, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Max, Q, Value
from django.utils import timezone

from cecilia.models import Clinic
from conversations.models import Conversation, Message, MessageAuthor
from conversations.outbox.queueing import message_build, messages_queue_outbound, window_open
from integrations.whatsapp.base import Template
from patients.models import Patient, PatientGuardian
from scheduling.errors import InvalidTransition
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    ReminderRule,
    ReminderStep,
    SkipReason,
    StepKind,
    StepStatus,
)
from scheduling.reminder_models import STEP_AWAITING_ANSWER
from scheduling.reminders import OPEN_STATUSES, in_window, rules_for, step_render, window_reopens
from scheduling.services import Actor, appointment_mark_no_show

logger = logging.getLogger(__name__)

# An appointment is marked a no-show only this long after the moment it became one: after an outage longer than
# that, or when a clinic turns the setting on, old appointments are left for staff (the follow-up says "hoje").
NO_SHOW_LOOKBACK = datetime.timedelta(hours=12)
# The longest no_show_after_minutes the clinic settings allow (24 h), for an index-friendly bound on start.
_NO_SHOW_MAX_DELAY = datetime.timedelta(hours=24)
# A follow-up (no-show, rating) waits this long for an answer before it is closed as unanswered.
FOLLOWUP_ANSWER_WAIT = datetime.timedelta(hours=72)
# A step due inside the window (20:00 sharp, its end) and picked up this little later is on time, not outside it.
SWEEP_GRACE = datetime.timedelta(minutes=5)
# The rule engine reads this key of the conversation's state: the appointment a reminder asked to confirm.
REMINDER_STATE_KEY = "reminder_appointment_id"
# What counts as "a later reminder of this appointment is due too" (catch-up): planned, or already out.
_LATER_COUNTS = tuple(s for s in StepStatus if s not in (StepStatus.SKIPPED, StepStatus.FAILED))


@dataclass
class SweepResult:
    no_shows: int = 0  # appointments marked no-show
    queued: int = 0  # steps whose message was written (and its send enqueued)
    skipped: dict[str, int] = field(default_factory=dict)  # skip reason → steps
    waiting: int = 0  # due, left scheduled until the clinic's sending window opens
    failed: int = 0  # steps whose message could not be written (a template that renders to nothing)
    no_answer: int = 0  # steps closed as unanswered
    hooks: dict[str, int] = field(default_factory=dict)  # hook name → what it reported
    complete: bool = True  # False: the deadline stopped the sweep with due steps left for the next one

    def as_dict(self) -> dict:
        return asdict(self)


def waitlist_offers_hook(now: datetime.datetime) -> int:
    """Lapsed waitlist offers passed on, and slots freed while the window was closed offered, with their messages
    (`conversations.waitlist_offers.waitlist_offers_expire`; how many offers were sent).

    Not `scheduling.waitlist.offers_expire` itself: that makes the offers, whose messages its caller must queue in
    the same transaction. The waitlist is written alongside this sweep: while that module or function is missing
    this does nothing, so neither has to be deployed first.
    """
    try:
        from conversations import waitlist_offers
    except ImportError:
        return 0
    expire = getattr(waitlist_offers, "waitlist_offers_expire", None)
    if expire is None:
        return 0
    sent = expire(now=now)
    return sent if isinstance(sent, int) else 0


# Run at the end of every sweep, each in its own try: one failing never stops the others nor the reminders.
SWEEP_HOOKS: list[tuple[str, Callable[[datetime.datetime], int]]] = [("waitlist_offers", waitlist_offers_hook)]


def outreach_sweep(
    *, now: datetime.datetime | None = None, batch: int = 500, deadline: float | None = None
) -> SweepResult:
    """Mark no-shows, send every due step, close unanswered ones, run the hooks (see the module docstring).

    Safe to run any number of times and concurrently. `deadline` (a `time.monotonic()` value) stops between batches;
    what is left is due still and goes on the next sweep.
    """
    now = now or timezone.now()
    result = SweepResult()
    result.no_shows = _no_shows_mark(now, batch)
    _due_steps_send(now, batch, deadline, result)
    result.no_answer = _unanswered_close(now)
    for name, hook in SWEEP_HOOKS:
        try:
            result.hooks[name] = hook(now)
        except Exception as exc:  # a hook's bug or outage must not stop the reminders; named by type only
            logger.error("Sweep hook %s failed (%s)", name, type(exc).__name__, exc_info=True)
    if result.queued or result.skipped or result.no_shows or result.no_answer:
        logger.info(
            "Reminder sweep: %s queued, %s skipped, %s waiting, %s no-shows, %s unanswered",
            result.queued,
            sum(result.skipped.values()),
            result.waiting,
            result.no_shows,
            result.no_answer,
        )
    return result


# --------------------------------------------------------------------------------------------------------------
# 1. No-shows
# --------------------------------------------------------------------------------------------------------------


def _no_shows_mark(now: datetime.datetime, batch: int) -> int:
    marked, last_id = 0, 0
    one_minute = Value(datetime.timedelta(minutes=1))
    while True:
        with transaction.atomic():
            due = list(
                Appointment.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(
                    status__in=OPEN_STATUSES,
                    clinic__no_show_after_minutes__gt=0,
                    start__lte=now,
                    start__gt=now - _NO_SHOW_MAX_DELAY - NO_SHOW_LOOKBACK,
                    pk__gt=last_id,
                )
                .alias(
                    no_show_at=ExpressionWrapper(
                        F("start") + F("clinic__no_show_after_minutes") * one_minute, output_field=DateTimeField()
                    )
                )
                .filter(no_show_at__lte=now, no_show_at__gt=now - NO_SHOW_LOOKBACK)
                .order_by("pk")[:batch]
            )
            for appointment in due:
                try:
                    with transaction.atomic():
                        appointment_mark_no_show(appointment=appointment, actor=Actor.system())
                    marked += 1
                except InvalidTransition:
                    pass  # changed meanwhile (staff completed or cancelled it), or not started by the clock
                except Exception as exc:  # one bad row must not hold back the others; by type only (no data)
                    logger.error("No-show of appointment %s failed (%s)", appointment.pk, type(exc).__name__)
        if len(due) < batch:
            return marked
        last_id = due[-1].pk


# --------------------------------------------------------------------------------------------------------------
# 2. Due steps
# --------------------------------------------------------------------------------------------------------------


def _due_steps_send(now: datetime.datetime, batch: int, deadline: float | None, result: SweepResult) -> None:
    # Keyset over (due_at, id): steps left waiting for the window are passed over, never claimed again this sweep.
    after: tuple[datetime.datetime, int] | None = None
    while True:
        if deadline is not None and time.monotonic() > deadline:
            result.complete = False
            return
        with transaction.atomic():
            steps = _claim(now, batch, after)
            if steps:
                _Batch(steps, now, result).run()
        if len(steps) < batch:
            return
        after = (steps[-1].due_at, steps[-1].pk)


def _claim(now: datetime.datetime, batch: int, after: tuple[datetime.datetime, int] | None) -> list[ReminderStep]:
    """Due steps with what their message needs (the clinics are read once per batch), locked with their appointments
    (a booking service changing one waits for this batch, then replans from what it sent); rows another sweep or a
    booking holds are skipped."""
    due = ReminderStep.objects.filter(status=StepStatus.SCHEDULED, due_at__lte=now)
    if after is not None:
        due = due.filter(Q(due_at__gt=after[0]) | Q(due_at=after[0], pk__gt=after[1]))
    return list(
        due.select_for_update(skip_locked=True, of=("self", "appointment"))
        .select_related(
            "appointment__patient",
            "appointment__service",
            "appointment__professional",
            "rule__template",
        )
        .order_by("due_at", "pk")[:batch]
    )


def _has_contact(patient: Patient) -> bool:
    return bool(patient.phone or patient.whatsapp_id)


@dataclass
class _Send:
    step: ReminderStep
    recipient: Patient


class _Batch:
    """One claimed batch: decide every step, then write all its outcomes with a handful of statements."""

    def __init__(self, steps: list[ReminderStep], now: datetime.datetime, result: SweepResult) -> None:
        self.steps, self.now, self.result = steps, now, result
        self.skips: dict[str, list[int]] = defaultdict(list)
        self.failed: list[int] = []
        self.sends: list[_Send] = []

    def run(self) -> None:
        appointments = [step.appointment for step in self.steps]
        # One instance per clinic (its settings and zone), not a copy of its many columns on every row.
        clinics = Clinic.objects.in_bulk({a.clinic_id for a in appointments})
        for appointment in appointments:
            appointment.clinic = clinics[appointment.clinic_id]
        self.rules = self._rules({a.clinic_id for a in appointments})
        self.guardians = self._guardians([a.patient for a in appointments if not _has_contact(a.patient)])
        self.latest_due = self._latest_due([s for s in self.steps if s.kind == StepKind.REMINDER])
        for step in self.steps:
            self._decide(step)
        self._queue()
        self._write()

    # -- reads, once per batch ---------------------------------------------------------------------------------

    def _rules(self, clinic_ids: set[int]) -> dict[int, list[ReminderRule]]:
        rules: dict[int, list[ReminderRule]] = defaultdict(list)
        for rule in ReminderRule.objects.filter(clinic_id__in=clinic_ids).select_related("template"):
            rules[rule.clinic_id].append(rule)
        return rules

    def _guardians(self, dependents: list[Patient]) -> dict[int, list[Patient]]:
        """Each dependent's guardians who can be reached on WhatsApp, in the order they were linked."""
        found: dict[int, list[Patient]] = defaultdict(list)
        if not dependents:
            return found
        links = (
            PatientGuardian.objects.filter(dependent_id__in={p.pk for p in dependents})
            .filter(Q(guardian__phone__isnull=False) | ~Q(guardian__whatsapp_id=""))
            .select_related("guardian")
            .order_by("pk")
        )
        for link in links:
            found[link.dependent_id].append(link.guardian)
        return found

    def _latest_due(self, reminders: list[ReminderStep]) -> dict[int, datetime.datetime]:
        """Per appointment, the due time of its latest reminder due by now for its current start (catch-up)."""
        if not reminders:
            return {}
        rows = (
            ReminderStep.objects.filter(
                appointment_id__in={s.appointment_id for s in reminders},
                kind=StepKind.REMINDER,
                due_at__lte=self.now,
                status__in=_LATER_COUNTS,
                appointment_start=F("appointment__start"),
            )
            .values("appointment_id")
            .annotate(latest=Max("due_at"))
            .values_list("appointment_id", "latest")
        )
        return dict(rows)

    # -- deciding one step ---------------------------------------------------------------------------------------

    def _decide(self, step: ReminderStep) -> None:
        appointment = step.appointment
        reason = self._reminder_problem(step) if step.kind == StepKind.REMINDER else self._followup_problem(step)
        if reason is None:
            recipient, reason = self._recipient(appointment.patient)
        latest = self.latest_due.get(appointment.pk, step.due_at)
        if reason is None and step.kind == StepKind.REMINDER and step.due_at < latest:
            reason = SkipReason.SUPERSEDED
        if reason is None and not self._window_open(step):
            if step.kind == StepKind.REMINDER and window_reopens(self.now, appointment.clinic) >= appointment.start:
                reason = SkipReason.OUTSIDE_WINDOW
            else:
                self.result.waiting += 1
                return
        if reason is not None:
            self.skips[reason].append(step.pk)
            return
        self.sends.append(_Send(step, recipient))

    def _reminder_problem(self, step: ReminderStep) -> SkipReason | None:
        appointment = step.appointment
        if appointment.status not in OPEN_STATUSES:
            return SkipReason.CANCELLED
        if appointment.start != step.appointment_start:
            return SkipReason.APPOINTMENT_CHANGED
        wanted = {f"{rule.hours_before}h": rule for rule in rules_for(appointment, self.rules[appointment.clinic_id])}
        rule = wanted.get(step.key)
        if rule is None:
            return SkipReason.POLICY_CHANGED  # turned off, and the replan has not reached this step yet
        if rule.pk != step.rule_id:
            step.rule = rule  # the rule was replaced with one of the same hours: its template is the current one
        if self.now >= appointment.start:
            return SkipReason.STARTED
        return None

    def _followup_problem(self, step: ReminderStep) -> SkipReason | None:
        appointment, clinic = step.appointment, step.appointment.clinic
        if step.kind == StepKind.NO_SHOW_FOLLOWUP:
            if appointment.status != AppointmentStatus.NO_SHOW:
                return SkipReason.CANCELLED  # no longer a no-show (staff corrected it)
            return None if clinic.no_show_followup else SkipReason.DISABLED
        if step.kind == StepKind.SATISFACTION:
            if appointment.status != AppointmentStatus.COMPLETED:
                return SkipReason.CANCELLED
            return None if clinic.satisfaction_survey else SkipReason.DISABLED
        return SkipReason.POLICY_CHANGED  # a kind this sweep does not know how to send

    def _recipient(self, patient: Patient) -> tuple[Patient | None, SkipReason | None]:
        """The patient, or for a dependent with no WhatsApp their first guardian who has one."""
        if patient.opt_out_automated:
            return None, SkipReason.OPTED_OUT
        if _has_contact(patient):
            return patient, None
        guardians = self.guardians.get(patient.pk, [])
        if not guardians:
            return None, SkipReason.NO_CONTACT
        willing = [g for g in guardians if not g.opt_out_automated]
        return (willing[0], None) if willing else (None, SkipReason.OPTED_OUT)

    def _window_open(self, step: ReminderStep) -> bool:
        clinic = step.appointment.clinic
        if in_window(self.now, clinic):
            return True
        # Planned for the window's last minute and picked up a few seconds after it: on time.
        return in_window(step.due_at, clinic) and self.now - step.due_at <= SWEEP_GRACE

    # -- writing -------------------------------------------------------------------------------------------------

    def _queue(self) -> None:
        conversations = _conversations_for([send.recipient for send in self.sends])
        messages: list[Message] = []
        asked: dict[int, int] = {}  # conversation → the appointment its reminder asks to confirm
        for send in self.sends:
            step = send.step
            conversation = conversations[send.recipient.pk]
            conversation.clinic = step.appointment.clinic  # window_open reads the provider; no query
            try:
                rendered = step_render(step, recipient=send.recipient)
                template = None
                if not window_open(conversation, now=self.now):
                    if not rendered.template_name:
                        self.skips[SkipReason.NO_TEMPLATE].append(step.pk)
                        continue
                    template = Template(
                        name=rendered.template_name,
                        language=rendered.template_language,
                        body_parameters=rendered.template_parameters,
                    )
                message = message_build(
                    conversation=conversation,
                    text=rendered.text,
                    author=MessageAuthor.SYSTEM,
                    buttons=rendered.buttons,
                    template=template,
                    reminder_step=step,
                    now=self.now,
                )
            except Exception as exc:  # a template that renders to nothing, a bug: this step fails, not the batch
                logger.error("Reminder step %s could not be rendered (%s)", step.pk, type(exc).__name__)
                self.failed.append(step.pk)
                continue
            messages.append(message)
            if step.kind == StepKind.REMINDER and rendered.buttons:
                asked[conversation.pk] = step.appointment_id
        written = {message.reminder_step_id for message in messages_queue_outbound(messages)}
        # A step whose message was there already (not written now) is done all the same: queued, never sent twice.
        self.queued = [message.reminder_step_id for message in messages]
        self.asked = asked
        self.result.queued += len(written)

    def _write(self) -> None:
        now = self.now
        stamp = timezone.now()
        if self.queued:
            ReminderStep.objects.filter(pk__in=self.queued, status=StepStatus.SCHEDULED).update(
                status=StepStatus.QUEUED, queued_at=now, updated_at=stamp
            )
        for reason, ids in self.skips.items():
            ReminderStep.objects.filter(pk__in=ids, status=StepStatus.SCHEDULED).update(
                status=StepStatus.SKIPPED, skip_reason=reason, updated_at=stamp
            )
            self.result.skipped[str(reason)] = self.result.skipped.get(str(reason), 0) + len(ids)
        if self.failed:
            ReminderStep.objects.filter(pk__in=self.failed, status=StepStatus.SCHEDULED).update(
                status=StepStatus.FAILED, updated_at=stamp
            )
            self.result.failed += len(self.failed)
        if self.asked:
            _state_remember_reminder(self.asked)


def _conversations_for(recipients: Iterable[Patient]) -> dict[int, Conversation]:
    """patient id → their conversation with the clinic, the missing ones created in one INSERT (a conversation a
    concurrent inbound message created meanwhile is simply read)."""
    patients = {p.pk: p for p in recipients}
    if not patients:
        return {}
    found = {c.patient_id: c for c in Conversation.objects.filter(patient_id__in=patients)}
    missing = [p for pk, p in patients.items() if pk not in found]
    if missing:
        Conversation.objects.bulk_create(
            [Conversation(clinic_id=p.clinic_id, patient_id=p.pk) for p in missing], ignore_conflicts=True
        )
        found |= {c.patient_id: c for c in Conversation.objects.filter(patient_id__in=[p.pk for p in missing])}
    return found


# One statement for the whole batch: the key merged into each row's state as it is when the UPDATE runs.
_STATE_REMEMBER_SQL = """
    UPDATE conversations_conversation AS c
       SET state = (CASE WHEN jsonb_typeof(c.state) = 'object' THEN c.state ELSE '{}'::jsonb END)
                   || jsonb_build_object(%s::text, asked.appointment_id)
      FROM unnest(%s::bigint[], %s::bigint[]) AS asked(conversation_id, appointment_id)
     WHERE c.id = asked.conversation_id
"""


def _state_remember_reminder(asked: dict[int, int]) -> None:
    """Set `state["reminder_appointment_id"]` of each conversation without reading the state first: a turn may be
    writing the rest of it meanwhile, and this touches only the one key (jsonb `||`)."""
    with connection.cursor() as cursor:
        cursor.execute(_STATE_REMEMBER_SQL, [REMINDER_STATE_KEY, list(asked), list(asked.values())])


# --------------------------------------------------------------------------------------------------------------
# 3. No answer
# --------------------------------------------------------------------------------------------------------------


def _unanswered_close(now: datetime.datetime) -> int:
    """Reminders nobody answered before the appointment started; follow-ups nobody answered in 72 hours."""
    awaiting = ReminderStep.objects.filter(status__in=STEP_AWAITING_ANSWER)
    stamp = timezone.now()
    reminders = awaiting.filter(kind=StepKind.REMINDER, appointment_start__lte=now).update(
        status=StepStatus.NO_ANSWER, updated_at=stamp
    )
    cutoff = now - FOLLOWUP_ANSWER_WAIT
    followups = (
        awaiting.exclude(kind=StepKind.REMINDER)
        .filter(appointment_start__lte=cutoff)  # the awaiting index's column: a follow-up comes after its start
        .filter(Q(sent_at__lte=cutoff) | Q(sent_at__isnull=True, queued_at__lte=cutoff))
        .update(status=StepStatus.NO_ANSWER, updated_at=stamp)
    )
    return reminders + followups
