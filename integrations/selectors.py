"""Reads other apps make of the integrations. Kept small and typed: availability calls `calendar_busy` per search."""

from __future__ import annotations

import datetime
import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import QuerySet

from integrations.google_calendar import CalendarError, CredentialsRevoked
from integrations.models import CalendarEventLink, CalendarReconciliation, ExternalBusy

logger = logging.getLogger(__name__)

Interval = tuple[datetime.datetime, datetime.datetime]
_DAY = datetime.timedelta(days=1)


def calendar_busy(
    professional_ids: Sequence[int], start: datetime.datetime, end: datetime.datetime
) -> dict[int, list[Interval]]:
    """Busy intervals from each professional's Google Calendar that overlap [start, end), by professional id.

    Fail safe: a professional whose calendar is configured but cannot be read right now (Google down or slow, the
    calendar not shared) is busy for the whole window (one interval [start, end)), so no slot is offered from a
    calendar we could not check. Revoked or expired credentials are different: they last until someone reconnects,
    and the local agenda is the source of truth, so bookings go on with what the sync last pulled (the professional's
    own events) while the admin shows the problem on every page. Professionals without a calendar are absent.

    Sources: Google's free/busy for the calendars (one request per clinic, answers cached briefly), minus our own
    events (they are appointments, which availability already counts, and one being moved must not block its own
    new time), plus the professional's own events pulled by the sync. Never raises.
    """
    if not professional_ids or end <= start:
        return {}
    try:
        return _calendar_busy(professional_ids, start, end)
    except Exception:
        logger.exception("Google Calendar busy times failed; treating the professionals' calendars as busy")
        return _all_busy(professional_ids, start, end)


def reconciliations_open(clinic_ids: Iterable[int] | None) -> QuerySet[CalendarReconciliation]:
    """Changes made in Google to Cecilia's events still waiting for staff, oldest first; None means every clinic."""
    rows = CalendarReconciliation.objects.filter(resolved_at__isnull=True).select_related(
        "appointment__patient", "appointment__service", "professional"
    )
    if clinic_ids is not None:
        rows = rows.filter(clinic_id__in=list(clinic_ids))
    return rows.order_by("created_at", "pk")


def _calendar_busy(
    professional_ids: Sequence[int], start: datetime.datetime, end: datetime.datetime
) -> dict[int, list[Interval]]:
    from scheduling.models import Professional

    professionals = list(
        Professional.objects.filter(pk__in=list(professional_ids))
        .exclude(google_calendar_id="")
        .values_list("pk", "clinic_id", "google_calendar_id")
    )
    by_clinic: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for pk, clinic_id, calendar_id in professionals:
        by_clinic[clinic_id].append((pk, calendar_id))
    result: dict[int, list[Interval]] = {}
    for clinic_id, members in by_clinic.items():
        result.update(_clinic_busy(clinic_id, members, start, end))
    if result:
        for pk, busy_start, busy_end in ExternalBusy.objects.filter(
            professional_id__in=list(result), start__lt=end, end__gt=start
        ).values_list("professional_id", "start", "end"):
            result[pk].append((max(busy_start, start), min(busy_end, end)))
    return {pk: _merge(intervals) for pk, intervals in result.items()}


def _clinic_busy(
    clinic_id: int, members: list[tuple[int, str]], start: datetime.datetime, end: datetime.datetime
) -> dict[int, list[Interval]]:
    from integrations import calendar_sync

    credentials = calendar_sync.clinic_credentials(clinic_id)
    if credentials is None:
        return {pk: [] for pk, _ in members}  # Google not set up: only pulled rows (none) count
    account = calendar_sync.account_get(clinic_id)
    if calendar_sync.account_revoked(account, credentials):
        return {pk: [] for pk, _ in members}  # revoked: the last pulled events count, no call to Google
    # Asked by whole UTC days, so the many searches of one day share cache entries.
    window_start = start.astimezone(datetime.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    window_end = end.astimezone(datetime.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if window_end < end:
        window_end += _DAY
    calendars = sorted({calendar_id for _, calendar_id in members})
    answers = _free_busy_cached(clinic_id, credentials, calendars, window_start, window_end)
    ours = _our_events(clinic_id, calendars, start, end)
    result: dict[int, list[Interval]] = {}
    for pk, calendar_id in members:
        answer = answers[calendar_id]
        if answer.get("revoked"):
            result[pk] = []
            continue
        if answer.get("error"):
            result[pk] = [(start, end)]
            continue
        busy = [(_dt(a), _dt(b)) for a, b in answer["busy"]]
        busy = _subtract(busy, ours.get(calendar_id, []))
        result[pk] = [(max(a, start), min(b, end)) for a, b in busy if a < end and b > start]
    _errors_record(clinic_id, members, answers)
    return result


def _free_busy_cached(
    clinic_id: int, credentials: Any, calendars: list[str], start: datetime.datetime, end: datetime.datetime
) -> dict[str, dict[str, Any]]:
    """Each calendar's answer ({"busy": [[iso, iso], …]} or {"error": why}), from the cache or one request."""
    from integrations import calendar_sync

    keys = {
        cid: f"gcal:fb:{clinic_id}:{credentials.fingerprint}:{hashlib.sha256(cid.encode()).hexdigest()[:16]}:"
        f"{start:%Y%m%d}:{end:%Y%m%d}"
        for cid in calendars
    }
    try:
        cached = cache.get_many(list(keys.values()))
    except Exception:
        logger.warning("Cache unavailable for Google free/busy; asking Google")
        cached = {}
    answers = {cid: cached[key] for cid, key in keys.items() if key in cached}
    missing = [cid for cid in calendars if cid not in answers]
    if not missing:
        return answers
    error: CalendarError | None = None
    try:
        fetched = calendar_sync.calendar_client(credentials, busy=True).free_busy(missing, start, end)
    except CalendarError as exc:
        error = exc
        failed = {"revoked": True} if isinstance(exc, CredentialsRevoked) else {"error": str(exc)}
        fresh = {cid: failed for cid in missing}
    else:
        fresh = {
            cid: {"error": fetched.errors[cid]}
            if cid in fetched.errors
            else {"busy": [[a.isoformat(), b.isoformat()] for a, b in fetched.busy.get(cid, [])]}
            for cid in missing
        }
    calendar_sync.account_record(clinic_id=clinic_id, credentials=credentials, error=error)
    try:
        # Failures are cached too: a Google outage must not make every search wait for the timeout.
        cache.set_many(
            {keys[cid]: answer for cid, answer in fresh.items()}, settings.GOOGLE_CALENDAR_BUSY_CACHE_SECONDS
        )
    except Exception:
        logger.warning("Cache unavailable; Google free/busy answers not kept")
    return {**answers, **fresh}


def _our_events(
    clinic_id: int, calendars: list[str], start: datetime.datetime, end: datetime.datetime
) -> dict[str, list[Interval]]:
    ours: dict[str, list[Interval]] = defaultdict(list)
    for calendar_id, pushed_start, pushed_end in CalendarEventLink.objects.filter(
        clinic_id=clinic_id, calendar_id__in=calendars, pushed_live=True, pushed_start__lt=end, pushed_end__gt=start
    ).values_list("calendar_id", "pushed_start", "pushed_end"):
        ours[calendar_id].append((pushed_start, pushed_end))
    return ours


def _errors_record(clinic_id: int, members: list[tuple[int, str]], answers: dict[str, dict[str, Any]]) -> None:
    """Show staff which professional's calendar could not be read (and clear it once it can)."""
    from integrations.models import ProfessionalSync
    from scheduling.models import Professional

    current = dict(
        ProfessionalSync.objects.filter(professional_id__in=[pk for pk, _ in members]).values_list(
            "professional_id", "last_error"
        )
    )
    from integrations import calendar_sync

    for pk, calendar_id in members:
        error = str(answers[calendar_id].get("error", ""))[:300]
        if current.get(pk, "") != error:
            calendar_sync.professional_error_record(professional=Professional(pk=pk, clinic_id=clinic_id), error=error)


def _all_busy(
    professional_ids: Sequence[int], start: datetime.datetime, end: datetime.datetime
) -> dict[int, list[Interval]]:
    try:
        from scheduling.models import Professional

        ids = list(
            Professional.objects.filter(pk__in=list(professional_ids))
            .exclude(google_calendar_id="")
            .values_list("pk", flat=True)
        )
    except Exception:
        ids = list(professional_ids)  # cannot even tell who has a calendar: nobody is offered
    return {pk: [(start, end)] for pk in ids}


def _subtract(busy: list[Interval], remove: list[Interval]) -> list[Interval]:
    """`busy` without the parts covered by `remove` (Google merges touching events into one busy block)."""
    for r_start, r_end in remove:
        pieces: list[Interval] = []
        for b_start, b_end in busy:
            if r_end <= b_start or r_start >= b_end:
                pieces.append((b_start, b_end))
                continue
            if b_start < r_start:
                pieces.append((b_start, r_start))
            if r_end < b_end:
                pieces.append((r_end, b_end))
        busy = pieces
    return busy


def _merge(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _dt(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value)
