"""Google Calendar sync services: push appointments out, pull the professional's own events and changes in.

The local agenda is the source of truth. A push never blocks or fails a booking: it runs in a task after the booking
commits, records failures on the appointment's `CalendarEventLink`, and is retried (by the task, then by the periodic
catch-up). A pull turns the professional's own events into `ExternalBusy` rows and every change someone made in Google
to an event of ours into a `CalendarReconciliation` for staff to decide — never applied silently, never dropped.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integrations.google_calendar import (
    CalendarClient,
    CalendarError,
    CalendarEvent,
    CalendarNotReachable,
    CredentialsInvalid,
    CredentialsRevoked,
    EventBody,
    EventNotFound,
    EventTimes,
    SyncTokenGone,
    parse_credentials,
)
from integrations.models import (
    DEFAULT_EVENT_TITLE,
    AccountState,
    CalendarAccount,
    CalendarEventLink,
    CalendarReconciliation,
    ExternalBusy,
    LinkState,
    ProfessionalSync,
    ReconciliationKind,
    Resolution,
)
from scheduling.models import Appointment, AppointmentStatus, Professional

logger = logging.getLogger(__name__)

# Marks our events in Google (extendedProperties.private): the pull tells them from the professional's own.
PRIVATE_APPOINTMENT = "cecilia_appointment"
PRIVATE_CLINIC = "cecilia_clinic"
FIRST_SYNC_LOOKBACK = datetime.timedelta(days=1)
MAX_RETRY_DELAY = datetime.timedelta(hours=6)


def event_id_for(appointment: Appointment) -> str:
    """Our event id in Google, fixed per appointment: a retried create meets its first try (409) instead of
    making a second event. Google ids use base32hex (a–v, 0–9), 5–1024 long; decimal ids with an "a" between fit."""
    return f"cec{appointment.clinic_id}a{appointment.pk}"


# --- credentials and account state ------------------------------------------------------------------------------


@cache
def _environment_credentials() -> str:
    raw = settings.GOOGLE_SERVICE_ACCOUNT_JSON
    if not raw and settings.GOOGLE_SERVICE_ACCOUNT_FILE:
        try:
            raw = Path(settings.GOOGLE_SERVICE_ACCOUNT_FILE).read_text(encoding="utf-8")
        except OSError:
            logger.error(
                "GOOGLE_SERVICE_ACCOUNT_FILE cannot be read; Google Calendar is off for clinics without "
                "their own credentials"
            )
    return raw


@dataclass(frozen=True)
class Credentials:
    info: dict[str, Any]
    fingerprint: str  # names these credentials in the account's state without keeping them
    source: str  # "clinic" or "environment"


def clinic_credentials(clinic_id: int, account: CalendarAccount | None = None) -> Credentials | None:
    """The credentials a clinic uses: its own stored ones, else the environment's service account; None if neither
    (or if what is stored is not usable JSON)."""
    if account is None:
        account = CalendarAccount.objects.filter(clinic_id=clinic_id).first()
    raw, source = (account.credentials_json, "clinic") if account and account.credentials_json else ("", "")
    if not raw:
        raw, source = _environment_credentials(), "environment"
    if not raw:
        return None
    try:
        info = parse_credentials(raw)
    except CredentialsInvalid:
        return None
    return Credentials(info=info, fingerprint=hashlib.sha256(raw.encode()).hexdigest()[:16], source=source)


def calendar_client(credentials: Credentials, *, busy: bool = False) -> CalendarClient:
    """A client for these credentials. Availability's free/busy read waits less and retries nothing."""
    return CalendarClient(
        credentials.info,
        api_url=settings.GOOGLE_CALENDAR_API_URL,
        oauth_token_url=settings.GOOGLE_OAUTH_TOKEN_URL,
        timeout=settings.GOOGLE_CALENDAR_BUSY_TIMEOUT if busy else settings.GOOGLE_CALENDAR_TIMEOUT,
        num_retries=0 if busy else settings.GOOGLE_CALENDAR_NUM_RETRIES,
    )


def account_get(clinic_id: int) -> CalendarAccount:
    account, _ = CalendarAccount.objects.get_or_create(clinic_id=clinic_id)
    return account


def account_revoked(account: CalendarAccount, credentials: Credentials) -> bool:
    """Google refused exactly these credentials: calling again only adds to a retry storm. New credentials (or a
    changed environment key) have another fingerprint and are tried."""
    return account.state == AccountState.REVOKED and account.last_error.endswith(f"[{credentials.fingerprint}]")


def account_record(*, clinic_id: int, credentials: Credentials, error: CalendarError | None) -> None:
    """What the last call with these credentials says about them. Writes only when something changes (or every
    few minutes for the "last checked" time), so busy availability searches do not write on every call."""
    now = timezone.now()
    account = account_get(clinic_id)
    if error is None:
        state, message = AccountState.OK, ""
    elif isinstance(error, CredentialsRevoked):
        state, message = AccountState.REVOKED, f"{error} [{credentials.fingerprint}]"
    elif isinstance(error, CalendarNotReachable):
        state, message = (
            AccountState.OK,
            "",
        )  # Google took the credentials; one calendar's problem shows on its professional
    else:
        state, message = AccountState.FAILING, str(error)
    stale = account.checked_at is None or now - account.checked_at > datetime.timedelta(minutes=5)
    if account.state == state and account.last_error == message[:300] and not stale:
        return
    CalendarAccount.objects.filter(pk=account.pk).update(state=state, last_error=message[:300], checked_at=now)


def professional_error_record(*, professional: Professional, error: str) -> None:
    """Show on the professional's sync row why their calendar cannot be used ("" clears it)."""
    sync, _ = ProfessionalSync.objects.get_or_create(
        professional=professional, defaults={"clinic_id": professional.clinic_id}
    )
    if sync.last_error == error[:300]:
        return
    sync.last_error = error[:300]
    sync.error_at = timezone.now() if error else None
    sync.save(update_fields=["last_error", "error_at"])


def account_check(*, account: CalendarAccount) -> tuple[bool, str]:
    """The admin's "test connection": fetch a token and read each professional's calendar. (ok, what to tell)."""
    credentials = clinic_credentials(account.clinic_id, account)
    if credentials is None:
        CalendarAccount.objects.filter(pk=account.pk).update(
            state=AccountState.NOT_CONFIGURED, last_error="", checked_at=timezone.now()
        )
        return False, "No usable credentials: paste a service-account key or OAuth JSON, or set the environment's."
    professionals = list(
        Professional.objects.filter(clinic_id=account.clinic_id, active=True).exclude(google_calendar_id="")
    )
    try:
        answer = calendar_client(credentials).check([p.google_calendar_id for p in professionals])
    except CalendarError as exc:
        account_record(clinic_id=account.clinic_id, credentials=credentials, error=exc)
        return False, str(exc)
    account_record(clinic_id=account.clinic_id, credentials=credentials, error=None)
    CalendarAccount.objects.filter(pk=account.pk).update(checked_at=timezone.now())
    unreadable = []
    for professional in professionals:
        problem = answer.errors.get(professional.google_calendar_id, "")
        professional_error_record(professional=professional, error=problem)
        if problem:
            unreadable.append(professional.name)
    if unreadable:
        return False, "Connected, but these calendars cannot be read: " + ", ".join(unreadable)
    return True, "Connected."


# --- push --------------------------------------------------------------------------------------------------------


def event_title(appointment: Appointment, template: str) -> str:
    values = {
        "first_name": appointment.patient.first_name,
        "service": appointment.service.name,
        "professional": appointment.professional.name,
    }
    try:
        return template.format_map(values)[:200]
    except (KeyError, ValueError, IndexError, AttributeError):
        return DEFAULT_EVENT_TITLE.format_map(values)[:200]


def event_body(appointment: Appointment, account: CalendarAccount) -> EventBody:
    zone = str(appointment.clinic.timezone)
    tz = appointment.clinic.tz
    return EventBody(
        summary=event_title(appointment, account.event_title or DEFAULT_EVENT_TITLE),
        times=EventTimes(start=appointment.start.astimezone(tz), end=appointment.end.astimezone(tz), timezone=zone),
        private={PRIVATE_APPOINTMENT: str(appointment.pk), PRIVATE_CLINIC: str(appointment.clinic_id)},
    )


def push_request(*, appointment: Appointment) -> bool:
    """Called when an appointment changed (after commit): mark its event as due and enqueue the push.

    The pending row is what the periodic catch-up finds if the task is lost. False when Google is not in use for
    this appointment (no calendar, no credentials, never pushed)."""
    from integrations import tasks

    calendar_id = appointment.professional.google_calendar_id
    has_link = CalendarEventLink.objects.filter(appointment_id=appointment.pk).exists()
    if not calendar_id and not has_link:
        return False
    if clinic_credentials(appointment.clinic_id) is None:
        return False
    now = timezone.now()
    CalendarEventLink.objects.bulk_create(
        [
            CalendarEventLink(
                clinic_id=appointment.clinic_id,
                appointment_id=appointment.pk,
                event_id=event_id_for(appointment),
                next_attempt_at=now,
            )
        ],
        ignore_conflicts=True,
    )
    CalendarEventLink.objects.filter(appointment_id=appointment.pk).update(
        state=LinkState.PENDING, next_attempt_at=now, updated_at=now
    )
    transaction.on_commit(lambda: tasks.calendar_push_enqueue(appointment.pk))
    return True


@dataclass
class PushResult:
    outcome: str  # "synced", "unchanged", "deleted", "skipped", "revoked", "failed"
    error: CalendarError | None = None

    @property
    def retry(self) -> bool:
        """A temporary failure: the task retries it with backoff."""
        return self.outcome == "failed" and self.error is not None and not self.error.permanent


def event_push(*, appointment_id: int) -> PushResult:
    """Make Google show this appointment as Cecilia has it: create, update, move or delete its event.

    Idempotent: the event id is fixed per appointment, a create that finds it existing updates it, a delete of a
    gone event is done. Failures are recorded on the link (with when to try again), never raised: the caller
    retries temporary ones (`PushResult.retry`)."""
    appointment = (
        Appointment.objects.select_related("clinic", "patient", "service", "professional")
        .filter(pk=appointment_id)
        .first()
    )
    if appointment is None:
        return PushResult("skipped")
    credentials = clinic_credentials(appointment.clinic_id)
    if credentials is None:
        return PushResult("skipped")
    account = account_get(appointment.clinic_id)
    with transaction.atomic():
        link = _link_locked(appointment)
        if account_revoked(account, credentials):
            _link_failed(link, CredentialsRevoked(account.last_error.rsplit(" [", 1)[0]), retry=False)
            return PushResult("revoked")
        try:
            outcome = _push(appointment, link, account, calendar_client(credentials))
        except CalendarError as exc:
            account_record(clinic_id=appointment.clinic_id, credentials=credentials, error=exc)
            if isinstance(exc, CalendarNotReachable):
                professional_error_record(professional=appointment.professional, error=str(exc))
            _link_failed(link, exc, retry=not isinstance(exc, CredentialsRevoked))
            return PushResult("revoked" if isinstance(exc, CredentialsRevoked) else "failed", exc)
        link.state, link.last_error, link.attempts, link.next_attempt_at = LinkState.SYNCED, "", 0, None
        link.save()
    if outcome != "unchanged":
        account_record(clinic_id=appointment.clinic_id, credentials=credentials, error=None)
    return PushResult(outcome)


def _link_locked(appointment: Appointment) -> CalendarEventLink:
    CalendarEventLink.objects.bulk_create(
        [
            CalendarEventLink(
                clinic_id=appointment.clinic_id, appointment=appointment, event_id=event_id_for(appointment)
            )
        ],
        ignore_conflicts=True,
    )
    # Two pushes of one appointment (a quick reschedule) run one after the other, each from what the other left.
    return CalendarEventLink.objects.select_for_update().get(appointment=appointment)


def _push(appointment: Appointment, link: CalendarEventLink, account: CalendarAccount, client: CalendarClient) -> str:
    target = appointment.professional.google_calendar_id
    live = appointment.status != AppointmentStatus.CANCELLED and bool(target)
    body = event_body(appointment, account) if live else None
    if (
        body is not None
        and link.state == LinkState.SYNCED
        and link.pushed_live
        and link.calendar_id == target
        and (link.pushed_start, link.pushed_end, link.pushed_summary)
        == (body.times.start, body.times.end, body.summary)
    ):
        return "unchanged"  # a confirmation or a note: nothing Google shows changed
    if link.pushed_live and (not live or link.calendar_id != target):
        # Cancelled, or moved to another professional: the event leaves the calendar it is on.
        client.event_delete(link.calendar_id, link.event_id)
        link.pushed_live, link.etag = False, ""
        link.save(update_fields=["pushed_live", "etag", "updated_at"])
    if body is None:
        return "deleted"
    if link.pushed_live:
        try:
            event = client.event_patch(target, link.event_id, body)
        except EventNotFound:
            event = client.event_insert(target, link.event_id, body)
    else:
        event = client.event_insert(target, link.event_id, body)
    link.calendar_id, link.etag, link.pushed_live = target, event.etag[:100], True
    link.pushed_start, link.pushed_end, link.pushed_summary = body.times.start, body.times.end, body.summary
    return "synced"


def _link_failed(link: CalendarEventLink, error: CalendarError, *, retry: bool) -> None:
    link.state = LinkState.FAILED
    link.last_error = str(error)[:300]
    link.attempts += 1
    # Temporary failures wait longer each time (1, 2, 4 … minutes, at most 6 hours); revoked credentials wait for
    # new ones (changing them re-queues every failed push).
    delay = min(datetime.timedelta(minutes=2 ** min(link.attempts - 1, 10)), MAX_RETRY_DELAY)
    link.next_attempt_at = timezone.now() + delay if retry else None
    link.save()


def links_due(*, limit: int = 200) -> list[int]:
    """Appointment ids whose push is due: failed or pending links whose time came, and future appointments of
    professionals with a calendar that have no link yet (a push lost between commit and enqueue)."""
    now = timezone.now()
    due = list(
        CalendarEventLink.objects.exclude(state=LinkState.SYNCED)
        .filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True, state=LinkState.PENDING))
        .order_by("next_attempt_at")
        .values_list("appointment_id", flat=True)[:limit]
    )
    missing = (
        Appointment.objects.filter(end__gt=now, calendar_link__isnull=True)
        .exclude(status=AppointmentStatus.CANCELLED)
        .exclude(professional__google_calendar_id="")
        .order_by("start")
        .values_list("pk", "clinic_id")[:limit]
    )
    usable: dict[int, bool] = {}
    for appointment_id, clinic_id in missing:
        if clinic_id not in usable:
            usable[clinic_id] = clinic_credentials(clinic_id) is not None
        if usable[clinic_id]:
            due.append(appointment_id)
    return due


def links_requeue_after_new_credentials(*, clinic_id: int) -> int:
    """New credentials were saved: every push that failed or waited is due now. Returns how many."""
    return (
        CalendarEventLink.objects.filter(clinic_id=clinic_id)
        .exclude(state=LinkState.SYNCED)
        .update(next_attempt_at=timezone.now())
    )


# --- pull --------------------------------------------------------------------------------------------------------


@dataclass
class PullResult:
    outcome: str  # "synced", "skipped", "busy", "failed"
    events: int = 0
    reconciliations: int = 0
    full: bool = False


def professionals_to_pull() -> list[int]:
    """Active professionals with a calendar whose clinic has credentials Google has not refused."""
    ids = []
    accounts = {a.clinic_id: a for a in CalendarAccount.objects.all()}
    credentials_by_clinic: dict[int, Credentials | None] = {}
    for pk, clinic_id in (
        Professional.objects.filter(active=True).exclude(google_calendar_id="").values_list("pk", "clinic_id")
    ):
        if clinic_id not in credentials_by_clinic:
            credentials_by_clinic[clinic_id] = clinic_credentials(clinic_id, accounts.get(clinic_id))
        credentials = credentials_by_clinic[clinic_id]
        account = accounts.get(clinic_id)
        if credentials is not None and not (account and account_revoked(account, credentials)):
            ids.append(pk)
    return ids


def calendar_pull(*, professional_id: int) -> PullResult:
    """Read what changed in the professional's calendar since the last pull (syncToken), or everything from
    yesterday on (first run, or when Google forgot the token: 410). Never raises for Google's failures."""
    professional = Professional.objects.select_related("clinic").filter(pk=professional_id).first()
    if professional is None or not professional.google_calendar_id:
        return PullResult("skipped")
    credentials = clinic_credentials(professional.clinic_id)
    if credentials is None or account_revoked(account_get(professional.clinic_id), credentials):
        return PullResult("skipped")
    ProfessionalSync.objects.get_or_create(professional=professional, defaults={"clinic_id": professional.clinic_id})
    with transaction.atomic():
        # One pull per calendar at a time; a second beat tick finds it locked and leaves.
        sync = ProfessionalSync.objects.select_for_update(skip_locked=True).filter(professional=professional).first()
        if sync is None:
            return PullResult("busy")
        try:
            return _pull(professional, sync, calendar_client(credentials), credentials)
        except CalendarError as exc:
            account_record(clinic_id=professional.clinic_id, credentials=credentials, error=exc)
            if not isinstance(exc, CredentialsRevoked):
                sync.last_error, sync.error_at = str(exc)[:300], sync.error_at or timezone.now()
                sync.save(update_fields=["last_error", "error_at"])
            return PullResult("failed")


def _pull(
    professional: Professional, sync: ProfessionalSync, client: CalendarClient, credentials: Credentials
) -> PullResult:
    calendar_id = professional.google_calendar_id
    if sync.calendar_id != calendar_id:
        # Another calendar: what we knew about the old one no longer applies.
        ExternalBusy.objects.filter(professional=professional).delete()
        sync.calendar_id, sync.sync_token = calendar_id, ""
    started = timezone.now()
    result, time_min = None, None
    if sync.sync_token:
        try:
            result = client.events_sync(calendar_id, sync_token=sync.sync_token)
        except SyncTokenGone:
            logger.info("Calendar sync token expired for professional %s; syncing in full", professional.pk)
    if result is None:
        time_min = started - FIRST_SYNC_LOOKBACK
        result = client.events_sync(calendar_id, time_min=time_min)
    reconciliations = _apply(professional, calendar_id, result.events)
    if time_min is not None:
        reconciliations += _apply_full_listing(professional, calendar_id, result.events, time_min, started)
    sync.sync_token = result.next_sync_token
    sync.last_synced_at, sync.last_error, sync.error_at = timezone.now(), "", None
    sync.save()
    account_record(clinic_id=professional.clinic_id, credentials=credentials, error=None)
    return PullResult("synced", events=len(result.events), reconciliations=reconciliations, full=time_min is not None)


def _apply(professional: Professional, calendar_id: str, events: list[CalendarEvent]) -> int:
    links = {
        link.event_id: link
        for link in CalendarEventLink.objects.select_related("appointment").filter(
            clinic_id=professional.clinic_id, calendar_id=calendar_id, event_id__in=[e.id for e in events]
        )
    }
    created = 0
    for event in events:
        link = links.get(event.id)
        if link is not None:
            created += _reconcile(professional, link, event)
        elif PRIVATE_APPOINTMENT in event.private:
            continue  # ours, but no longer on this calendar (moved to another professional) or another install's
        else:
            _external_busy_upsert(professional, event)
    return created


def _external_busy_upsert(professional: Professional, event: CalendarEvent) -> None:
    times = _event_times(event, professional.clinic.tz)
    if event.cancelled or event.transparent or times is None:
        ExternalBusy.objects.filter(professional=professional, event_id=event.id).delete()
        return
    ExternalBusy.objects.update_or_create(
        professional=professional,
        event_id=event.id,
        defaults={"clinic_id": professional.clinic_id, "start": times[0], "end": times[1]},
    )


def _event_times(event: CalendarEvent, tz: datetime.tzinfo) -> tuple[datetime.datetime, datetime.datetime] | None:
    if event.start and event.end:
        start, end = event.start, event.end
    elif event.all_day_start and event.all_day_end:
        # An all-day event blocks the clinic's whole local day(s).
        start = datetime.datetime.combine(event.all_day_start, datetime.time(), tzinfo=tz)
        end = datetime.datetime.combine(event.all_day_end, datetime.time(), tzinfo=tz)
    else:
        return None
    return (start, end) if end > start else None


def _apply_full_listing(
    professional: Professional,
    calendar_id: str,
    events: list[CalendarEvent],
    time_min: datetime.datetime,
    started: datetime.datetime,
) -> int:
    """A full listing is the whole truth from `time_min` on: anything missing from it was deleted in Google."""
    present = {e.id for e in events if not e.cancelled}
    ExternalBusy.objects.filter(professional=professional).exclude(event_id__in=present).delete()
    created = 0
    missing = (
        CalendarEventLink.objects.select_related("appointment")
        .filter(clinic_id=professional.clinic_id, calendar_id=calendar_id, pushed_live=True, pushed_end__gt=time_min)
        .filter(updated_at__lt=started)  # a push that finished during the listing is not missing from it
        .exclude(event_id__in=present)
    )
    for link in missing:
        created += _reconcile(professional, link, CalendarEvent(id=link.event_id, status="cancelled"))
    return created


def _reconcile(professional: Professional, link: CalendarEventLink, event: CalendarEvent) -> int:
    """Compare Google's version of our event with what we last pushed. Returns 1 when a new question was opened."""
    appointment = link.appointment
    if not link.pushed_live or appointment.status == AppointmentStatus.CANCELLED:
        return 0  # we deleted it, or our delete is on its way: Google agrees or soon will
    if event.etag and event.etag == link.etag:
        return 0  # the echo of our own push
    if event.cancelled:
        kind, start, end = ReconciliationKind.DELETED, None, None
    else:
        times = _event_times(event, professional.clinic.tz)
        if times is None or times == (link.pushed_start, link.pushed_end):
            _reconciliations_close_obsolete(appointment)
            return 0  # same times as we pushed (a title edit, our echo): nothing for staff to decide
        kind, (start, end) = ReconciliationKind.MOVED, times
    return _reconciliation_upsert(appointment, professional, kind, start, end, event.etag)


def _reconciliation_upsert(
    appointment: Appointment,
    professional: Professional,
    kind: str,
    start: datetime.datetime | None,
    end: datetime.datetime | None,
    etag: str,
) -> int:
    current = (
        CalendarReconciliation.objects.select_for_update()
        .filter(appointment=appointment, resolved_at__isnull=True)
        .first()
    )
    if current is not None:
        if (current.kind, current.google_start, current.google_end) != (kind, start, end):
            current.kind, current.google_start, current.google_end, current.google_etag = kind, start, end, etag[:100]
            current.professional = professional
            current.save()
        return 0
    if etag and CalendarReconciliation.objects.filter(appointment=appointment, google_etag=etag[:100]).exists():
        return 0  # this very Google version was already decided on (seen again by a full resync)
    CalendarReconciliation.objects.create(
        clinic_id=appointment.clinic_id,
        appointment=appointment,
        professional=professional,
        kind=kind,
        google_start=start,
        google_end=end,
        google_etag=etag[:100],
    )
    logger.info("Appointment %s was %s in Google Calendar; waiting for staff", appointment.pk, kind)
    return 1


def _reconciliations_close_obsolete(appointment: Appointment) -> None:
    CalendarReconciliation.objects.filter(appointment=appointment, resolved_at__isnull=True).update(
        resolved_at=timezone.now(), resolution=Resolution.OBSOLETE
    )


# --- reconciliation decisions (the admin's actions) --------------------------------------------------------------

RESCHEDULED_TEXT = (
    "Olá, {first_name}! Sua consulta com {professional} mudou para {when}. Se esse horário não for bom para você, "
    "é só responder aqui que a gente encontra outro. 😊"
)
CANCELLED_TEXT = (
    "Olá, {first_name}. Sua consulta com {professional} de {when} precisou ser cancelada. Pedimos desculpas! "
    "Quer marcar um novo horário? É só responder aqui."
)


def patient_notice(appointment: Appointment, kind: str) -> str:
    """The short pt-BR message that tells the patient what staff applied, in the clinic's time zone."""
    local = appointment.start.astimezone(appointment.clinic.tz)
    weekdays = ("segunda", "terça", "quarta", "quinta", "sexta", "sábado", "domingo")
    when = f"{weekdays[local.weekday()]}, {local:%d/%m} às {local:%H:%M}"
    template = CANCELLED_TEXT if kind == ReconciliationKind.DELETED else RESCHEDULED_TEXT
    return template.format(
        first_name=appointment.patient.first_name or "tudo bem", professional=appointment.professional.name, when=when
    )


def reconciliation_resolve(*, reconciliation: CalendarReconciliation, resolution: str, user: Any) -> bool:
    """Close an open reconciliation with who decided what. False if someone else closed it first."""
    return bool(
        CalendarReconciliation.objects.filter(pk=reconciliation.pk, resolved_at__isnull=True).update(
            resolved_at=timezone.now(), resolved_by=user, resolution=resolution
        )
    )


def reconciliation_keep(*, reconciliation: CalendarReconciliation, user: Any) -> bool:
    """Keep Cecilia's version: close the question and push our event to Google again (undoing the change there)."""
    from integrations import tasks

    with transaction.atomic():
        if not reconciliation_resolve(reconciliation=reconciliation, resolution=Resolution.KEPT, user=user):
            return False
        CalendarEventLink.objects.filter(appointment_id=reconciliation.appointment_id).update(
            state=LinkState.PENDING, next_attempt_at=timezone.now(), updated_at=timezone.now()
        )
        appointment_id = reconciliation.appointment_id
        transaction.on_commit(lambda: tasks.calendar_push_enqueue(appointment_id))
    return True


def reconciliation_apply(*, reconciliation: CalendarReconciliation, user: Any) -> str:
    """Apply Google's change in Cecilia (reschedule to Google's time, or cancel) as `user`, tell the patient on
    WhatsApp, and close the question. Returns "applied", "applied_not_notified" (Meta's 24-hour window: staff tell
    the patient themselves) or "already" (someone closed it first). Raises scheduling's BookingError when the agenda
    refuses the change; the question then stays open.

    A reschedule is forced: staff confirm a time the professional already chose, so hours and the booking policy
    do not apply; the database's no-overlap constraint still does."""
    from conversations.models import Conversation, MessageAuthor
    from conversations.outbox import OutsideWhatsAppWindow, message_queue_outbound
    from scheduling.services import Actor, appointment_cancel, appointment_reschedule

    with transaction.atomic():
        locked = (
            CalendarReconciliation.objects.select_for_update().filter(pk=reconciliation.pk, resolved_at__isnull=True)
        ).first()
        if locked is None:
            return "already"
        appointment = Appointment.objects.select_related("clinic", "patient", "professional").get(
            pk=locked.appointment_id
        )
        actor = Actor.staff(user)
        if locked.kind == ReconciliationKind.DELETED:
            appointment = appointment_cancel(appointment=appointment, actor=actor, reason="Removida no Google Agenda")
        else:
            appointment = appointment_reschedule(
                appointment=appointment, start=locked.google_start, actor=actor, force=True
            )
        reconciliation_resolve(reconciliation=locked, resolution=Resolution.APPLIED, user=user)
        conversation, _ = Conversation.objects.get_or_create(
            clinic_id=appointment.clinic_id, patient=appointment.patient
        )
        try:
            with transaction.atomic():
                message_queue_outbound(
                    conversation=conversation,
                    text=patient_notice(appointment, locked.kind),
                    author=MessageAuthor.STAFF,
                    author_user=user,
                )
        except (OutsideWhatsAppWindow, ValueError):
            return "applied_not_notified"
    return "applied"
