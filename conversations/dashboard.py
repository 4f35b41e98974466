"""The admin index's dashboard: one clinic's day at the front desk and its last weeks, as typed read-only data.

Selectors only (conversations is the top of the dependency chain, so it reads scheduling, patients and cecilia).
Everything is computed for one clinic at a time, in that clinic's time zone: a user who sees several clinics (staff
of several, superusers) picks one with ?clinic=<id>. The number of queries is constant whatever the data size:
every list is one query with its joins, every chart one aggregate grouped by clinic-local day.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.models import Case, Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Value, When, Window
from django.db.models.functions import TruncDate
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from cecilia.models import ChannelState, Clinic, WhatsAppProvider
from cecilia.selectors import clinic_ids_allowing
from conversations.models import (
    AttentionReason,
    Conversation,
    ConversationOwner,
    Message,
    MessageAuthor,
    MessageDirection,
    MessageStatus,
    Turn,
    TurnOutcome,
)
from integrations.models import AccountState, CalendarAccount, ProfessionalSync
from scheduling.models import (
    Appointment,
    AppointmentAction,
    AppointmentChange,
    AppointmentSource,
    AppointmentStatus,
)
from scheduling.reminder_models import STEP_AWAITING_ANSWER, ReminderStep

logger = logging.getLogger(__name__)

PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30
CONFIRMATION_WINDOW = datetime.timedelta(hours=48)
# A queued message older than this was forgotten by the outbox (the relay should have picked it up by now).
OUTBOX_STALE_AFTER = datetime.timedelta(minutes=5)
FAILED_WINDOW = datetime.timedelta(hours=24)
# The lists are for the front desk's glance; the full lists are one link away.
MAX_WAITING = 25
MAX_PENDING = 50
# Turns whose outcome left the patient to staff: that day the assistant did not finish alone.
_LEFT_FOR_STAFF = (
    TurnOutcome.HANDED_OFF,
    TurnOutcome.STAFF_OWNS,
    TurnOutcome.ASSISTANT_OFF,
    TurnOutcome.STALE,
    TurnOutcome.FAILED,
)


@dataclass(frozen=True)
class ClinicChoice:
    id: int
    name: str
    selected: bool


@dataclass(frozen=True)
class AgendaItem:
    appointment_id: int
    start: datetime.datetime  # aware, in the clinic's zone
    end: datetime.datetime
    patient_name: str
    service_name: str
    status: str
    status_label: str
    confirmed: bool
    url: str


@dataclass(frozen=True)
class ProfessionalAgenda:
    professional_id: int
    professional_name: str
    items: tuple[AgendaItem, ...]


@dataclass(frozen=True)
class PendingConfirmation:
    appointment_id: int
    start: datetime.datetime  # aware, in the clinic's zone
    patient_name: str
    professional_name: str
    service_name: str
    asked: bool  # a reminder asking to confirm was sent and is waiting for the patient's answer
    url: str


@dataclass(frozen=True)
class WaitingConversation:
    conversation_id: int
    patient_name: str
    reason: str
    reason_label: str
    emergency: bool
    waiting_since: datetime.datetime | None  # the patient's last message, in the clinic's zone
    waiting_minutes: int | None
    url: str


@dataclass(frozen=True)
class Health:
    whatsapp_state: str
    whatsapp_label: str
    whatsapp_ok: bool
    whatsapp_since: datetime.datetime | None
    calendar_state: str
    calendar_label: str
    calendar_ok: bool
    calendar_errors: int  # active professionals whose Google Calendar cannot be read
    outbox_stale: int  # queued for longer than OUTBOX_STALE_AFTER
    failed_24h: int


@dataclass(frozen=True)
class Point:
    day: datetime.date
    value: float  # what the bar shows (a count, or a percentage 0–100)
    label: str  # the value in words for the table, e.g. "3 of 4"


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    description: str
    unit: str  # "percent" or "count"
    series: tuple[Series, ...]
    max_value: float  # the scale's top (100 for percentages)
    total_label: str  # the whole period in words


@dataclass(frozen=True)
class Dashboard:
    clinic: Clinic
    clinics: tuple[ClinicChoice, ...]
    today: datetime.date
    now: datetime.datetime
    days: int
    periods: tuple[int, ...]
    agenda: tuple[ProfessionalAgenda, ...]
    agenda_count: int
    agenda_url: str
    pending: tuple[PendingConfirmation, ...]
    pending_count: int
    waiting: tuple[WaitingConversation, ...]
    waiting_count: int
    inbox_url: str
    health: Health
    charts: tuple[Chart, ...]


def dashboard_for_user(
    *,
    user: Any,
    clinic_id: str | int | None = None,
    days: str | int | None = None,
    now: datetime.datetime | None = None,
) -> Dashboard | None:
    """The dashboard of one clinic the user may see, or None when they see none.

    `clinic_id` and `days` come straight from the query string: anything unknown, foreign or malformed falls back to
    the first clinic (by name) and 30 days, never an error. Only clinics where the user's role may view appointments
    count (both staff roles today; superusers see every clinic).
    """
    clinic = _clinic_pick(user=user, clinic_id=clinic_id)
    if clinic is None:
        return None
    chosen, clinics = clinic
    now = now or timezone.now()
    period = _period(days)
    today = timezone.localtime(now, chosen.tz).date()
    agenda, agenda_count = dashboard_agenda(clinic=chosen, day=today)
    pending, pending_count = dashboard_pending_confirmations(clinic=chosen, now=now)
    waiting, waiting_count = dashboard_waiting_conversations(clinic=chosen, now=now)
    return Dashboard(
        clinic=chosen,
        clinics=clinics,
        today=today,
        now=now,
        days=period,
        periods=PERIODS,
        agenda=agenda,
        agenda_count=agenda_count,
        agenda_url=f"{reverse('admin:scheduling_appointment_agenda')}?clinic={chosen.pk}&date={today.isoformat()}",
        pending=pending,
        pending_count=pending_count,
        waiting=waiting,
        waiting_count=waiting_count,
        inbox_url=_url_first(("admin:conversations_conversation_inbox", "admin:conversations_conversation_changelist")),
        health=dashboard_health(clinic=chosen, now=now),
        charts=dashboard_charts(clinic=chosen, today=today, days=period, now=now),
    )


def _clinic_pick(*, user: Any, clinic_id: str | int | None) -> tuple[Clinic, tuple[ClinicChoice, ...]] | None:
    allowed = clinic_ids_allowing(user, "view", "scheduling", "appointment")
    if allowed is not None and not allowed:
        return None
    clinics = Clinic.objects.order_by("name", "pk")
    if allowed is not None:
        clinics = clinics.filter(pk__in=allowed)
    rows = list(clinics)
    if not rows:
        return None
    wanted = str(clinic_id or "")
    chosen = next((c for c in rows if str(c.pk) == wanted), rows[0])
    choices = tuple(ClinicChoice(c.pk, c.name, c.pk == chosen.pk) for c in rows)
    return chosen, choices


def _period(days: str | int | None) -> int:
    try:
        value = int(days or DEFAULT_PERIOD)
    except (TypeError, ValueError):
        return DEFAULT_PERIOD
    return value if value in PERIODS else DEFAULT_PERIOD


def _url_first(names: tuple[str, ...], args: list[Any] | None = None) -> str:
    """The first of these admin pages that exists (the inbox and desk are being built; the change page is there)."""
    for name in names:
        try:
            return reverse(name, args=args)
        except NoReverseMatch:
            continue
    return ""


def _day_bounds(*, clinic: Clinic, day: datetime.date) -> tuple[datetime.datetime, datetime.datetime]:
    """The clinic-local day as an aware [start, end) range (23 or 25 hours long on a DST change)."""
    start = datetime.datetime.combine(day, datetime.time.min, clinic.tz)
    end = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time.min, clinic.tz)
    return start, end


def dashboard_agenda(*, clinic: Clinic, day: datetime.date) -> tuple[tuple[ProfessionalAgenda, ...], int]:
    """The clinic's appointments on its local `day`, cancelled ones left out, grouped by professional (by name).

    One query. Returns the groups and the number of appointments.
    """
    start, end = _day_bounds(clinic=clinic, day=day)
    rows = (
        Appointment.objects.filter(clinic=clinic, start__gte=start, start__lt=end)
        .exclude(status=AppointmentStatus.CANCELLED)
        .select_related("patient", "professional", "service")
        .order_by("professional__name", "professional_id", "start", "pk")
    )
    groups: dict[int, tuple[str, list[AgendaItem]]] = {}
    count = 0
    for appt in rows:
        count += 1
        _, items = groups.setdefault(appt.professional_id, (appt.professional.name, []))
        items.append(
            AgendaItem(
                appointment_id=appt.pk,
                start=timezone.localtime(appt.start, clinic.tz),
                end=timezone.localtime(appt.end, clinic.tz),
                patient_name=appt.patient.display_name,
                service_name=appt.service.name,
                status=appt.status,
                status_label=appt.get_status_display(),
                confirmed=appt.status == AppointmentStatus.CONFIRMED,
                url=reverse("admin:scheduling_appointment_change", args=[appt.pk]),
            )
        )
    agenda = tuple(ProfessionalAgenda(pid, name, tuple(items)) for pid, (name, items) in groups.items())
    return agenda, count


def dashboard_pending_confirmations(
    *, clinic: Clinic, now: datetime.datetime
) -> tuple[tuple[PendingConfirmation, ...], int]:
    """Appointments starting in the next 48 hours still only scheduled (the patient has not confirmed), soonest
    first, at most MAX_PENDING, with the total. `asked` tells whether a reminder asking to confirm is out and
    unanswered (staff may call instead) or not sent yet. One query: the total is a window count on the same rows.
    """
    awaiting = ReminderStep.objects.filter(
        appointment=OuterRef("pk"), asks_confirmation=True, status__in=STEP_AWAITING_ANSWER
    )
    rows = list(
        Appointment.objects.filter(
            clinic=clinic, status=AppointmentStatus.SCHEDULED, start__gte=now, start__lt=now + CONFIRMATION_WINDOW
        )
        .annotate(asked=Exists(awaiting), total=_window_count())
        .select_related("patient", "professional", "service")
        .order_by("start", "pk")[:MAX_PENDING]
    )
    pending = tuple(
        PendingConfirmation(
            appointment_id=appt.pk,
            start=timezone.localtime(appt.start, clinic.tz),
            patient_name=appt.patient.display_name,
            professional_name=appt.professional.name,
            service_name=appt.service.name,
            asked=appt.asked,
            url=reverse("admin:scheduling_appointment_change", args=[appt.pk]),
        )
        for appt in rows
    )
    return pending, rows[0].total if rows else 0


def _window_count() -> Window:
    # The total of the filtered rows, computed before LIMIT: a list and its count in one query.
    return Window(Count("pk"))


def dashboard_waiting_conversations(
    *, clinic: Clinic, now: datetime.datetime
) -> tuple[tuple[WaitingConversation, ...], int]:
    """Open conversations (not closed) that need a person: flagged for attention, or owned by staff.

    Emergencies first, then whoever has waited longest (the patient's last message, oldest first). At most
    MAX_WAITING, with the total; one query.
    """
    rows = list(
        Conversation.objects.filter(Q(needs_attention=True) | Q(owner=ConversationOwner.HUMAN), closed_at__isnull=True)
        .filter(clinic=clinic)
        .annotate(total=_window_count())
        .select_related("patient")
        .order_by(
            Case(When(needs_attention=True, attention_reason=AttentionReason.EMERGENCY, then=Value(0)), default=1),
            F("last_inbound_at").asc(nulls_last=True),
            "pk",
        )[:MAX_WAITING]
    )
    desk = _url_first(("admin:conversations_conversation_desk",), args=[0])
    waiting = []
    for conv in rows:
        emergency = conv.needs_attention and conv.attention_reason == AttentionReason.EMERGENCY
        if conv.needs_attention and conv.attention_reason:
            reason, reason_label = conv.attention_reason, conv.get_attention_reason_display()
        elif conv.owner == ConversationOwner.HUMAN:
            reason, reason_label = "staff", _("Staff are handling it")
        else:
            reason, reason_label = "attention", _("Flagged for attention")
        since = timezone.localtime(conv.last_inbound_at, clinic.tz) if conv.last_inbound_at else None
        minutes = max(0, int((now - conv.last_inbound_at).total_seconds() // 60)) if conv.last_inbound_at else None
        if desk:
            url = reverse("admin:conversations_conversation_desk", args=[conv.pk])
        else:
            url = reverse("admin:conversations_conversation_change", args=[conv.pk])
        waiting.append(
            WaitingConversation(
                conv.pk, conv.patient.display_name, reason, reason_label, emergency, since, minutes, url
            )
        )
    return tuple(waiting), rows[0].total if rows else 0


def dashboard_health(*, clinic: Clinic, now: datetime.datetime) -> Health:
    """WhatsApp (the clinic row's channel state), Google Calendar (the account and unreadable calendars) and the
    outbox (queued and forgotten, failed in the last 24 hours). Three queries."""
    console = clinic.whatsapp_provider == WhatsAppProvider.CONSOLE
    whatsapp_ok = console or clinic.channel_state == ChannelState.OPEN
    whatsapp_label = _("Test console (no real WhatsApp)") if console else clinic.get_channel_state_display()
    account_state = (
        CalendarAccount.objects.filter(clinic=clinic).values_list("state", flat=True).first()
        or AccountState.NOT_CONFIGURED
    )
    calendar_errors = (
        ProfessionalSync.objects.filter(clinic=clinic, professional__active=True)
        .exclude(last_error="")
        .exclude(professional__google_calendar_id="")
        .count()
    )

    # Two counts in one query, each on its own partial index (queued messages; failed ones by clinic and time): a
    # clinic's tens of thousands of old failed sends are never read.
    def _count(**filters: Any) -> Subquery:
        rows = Message.objects.filter(clinic=clinic, **filters).order_by().values("clinic")
        return Subquery(rows.annotate(n=Count("pk")).values("n")[:1])

    outbox = (
        Clinic.objects.filter(pk=clinic.pk)
        .annotate(
            stale=_count(status=MessageStatus.QUEUED, created_at__lt=now - OUTBOX_STALE_AFTER),
            failed=_count(status=MessageStatus.FAILED, failed_at__gte=now - FAILED_WINDOW),
        )
        .values("stale", "failed")
        .first()
    ) or {}
    return Health(
        whatsapp_state="console" if console else clinic.channel_state,
        whatsapp_label=str(whatsapp_label),
        whatsapp_ok=whatsapp_ok,
        whatsapp_since=timezone.localtime(clinic.channel_state_since, clinic.tz)
        if clinic.channel_state_since
        else None,
        calendar_state=account_state,
        calendar_label=str(AccountState(account_state).label),
        calendar_ok=account_state in (AccountState.OK, AccountState.NOT_CONFIGURED, AccountState.UNCHECKED)
        and not calendar_errors,
        calendar_errors=calendar_errors,
        outbox_stale=outbox.get("stale") or 0,
        failed_24h=outbox.get("failed") or 0,
    )


def dashboard_charts(*, clinic: Clinic, today: datetime.date, days: int, now: datetime.datetime) -> tuple[Chart, ...]:
    """The five charts over the `days` clinic-local days ending today (today included). Four queries, and two more
    when the days before yesterday are not in the cache yet (`_settled_cached_recent_live`)."""
    day_list = [today - datetime.timedelta(days=n) for n in range(days - 1, -1, -1)]
    start, _end = _day_bounds(clinic=clinic, day=day_list[0])
    end = _day_bounds(clinic=clinic, day=today)[1]
    return (
        _chart_assistant_alone(clinic=clinic, day_list=day_list),
        _chart_bookings(clinic=clinic, day_list=day_list, start=start, end=end),
        *_charts_attendance(clinic=clinic, day_list=day_list, start=start, end=end, now=now),
        _chart_messages(clinic=clinic, day_list=day_list),
    )


# The two message charts read every message of the period: a million rows over 90 days for a clinic with 11,000
# messages a day (bench/inbox), most of a second. Their days before yesterday no longer change (messages and turns
# are never moved to another day; retention and anonymisation erase texts, not rows), so those counts are kept in the
# cache until the clinic's day ends, and only yesterday's and today's rows are read on each view (the clinic +
# created_at index). Yesterday stays live: just after midnight a turn of 23:59 may still be running, or be closed as
# failed later by turns_recover, and a message received at 23:59 may not be committed yet.
_PAST_DAYS_TTL_SECONDS = 24 * 3600


def _settled_cached_recent_live(
    kind: str,
    count: Callable[[datetime.datetime, datetime.datetime], dict[Any, Any]],
    *,
    clinic: Clinic,
    day_list: list[datetime.date],
) -> dict[Any, Any]:
    """`count(start, end)` over the days of `day_list` (the last is today), the days before yesterday from the cache.
    The two parts share no day: they split at the clinic's midnight and `count` groups by clinic-local day."""
    start = _day_bounds(clinic=clinic, day=day_list[0])[0]
    end = _day_bounds(clinic=clinic, day=day_list[-1])[1]
    live_start = max(start, _day_bounds(clinic=clinic, day=day_list[-1] - datetime.timedelta(days=1))[0])
    if live_start <= start:
        return count(start, end)  # a one- or two-day period: nothing settled to keep
    key = (
        f"dashboard:{kind}:v2:{clinic.pk}:{clinic.created_at.timestamp():.6f}:{clinic.timezone}"
        f":{start.isoformat()}:{live_start.isoformat()}"
    )
    try:
        settled = cache.get(key)
    except Exception:
        settled = None
    if not isinstance(settled, dict):
        settled = count(start, live_start)
        try:
            cache.set(key, settled, _PAST_DAYS_TTL_SECONDS)
        except Exception:
            logger.warning("Cache unavailable; the dashboard's past days are read again next time")
    return {**settled, **count(live_start, end)}


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def _pct_text(part: int, whole: int) -> str:
    """The percentage as staff read it in their language: "25", "33,3" (pt-BR decimal comma)."""
    pct = _percent(part, whole)
    return number_format(pct, decimal_pos=0 if pct.is_integer() else 1)


def _ratio_points(day_list: list[datetime.date], counts: dict[datetime.date, tuple[int, int]]) -> tuple[Point, ...]:
    points = []
    for day in day_list:
        part, whole = counts.get(day, (0, 0))
        label = _("%(part)s of %(whole)s (%(pct)s%%)") % {"part": part, "whole": whole, "pct": _pct_text(part, whole)}
        points.append(Point(day, _percent(part, whole), label if whole else _("no data")))
    return tuple(points)


def _total_ratio(counts: dict[datetime.date, tuple[int, int]]) -> str:
    part = sum(p for p, _w in counts.values())
    whole = sum(w for _p, w in counts.values())
    if not whole:
        return _("No data in this period")
    return _("%(pct)s%% in the period (%(part)s of %(whole)s)") % {
        "pct": _pct_text(part, whole),
        "part": part,
        "whole": whole,
    }


def _chart_assistant_alone(*, clinic: Clinic, day_list: list[datetime.date]) -> Chart:
    """Share of conversations the assistant finished without a person, per clinic-local day.

    A conversation counts on a day when the patient wrote in it that day (at least one inbound message). It was
    finished without a person when, that same day, the assistant replied (at least one message authored by the
    assistant), no staff member wrote in it, and no assistant turn started that day ended by leaving the patient to
    staff (handed off, staff owning it, assistant off, stale messages, failure). Reminder and system messages alone
    do not count as an answer. One query: a per-conversation-day aggregate wrapped in a per-day one.
    """
    counts = _settled_cached_recent_live(
        "assistant-alone",
        lambda lo, hi: _assistant_alone_counts(clinic=clinic, start=lo, end=hi),
        clinic=clinic,
        day_list=day_list,
    )
    return Chart(
        key="assistant_alone",
        title=_("Finished without a person"),
        description=_(
            "Of the conversations where the patient wrote that day, the share the assistant answered with no staff "
            "message and no hand-off."
        ),
        unit="percent",
        series=(Series("alone", _("Finished by the assistant"), _ratio_points(day_list, counts)),),
        max_value=100,
        total_label=_total_ratio(counts),
    )


def _assistant_alone_counts(
    *, clinic: Clinic, start: datetime.datetime, end: datetime.datetime
) -> dict[datetime.date, tuple[int, int]]:
    """(finished alone, active) conversations per clinic-local day in [start, end)."""
    message, turn = Message._meta.db_table, Turn._meta.db_table
    sql = f"""
        WITH per_conversation AS (
            SELECT conversation_id, (created_at AT TIME ZONE %s)::date AS day,
                   count(*) FILTER (WHERE direction = %s) AS inbound,
                   count(*) FILTER (WHERE author = %s) AS staff,
                   count(*) FILTER (WHERE author = %s) AS ai
            FROM {message}
            WHERE clinic_id = %s AND created_at >= %s AND created_at < %s
            GROUP BY 1, 2
        ), left_for_staff AS (
            SELECT DISTINCT conversation_id, (started_at AT TIME ZONE %s)::date AS day
            FROM {turn}
            WHERE clinic_id = %s AND outcome = ANY(%s) AND started_at >= %s AND started_at < %s
        )
        SELECT c.day, count(*) AS active,
               count(*) FILTER (WHERE c.staff = 0 AND c.ai > 0 AND l.conversation_id IS NULL) AS alone
        FROM per_conversation c LEFT JOIN left_for_staff l USING (conversation_id, day)
        WHERE c.inbound > 0
        GROUP BY c.day
    """  # noqa: S608 - table names come from our models; every value is a parameter
    tz = str(clinic.timezone)
    params = [
        tz,
        MessageDirection.INBOUND.value,
        MessageAuthor.STAFF.value,
        MessageAuthor.AI.value,
        clinic.pk,
        start,
        end,
        tz,
        clinic.pk,
        [o.value for o in _LEFT_FOR_STAFF],
        start,
        end,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {day: (alone, active) for day, active, alone in cursor.fetchall()}


def _daily_counts(
    rows: QuerySet, field: str, *, clinic: Clinic, start: datetime.datetime, end: datetime.datetime
) -> dict[tuple[datetime.date, str], int]:
    """Rows created in [start, end) counted per clinic-local day and `field` value, in one grouped query."""
    grouped = (
        rows.filter(created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at", tzinfo=clinic.tz))
        .values("day", field)
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {(row["day"], row[field]): row["n"] for row in grouped}


def _count_series(
    day_list: list[datetime.date], rows: dict[tuple[datetime.date, str], int], key: str, label: str
) -> Series:
    return Series(key, label, tuple(Point(d, rows.get((d, key), 0), str(rows.get((d, key), 0))) for d in day_list))


def _count_chart(*, key: str, title: str, description: str, series: tuple[Series, ...]) -> Chart:
    # Bars are stacked: the scale's top is the busiest day's sum over the series.
    top = max((sum(p.value for p in day) for day in zip(*(s.points for s in series), strict=True)), default=0)
    total = sum(p.value for s in series for p in s.points)
    parts = ", ".join(f"{s.label}: {int(sum(p.value for p in s.points))}" for s in series)
    return Chart(
        key=key,
        title=title,
        description=description,
        unit="count",
        series=series,
        max_value=max(top, 1),
        total_label=_("%(total)s in the period (%(parts)s)") % {"total": int(total), "parts": parts},
    )


def _chart_bookings(
    *, clinic: Clinic, day_list: list[datetime.date], start: datetime.datetime, end: datetime.datetime
) -> Chart:
    """Appointments booked each clinic-local day (by when they were booked, cancelled later or not), per channel."""
    counts = _daily_counts(Appointment.objects.filter(clinic=clinic), "source", clinic=clinic, start=start, end=end)
    return _count_chart(
        key="bookings",
        title=_("Bookings by channel"),
        description=_("Appointments booked each day, by where they were booked."),
        series=tuple(_count_series(day_list, counts, s.value, str(s.label)) for s in AppointmentSource),
    )


def _charts_attendance(
    *,
    clinic: Clinic,
    day_list: list[datetime.date],
    start: datetime.datetime,
    end: datetime.datetime,
    now: datetime.datetime,
) -> tuple[Chart, Chart]:
    """Confirmation and no-show rates by the appointment's clinic-local day; one query for both.

    Confirmation rate: of the appointments of the day that were not cancelled, those the patient (or staff)
    confirmed — confirmed now, or confirmed once and since completed or missed (the change history keeps it).
    No-show rate: of the appointments of the day that have started and were not cancelled, those marked no-show.
    """
    confirmed_once = AppointmentChange.objects.filter(appointment=OuterRef("pk"), action=AppointmentAction.CONFIRMED)
    rows = (
        Appointment.objects.filter(clinic=clinic, start__gte=start, start__lt=end)
        .exclude(status=AppointmentStatus.CANCELLED)
        .annotate(day=TruncDate("start", tzinfo=clinic.tz))
        .values("day")
        .annotate(
            booked=Count("pk"),
            confirmed=Count("pk", filter=Q(status=AppointmentStatus.CONFIRMED) | Q(Exists(confirmed_once))),
            started=Count("pk", filter=Q(start__lt=now)),
            no_show=Count("pk", filter=Q(status=AppointmentStatus.NO_SHOW)),
        )
        .order_by()
    )
    confirmation, no_show = {}, {}
    for r in rows:
        confirmation[r["day"]] = (r["confirmed"], r["booked"])
        no_show[r["day"]] = (r["no_show"], r["started"])
    return (
        Chart(
            key="confirmation_rate",
            title=_("Confirmation rate"),
            description=_("Of each day's appointments (cancelled ones left out), the share that was confirmed."),
            unit="percent",
            series=(Series("confirmed", _("Confirmed appointments"), _ratio_points(day_list, confirmation)),),
            max_value=100,
            total_label=_total_ratio(confirmation),
        ),
        Chart(
            key="no_show_rate",
            title=_("No-show rate"),
            description=_("Of each day's appointments that have started (cancelled ones left out), the share missed."),
            unit="percent",
            series=(Series("no_show", _("Missed"), _ratio_points(day_list, no_show)),),
            max_value=100,
            total_label=_total_ratio(no_show),
        ),
    )


def _chart_messages(*, clinic: Clinic, day_list: list[datetime.date]) -> Chart:
    """WhatsApp messages each clinic-local day: received from patients and sent (assistant, staff, reminders)."""
    counts = _settled_cached_recent_live(
        "messages",
        lambda lo, hi: _daily_counts(
            Message.objects.filter(clinic=clinic), "direction", clinic=clinic, start=lo, end=hi
        ),
        clinic=clinic,
        day_list=day_list,
    )
    return _count_chart(
        key="messages",
        title=_("Messages per day"),
        description=_("WhatsApp messages received from patients and sent to them."),
        series=(
            _count_series(day_list, counts, MessageDirection.INBOUND.value, _("From patients")),
            _count_series(day_list, counts, MessageDirection.OUTBOUND.value, _("To patients")),
        ),
    )
