"""The agenda page of the admin: one day (all professionals side by side, or one) or one professional's week.

Hooked into the admin by AppointmentAdmin.get_urls (scheduling/admin.py), behind `admin_site.admin_view` (active
staff, CSRF). The grid is built by `agenda_grid` from a fixed set of queries whatever the number of professionals
or appointments; free slots come from availability (`free_slots`), and every quick action calls the booking
services, so the agenda, the appointment form and the assistant obey the same rules and leave the same history.

Times on the page are the clinic's wall clock: a column is a local day, a block sits at its local start. Staff of
several clinics keep settings.TIME_ZONE for the rest of the admin (cecilia.middleware), so this page activates the
chosen clinic's zone itself.
"""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_POST

from cecilia.admin_scoping import role_allows_on
from cecilia.models import BusinessHours, Clinic
from cecilia.selectors import clinic_ids_allowing
from scheduling.availability import closed_days, free_slots
from scheduling.errors import BookingError
from scheduling.models import Appointment, AppointmentStatus, Professional, Service, TimeOff, WorkingHours
from scheduling.services import (
    Actor,
    appointment_cancel,
    appointment_complete,
    appointment_confirm,
    appointment_mark_no_show,
)

Interval = tuple[int, int]  # minutes after the local midnight of a column's day, [start, end)

# Empty time is offered in steps of this many minutes when no service is chosen (a service brings its own slots).
EMPTY_STEP_MINUTES = 30
# Rows shown when nobody in view works that day: a plausible clinic day instead of an empty strip.
DEFAULT_DAY = (8 * 60, 18 * 60)
DAY_MINUTES = 24 * 60


# --- The grid (reads) ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Shade:
    """Background of a column: time the professional works (`work`) or is away (`off`, with the reason)."""

    top: int
    length: int
    kind: str
    label: str = ""


@dataclasses.dataclass(frozen=True)
class FreeCell:
    """An empty slot staff can click to book: where it sits, when it starts, and the prefilled add form."""

    top: int
    length: int
    start: datetime.datetime
    label: str
    url: str


@dataclasses.dataclass(frozen=True)
class AppointmentBlock:
    appointment: Appointment
    top: int
    length: int
    time_label: str
    started: bool


@dataclasses.dataclass
class Column:
    professional: Professional
    day: datetime.date
    closed_reason: str = ""
    shades: list[Shade] = dataclasses.field(default_factory=list)
    free: list[FreeCell] = dataclasses.field(default_factory=list)
    blocks: list[AppointmentBlock] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class AgendaGrid:
    columns: list[Column]
    first_minute: int
    last_minute: int

    @property
    def minutes(self) -> int:
        return self.last_minute - self.first_minute

    @property
    def hours(self) -> list[tuple[int, str]]:
        """(offset from the top, label) of each full hour on the time axis."""
        return [(m - self.first_minute, f"{m // 60:02d}:00") for m in range(self.first_minute, self.last_minute, 60)]


def _day_bounds(day: datetime.date, tz: zoneinfo.ZoneInfo) -> tuple[datetime.datetime, datetime.datetime]:
    start = datetime.datetime.combine(day, datetime.time(0), tzinfo=tz)
    return start, datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(0), tzinfo=tz)


def _wall_minute(moment: datetime.datetime, day: datetime.date, tz: zoneinfo.ZoneInfo) -> int:
    """Minutes after `day`'s local midnight as a clock on the clinic's wall reads them, clipped to the day."""
    local = moment.astimezone(tz)
    if local.date() < day:
        return 0
    if local.date() > day:
        return DAY_MINUTES
    return local.hour * 60 + local.minute


def _minute(value: datetime.time) -> int:
    return value.hour * 60 + value.minute


def _intersect(first: Sequence[Interval], second: Sequence[Interval]) -> list[Interval]:
    out = [(max(a, c), min(b, d)) for a, b in first for c, d in second]
    return sorted((a, b) for a, b in out if a < b)


def _subtract(intervals: Sequence[Interval], cuts: Iterable[Interval]) -> list[Interval]:
    result = list(intervals)
    for cut_start, cut_end in cuts:
        pieces: list[Interval] = []
        for start, end in result:
            if cut_end <= start or cut_start >= end:
                pieces.append((start, end))
                continue
            if start < cut_start:
                pieces.append((start, cut_start))
            if cut_end < end:
                pieces.append((cut_end, end))
        result = pieces
    return result


def clinic_closed_days(clinic: Clinic, days: Sequence[datetime.date]) -> dict[datetime.date, str]:
    """The days among `days` the clinic is closed, with why — availability's rule (`closed_days`), holidays named in
    the page's language."""
    if not days:
        return {}
    language = "pt_BR" if (translation.get_language() or "").lower().startswith("pt") else "en_US"
    closed = closed_days(clinic, min(days), max(days), language=language)
    return {day: closed[day] or gettext("Clinic closed") for day in days if day in closed}


def _working_by_professional_weekday(professional_ids: list[int]) -> dict[tuple[int, int], list[Interval]]:
    hours: dict[tuple[int, int], list[Interval]] = {}
    for row in WorkingHours.objects.filter(professional_id__in=professional_ids).only(
        "professional_id", "weekday", "start", "end"
    ):
        hours.setdefault((row.professional_id, row.weekday), []).append((_minute(row.start), _minute(row.end)))
    return hours


def _business_by_weekday(clinic: Clinic) -> dict[int, list[Interval]] | None:
    """The clinic's opening intervals per weekday; None when it has none at all (then only working hours count)."""
    rows = list(BusinessHours.objects.filter(clinic=clinic).only("weekday", "start", "end"))
    if not rows:
        return None
    hours: dict[int, list[Interval]] = {weekday: [] for weekday in range(7)}
    for row in rows:
        hours[row.weekday].append((_minute(row.start), _minute(row.end)))
    return hours


def agenda_appointments(
    *, clinic: Clinic, professional_ids: list[int], start: datetime.datetime, end: datetime.datetime
) -> list[Appointment]:
    """The active appointments the grid shows, with what a block prints (one query)."""
    return list(
        Appointment.objects.filter(clinic=clinic, professional_id__in=professional_ids, start__lt=end, end__gt=start)
        .exclude(status=AppointmentStatus.CANCELLED)
        .select_related("patient", "service")
        .order_by("start")
    )


def agenda_grid(
    *,
    clinic: Clinic,
    professionals: Sequence[Professional],
    days: Sequence[datetime.date],
    service: Service | None = None,
    add_url: Callable[[Professional, datetime.datetime], str] | None = None,
    now: datetime.datetime | None = None,
) -> AgendaGrid:
    """The columns (each professional × each day) with working time, time off, closures, appointments and free slots.

    A fixed number of queries: working hours, business hours, time off, closed dates, appointments, and free slots
    when a service is chosen. `add_url` builds the link of a free slot (None: slots are shown but not links).
    """
    tz, now = clinic.tz, now or timezone.now()
    ids = [p.pk for p in professionals]
    range_start, range_end = _day_bounds(days[0], tz)[0], _day_bounds(days[-1], tz)[1]
    working = _working_by_professional_weekday(ids)
    business = _business_by_weekday(clinic)
    closed = clinic_closed_days(clinic, days)
    time_off = list(
        TimeOff.objects.filter(clinic=clinic, start__lt=range_end, end__gt=range_start)
        .filter(Q(professional__isnull=True) | Q(professional_id__in=ids))
        .only("professional_id", "start", "end", "reason")
    )
    appointments = agenda_appointments(clinic=clinic, professional_ids=ids, start=range_start, end=range_end)
    slots = (
        free_slots(service=service, start=range_start, end=range_end, enforce_policy=False, now=now)
        if service is not None
        else []
    )
    columns = []
    for day in days:
        day_start, day_end = _day_bounds(day, tz)
        for professional in professionals:
            column = Column(professional=professional, day=day, closed_reason=closed.get(day, ""))
            _fill_column(
                column,
                tz=tz,
                now=now,
                work=working.get((professional.pk, day.weekday()), []),
                business=None if business is None else business[day.weekday()],
                time_off=[t for t in time_off if t.professional_id in (None, professional.pk)],
                appointments=[
                    a
                    for a in appointments
                    if a.professional_id == professional.pk and a.start < day_end and a.end > day_start
                ],
                slots=[s for s in slots if s.professional_id == professional.pk and day_start <= s.start < day_end],
                service=service,
                add_url=add_url,
            )
            columns.append(column)
    return _frame(columns)


def _fill_column(
    column: Column,
    *,
    tz: zoneinfo.ZoneInfo,
    now: datetime.datetime,
    work: list[Interval],
    business: list[Interval] | None,
    time_off: list[TimeOff],
    appointments: list[Appointment],
    slots: list[Any],
    service: Service | None,
    add_url: Callable[[Professional, datetime.datetime], str] | None,
) -> None:
    day = column.day
    available = sorted(work) if business is None else _intersect(sorted(work), sorted(business))
    away = [
        (_wall_minute(t.start, day, tz), _wall_minute(t.end, day, tz), t.reason or gettext("Time off"))
        for t in time_off
    ]
    away = [(a, b, reason) for a, b, reason in away if a < b]
    if column.closed_reason:
        # A closed day still shows when the professional would have worked, under the closure.
        column.shades = [Shade(0, DAY_MINUTES, "off", column.closed_reason)] if work else []
        available = []
    else:
        column.shades = [Shade(a, b - a, "work") for a, b in available]
        column.shades += [Shade(a, b - a, "off", reason) for a, b, reason in away]
    for appointment in appointments:
        top = _wall_minute(appointment.start, day, tz)
        length = max(_wall_minute(appointment.end, day, tz) - top, 10)
        label = f"{appointment.start.astimezone(tz):%H:%M}–{appointment.end.astimezone(tz):%H:%M}"
        column.blocks.append(AppointmentBlock(appointment, top, length, label, appointment.start <= now))
    if service is not None:
        step = min(service.duration_minutes, service.slot_interval_minutes or service.duration_minutes)
        starts = [slot.start for slot in slots]
        column.free = [_free_cell(column, start, step, tz, add_url) for start in starts]
        return
    busy = [(b.top, b.top + b.length) for b in column.blocks] + [(a, b) for a, b, _reason in away]
    now_minute = _wall_minute(now, day, tz)
    for start, end in _subtract(available, busy):
        minute = start
        while minute < end:
            length = min(EMPTY_STEP_MINUTES, end - minute)
            if minute >= now_minute:
                moment = datetime.datetime.combine(day, datetime.time(minute // 60, minute % 60), tzinfo=tz)
                column.free.append(_free_cell(column, moment, length, tz, add_url))
            minute += length


def _free_cell(
    column: Column,
    start: datetime.datetime,
    length: int,
    tz: zoneinfo.ZoneInfo,
    add_url: Callable[[Professional, datetime.datetime], str] | None,
) -> FreeCell:
    top = _wall_minute(start, column.day, tz)
    url = add_url(column.professional, start) if add_url else ""
    return FreeCell(top=top, length=length, start=start, label=f"{start.astimezone(tz):%H:%M}", url=url)


def _frame(columns: list[Column]) -> AgendaGrid:
    """Rows from the earliest working hour (or appointment) to the latest, in whole hours."""
    edges = [(s.top, s.top + s.length) for c in columns for s in c.shades if s.kind == "work"]
    edges += [(b.top, b.top + b.length) for c in columns for b in c.blocks]
    edges += [(f.top, f.top + f.length) for c in columns for f in c.free]
    first, last = (min(a for a, _ in edges), max(b for _, b in edges)) if edges else DEFAULT_DAY
    first, last = first // 60 * 60, min(-(-last // 60) * 60, DAY_MINUTES)
    grid = AgendaGrid(columns=columns, first_minute=first, last_minute=max(last, first + 60))
    for column in columns:
        # Positions become offsets from the grid's first row; a closed day's overlay spans the shown rows only.
        column.shades = [_clip(s, grid) for s in column.shades if s.top < grid.last_minute]
        column.free = [dataclasses.replace(f, top=f.top - first) for f in column.free]
        column.blocks = [dataclasses.replace(b, top=b.top - first) for b in column.blocks]
    return grid


def _clip(shade: Shade, grid: AgendaGrid) -> Shade:
    top = max(shade.top, grid.first_minute)
    end = min(shade.top + shade.length, grid.last_minute)
    return dataclasses.replace(shade, top=top - grid.first_minute, length=max(end - top, 0))


# --- The page (views) --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AgendaQuery:
    """What the page shows, read from the query string; bad values fall back to defaults, never to an error."""

    clinic: Clinic
    day: datetime.date
    view: str  # "day" or "week"
    professional: Professional | None
    service: Service | None

    def params(self, **changes: Any) -> str:
        values = {
            "clinic": self.clinic.pk,
            "date": self.day.isoformat(),
            "view": self.view,
            "professional": self.professional.pk if self.professional else "",
            "service": self.service.pk if self.service else "",
            **changes,
        }
        return urlencode({k: v for k, v in values.items() if v not in ("", None)})


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


def _date(raw: str | None, default: datetime.date) -> datetime.date:
    try:
        return datetime.date.fromisoformat(raw) if raw else default
    except ValueError:
        return default


def agenda_clinics(request: HttpRequest) -> list[Clinic]:
    """Clinics whose appointments the user may see: their own; every clinic for superusers."""
    ids = clinic_ids_allowing(request.user, "view", "scheduling", "appointment")
    clinics = Clinic.objects.all() if ids is None else Clinic.objects.filter(pk__in=ids)
    return list(clinics.order_by("name"))


def _chosen(rows: Sequence[Any], raw: str | None) -> Any:
    """The row asked for by id: None when nothing was asked, 404 when it is not one of `rows` (another clinic's)."""
    if raw in (None, ""):
        return None
    wanted = _int(raw)
    for row in rows:
        if row.pk == wanted:
            return row
    raise Http404


def _safe_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure())
    return target if target and allowed else fallback


def _reconciliations(request: HttpRequest, clinic: Clinic) -> dict[str, Any] | None:
    """How many changes made in Google to Cecilia's events wait for staff here, and where to review them (no link
    for a role that may not open that list).

    Guarded: the agenda works without the Google Calendar app's reconciliation list (None: nothing shown).
    """
    try:
        from integrations.selectors import reconciliations_open

        url = reverse("admin:integrations_calendarreconciliation_changelist")
    except (ImportError, NoReverseMatch):
        return None
    ids = clinic_ids_allowing(request.user, "view", "integrations", "calendarreconciliation")
    may_open = request.user.has_perm("integrations.view_calendarreconciliation") and (ids is None or clinic.pk in ids)
    return {"count": reconciliations_open([clinic.pk]).count(), "url": url if may_open else ""}


@require_GET
def agenda(request: HttpRequest, *, model_admin: admin.ModelAdmin) -> HttpResponse:
    """The agenda grid. Query: clinic, date (ISO), view (day|week), professional, service — all optional."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    clinics = agenda_clinics(request)
    if not clinics:
        raise PermissionDenied
    clinic = _chosen(clinics, request.GET.get("clinic")) or clinics[0]
    with timezone.override(clinic.tz):
        return _agenda_page(request, model_admin, clinics, clinic)


def _agenda_page(
    request: HttpRequest, model_admin: admin.ModelAdmin, clinics: list[Clinic], clinic: Clinic
) -> HttpResponse:
    today = clinic.local_now().date()
    professionals = list(Professional.objects.filter(clinic=clinic).order_by("name"))
    services = list(Service.objects.filter(clinic=clinic, active=True).prefetch_related("professionals"))
    professional = _chosen(professionals, request.GET.get("professional"))
    service = _chosen(services, request.GET.get("service"))
    view = "week" if request.GET.get("view") == "week" else "day"
    query = AgendaQuery(
        clinic=clinic, day=_date(request.GET.get("date"), today), view=view, professional=professional, service=service
    )
    shown = [p for p in professionals if p.active]
    if service is not None:
        performing = {p.pk for p in service.professionals.all()}
        shown = [p for p in shown if p.pk in performing]
    if professional is not None:
        shown = [professional]
    elif view == "week":
        shown = shown[:1]  # a week is one professional's: the first, until staff pick another
    if view == "week":
        monday = query.day - datetime.timedelta(days=query.day.weekday())
        days = [monday + datetime.timedelta(days=n) for n in range(7)]
        step = datetime.timedelta(days=7)
    else:
        days, step = [query.day], datetime.timedelta(days=1)
    here = f"{request.path}?{query.params()}"
    may_add = role_allows_on(request, "add", Appointment, clinic) and model_admin.has_add_permission(request)
    grid = (
        agenda_grid(
            clinic=clinic,
            professionals=shown,
            days=days,
            service=service,
            add_url=_add_url_builder(clinic, service, here) if may_add else None,
        )
        if shown
        else None
    )
    may_change = role_allows_on(request, "change", Appointment, clinic) and model_admin.has_change_permission(request)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": gettext("Agenda"),
        "subtitle": clinic.name,
        "opts": model_admin.model._meta,
        "query": query,
        "grid": grid,
        "days": days,
        "today": today,
        "clinics": clinics,
        "professionals": professionals,
        "services": services,
        "here": here,
        "prev_url": f"{request.path}?{query.params(date=(query.day - step).isoformat())}",
        "next_url": f"{request.path}?{query.params(date=(query.day + step).isoformat())}",
        "today_url": f"{request.path}?{query.params(date=today.isoformat())}",
        "may_change": may_change,
        "may_edit_hours": role_allows_on(request, "change", Professional, clinic),
        "statuses": AppointmentStatus.choices,
        "range_label": _range_label(days),
        "reconciliations": _reconciliations(request, clinic),
    }
    return TemplateResponse(request, "admin/scheduling/agenda.html", context)


def _range_label(days: list[datetime.date]) -> str:
    if len(days) == 1:
        return f"{date_format(days[0], 'l')}, {date_format(days[0], 'DATE_FORMAT')}"
    return f"{date_format(days[0], 'j M')} – {date_format(days[-1], 'j M Y')}"


def _add_url_builder(
    clinic: Clinic, service: Service | None, here: str
) -> Callable[[Professional, datetime.datetime], str]:
    base = reverse("admin:scheduling_appointment_add")

    def build(professional: Professional, start: datetime.datetime) -> str:
        params = {"clinic": clinic.pk, "professional": professional.pk, "start": start.isoformat(), "next": here}
        if service is not None:
            params["service"] = service.pk
        return f"{base}?{urlencode(params)}"

    return build


# --- Quick actions (writes through the services) -----------------------------------------------------------------

QUICK_ACTIONS: dict[str, tuple[Callable[..., Appointment], Any]] = {
    "confirm": (appointment_confirm, _("The appointment of %(patient)s at %(time)s is confirmed.")),
    "cancel": (appointment_cancel, _("The appointment of %(patient)s at %(time)s is cancelled.")),
    "no_show": (appointment_mark_no_show, _("%(patient)s is marked as a no-show at %(time)s.")),
    "complete": (appointment_complete, _("The appointment of %(patient)s at %(time)s is completed.")),
}


@require_POST
def agenda_action(
    request: HttpRequest, appointment_id: int, action: str, *, model_admin: admin.ModelAdmin
) -> HttpResponse:
    """Confirm, cancel (with a reason), mark a no-show or complete one appointment; back to where staff were."""
    if action not in QUICK_ACTIONS:
        raise Http404
    appointment = model_admin.get_queryset(request).filter(pk=appointment_id).select_related("patient").first()
    if appointment is None:
        raise Http404
    if not model_admin.has_change_permission(request, appointment):
        raise PermissionDenied
    fallback = f"{reverse('admin:scheduling_appointment_agenda')}?{urlencode({'clinic': appointment.clinic_id})}"
    service, done = QUICK_ACTIONS[action]
    extra = {"reason": request.POST.get("reason", "").strip()[:200]} if action == "cancel" else {}
    clinic_tz = appointment.clinic.tz
    names = {
        "patient": appointment.patient.display_name,
        "time": date_format(appointment.start.astimezone(clinic_tz), "SHORT_DATETIME_FORMAT"),
    }
    try:
        service(appointment=appointment, actor=Actor.staff(request.user), **extra)
    except BookingError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done % names)
    return HttpResponseRedirect(_safe_next(request, fallback))
