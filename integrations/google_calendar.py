"""Google Calendar v3 through google-api-python-client: the only module that talks to Google.

Dataclasses in, dataclasses out; no app models. Every call has an explicit timeout; 5xx, 429 and network errors are
retried inside the call (`num_retries`, the library's exponential backoff) and then surface as a temporary
`CalendarError`, which callers retry later. The contract of the errors:

* `CredentialsRevoked` (permanent): the token endpoint refused the credentials (invalid_grant, deleted key, revoked
  consent) or the API answered 401 after a refresh. Nothing will work until someone fixes the credentials: callers
  stop calling Google for that clinic instead of retrying.
* `CalendarNotReachable` (permanent): this calendar does not exist or is not shared with our credentials (403/404).
* `SyncTokenGone`: the syncToken expired (410): list again from scratch.
* `CalendarError(permanent=False)`: anything temporary (5xx, 429, timeouts, connection errors).

Discovery is static (the document ships with the library; no network call). `api_url` replaces Google's base URL;
service accounts get tokens from the `token_uri` inside their JSON, OAuth refreshes go to Google unless
`oauth_token_url` says otherwise. Tests point all three at a local fake.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import google.auth.exceptions
import google_auth_httplib2
import httplib2
from google.oauth2 import credentials as oauth_credentials
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

logger = logging.getLogger(__name__)

SCOPES = ["https://www.googleapis.com/auth/calendar"]
# freeBusy answers at most 50 calendars per request; long windows are asked in pieces Google accepts.
FREEBUSY_MAX_CALENDARS = 50
FREEBUSY_MAX_SPAN = datetime.timedelta(days=56)
PAGE_SIZE = 250

Interval = tuple[datetime.datetime, datetime.datetime]


class CalendarError(Exception):
    """A call failed. `permanent`: retrying the same call will not help. The message never holds secrets."""

    def __init__(self, message: str, *, permanent: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status


class CredentialsRevoked(CalendarError):
    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True, status=401)


class CalendarNotReachable(CalendarError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, permanent=True, status=status)


class SyncTokenGone(CalendarError):
    def __init__(self) -> None:
        super().__init__("The sync token expired (410); a full sync is needed.", permanent=True, status=410)


class EventNotFound(CalendarError):
    def __init__(self) -> None:
        super().__init__("The event does not exist.", permanent=True, status=404)


class CredentialsInvalid(CalendarError):
    """The stored JSON is not a service-account key nor an OAuth authorized-user file."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


@dataclass(frozen=True)
class EventTimes:
    """A timed event: aware start and end, and the IANA zone Google should show them in."""

    start: datetime.datetime
    end: datetime.datetime
    timezone: str


@dataclass(frozen=True)
class EventBody:
    summary: str
    times: EventTimes
    private: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        zone = self.times.timezone
        return {
            "summary": self.summary,
            "start": {"dateTime": self.times.start.isoformat(), "timeZone": zone},
            "end": {"dateTime": self.times.end.isoformat(), "timeZone": zone},
            "extendedProperties": {"private": dict(self.private)},
            # An event we deleted earlier keeps its id in Google; "confirmed" brings it back on a re-insert.
            "status": "confirmed",
        }


@dataclass(frozen=True)
class CalendarEvent:
    """An event as Google returned it. All-day events have dates instead of times (`all_day_*`)."""

    id: str
    status: str  # confirmed, tentative or cancelled (deleted)
    etag: str = ""
    start: datetime.datetime | None = None
    end: datetime.datetime | None = None
    all_day_start: datetime.date | None = None
    all_day_end: datetime.date | None = None
    private: dict[str, str] = field(default_factory=dict)
    transparent: bool = False  # "show me as available": not busy

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"


@dataclass(frozen=True)
class SyncResult:
    events: list[CalendarEvent]
    next_sync_token: str


@dataclass(frozen=True)
class FreeBusy:
    busy: dict[str, list[Interval]]  # calendar id → busy intervals
    errors: dict[str, str]  # calendar id → why it could not be read


def parse_credentials(raw: str) -> dict[str, Any]:
    """The credentials JSON as a dict, checked for the fields each kind needs. Raises CredentialsInvalid."""
    try:
        info = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise CredentialsInvalid("The credentials are not valid JSON.") from exc
    if not isinstance(info, dict):
        raise CredentialsInvalid("The credentials must be a JSON object.")
    kind = info.get("type")
    needed = {
        "service_account": ("client_email", "private_key", "token_uri"),
        "authorized_user": ("client_id", "client_secret", "refresh_token"),
    }.get(kind)
    if needed is None:
        raise CredentialsInvalid(
            'Use a service-account key ("type": "service_account") or an OAuth authorized-user '
            'file ("type": "authorized_user").'
        )
    missing = [name for name in needed if not info.get(name)]
    if missing:
        raise CredentialsInvalid(f"The credentials lack {', '.join(missing)}.")
    return info


def credentials_identity(info: dict[str, Any]) -> str:
    """Who the credentials act as, safe to show staff: the service account's e-mail, or "OAuth client …1234"."""
    if info.get("type") == "service_account":
        return str(info.get("client_email", ""))
    return f"OAuth ({str(info.get('client_id', ''))[:12]}…)"


class CalendarClient:
    """One client per clinic's credentials. Cheap to build (static discovery); not shared between threads."""

    def __init__(
        self,
        credentials_info: dict[str, Any],
        *,
        api_url: str = "",
        oauth_token_url: str = "",
        timeout: float = 10.0,
        num_retries: int = 2,
    ) -> None:
        self.num_retries = num_retries
        try:
            if credentials_info.get("type") == "service_account":
                creds: Any = service_account.Credentials.from_service_account_info(credentials_info, scopes=SCOPES)
            else:
                creds = oauth_credentials.Credentials.from_authorized_user_info(credentials_info, scopes=SCOPES)
                # google-auth sends OAuth refreshes to Google whatever the file says (a pasted file must not send a
                # refresh token elsewhere); only our own setting may point them at another server (tests' fake).
                if oauth_token_url:
                    creds = creds.with_token_uri(oauth_token_url)
        except (ValueError, KeyError) as exc:
            raise CredentialsInvalid(f"The credentials cannot be loaded: {type(exc).__name__}.") from exc
        http = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=timeout))
        options = {"api_endpoint": api_url} if api_url else None
        self._service = build(
            "calendar", "v3", http=http, static_discovery=True, cache_discovery=False, client_options=options
        )

    # --- events ---------------------------------------------------------------------------------------------------
    def event_insert(self, calendar_id: str, event_id: str, body: EventBody) -> CalendarEvent:
        """Create the event with our id; if it exists already (a retried create, or one we deleted), update it.

        Google refuses a second event with the same id (409), so a create retried after a lost answer never makes
        a duplicate: the existing event is patched to what we wanted instead.
        """
        payload = {**body.as_json(), "id": event_id}
        try:
            request = self._service.events().insert(calendarId=calendar_id, body=payload)
            return self._event(self._call(request, missing=CalendarNotReachable))
        except CalendarError as exc:
            if exc.status != 409:
                raise
        return self.event_patch(calendar_id, event_id, body)

    def event_patch(self, calendar_id: str, event_id: str, body: EventBody) -> CalendarEvent:
        request = self._service.events().patch(calendarId=calendar_id, eventId=event_id, body=body.as_json())
        return self._event(self._call(request, missing=EventNotFound))

    def event_get(self, calendar_id: str, event_id: str) -> CalendarEvent:
        request = self._service.events().get(calendarId=calendar_id, eventId=event_id)
        return self._event(self._call(request, missing=EventNotFound))

    def event_delete(self, calendar_id: str, event_id: str) -> None:
        """Delete the event; one that is already gone (404, or 410 "deleted") counts as deleted."""
        try:
            self._call(self._service.events().delete(calendarId=calendar_id, eventId=event_id), missing=EventNotFound)
        except EventNotFound:
            return
        except CalendarError as exc:
            if exc.status != 410:
                raise

    def events_sync(
        self, calendar_id: str, *, sync_token: str = "", time_min: datetime.datetime | None = None
    ) -> SyncResult:
        """Every page of changes since `sync_token`, or (without one) every event from `time_min`, and the token
        for next time. Raises SyncTokenGone when Google forgot the token."""
        events: list[CalendarEvent] = []
        page_token = ""
        while True:
            params: dict[str, Any] = {"calendarId": calendar_id, "singleEvents": True, "maxResults": PAGE_SIZE}
            if sync_token:
                params["syncToken"] = sync_token
            elif time_min is not None:
                params["timeMin"] = time_min.isoformat()
            if page_token:
                params["pageToken"] = page_token
            page = self._call(self._service.events().list(**params), missing=CalendarNotReachable, sync=True)
            events.extend(self._event(item) for item in page.get("items", []))
            page_token = page.get("nextPageToken", "")
            if not page_token:
                return SyncResult(events=events, next_sync_token=page.get("nextSyncToken", ""))

    # --- free/busy ------------------------------------------------------------------------------------------------
    def free_busy(self, calendar_ids: Iterable[str], start: datetime.datetime, end: datetime.datetime) -> FreeBusy:
        """Busy intervals per calendar over [start, end): one request per 50 calendars and per 8 weeks."""
        ids = list(dict.fromkeys(calendar_ids))
        busy: dict[str, list[Interval]] = {cid: [] for cid in ids}
        errors: dict[str, str] = {}
        for chunk_start, chunk_end in _spans(start, end):
            for first in range(0, len(ids), FREEBUSY_MAX_CALENDARS):
                batch = ids[first : first + FREEBUSY_MAX_CALENDARS]
                body = {
                    "timeMin": chunk_start.isoformat(),
                    "timeMax": chunk_end.isoformat(),
                    "items": [{"id": cid} for cid in batch],
                }
                answer = self._call(self._service.freebusy().query(body=body))
                for cid, entry in (answer.get("calendars") or {}).items():
                    if cid not in busy:
                        continue
                    if entry.get("errors"):
                        reasons = ", ".join(str(e.get("reason", "unknown")) for e in entry["errors"])
                        errors[cid] = f"Google cannot read this calendar ({reasons}); share it with our account."
                    for item in entry.get("busy", []):
                        busy[cid].append((_parse_datetime(item["start"]), _parse_datetime(item["end"])))
        return FreeBusy(busy={cid: v for cid, v in busy.items() if cid not in errors}, errors=errors)

    def check(self, calendar_ids: Iterable[str]) -> FreeBusy:
        """A connection test: a token is fetched and each calendar is read over the next hour."""
        now = datetime.datetime.now(tz=datetime.UTC)
        ids = list(calendar_ids) or ["primary"]
        return self.free_busy(ids, now, now + datetime.timedelta(hours=1))

    # --- plumbing -------------------------------------------------------------------------------------------------
    def _call(self, request: Any, *, missing: type[CalendarError] | None = None, sync: bool = False) -> Any:
        try:
            return request.execute(num_retries=self.num_retries)
        except google.auth.exceptions.RefreshError as exc:
            if getattr(exc, "retryable", False):
                raise CalendarError("Google's sign-in service is unavailable; will retry.") from exc
            raise CredentialsRevoked(_refresh_reason(exc)) from exc
        except google.auth.exceptions.TransportError as exc:
            raise CalendarError("Google's sign-in service could not be reached; will retry.") from exc
        except HttpError as exc:
            raise _http_error(exc, missing=missing, sync=sync) from exc
        except TimeoutError as exc:  # socket.timeout is TimeoutError
            raise CalendarError("Google Calendar did not answer in time; will retry.") from exc
        except (OSError, httplib2.HttpLib2Error) as exc:
            raise CalendarError(f"Google Calendar could not be reached ({type(exc).__name__}); will retry.") from exc

    @staticmethod
    def _event(item: dict[str, Any]) -> CalendarEvent:
        start, end = item.get("start") or {}, item.get("end") or {}
        return CalendarEvent(
            id=str(item.get("id", "")),
            status=str(item.get("status", "confirmed")),
            etag=str(item.get("etag", "")),
            start=_parse_datetime(start["dateTime"]) if "dateTime" in start else None,
            end=_parse_datetime(end["dateTime"]) if "dateTime" in end else None,
            all_day_start=datetime.date.fromisoformat(start["date"]) if "date" in start else None,
            all_day_end=datetime.date.fromisoformat(end["date"]) if "date" in end else None,
            private={str(k): str(v) for k, v in ((item.get("extendedProperties") or {}).get("private") or {}).items()},
            transparent=item.get("transparency") == "transparent",
        )


def _http_error(exc: HttpError, *, missing: type[CalendarError] | None, sync: bool) -> CalendarError:
    status = int(exc.resp.status)
    reason = _error_reason(exc)
    if status == 401:
        return CredentialsRevoked("Google refused the credentials (401). Connect the account again.")
    if status == 410 and sync:
        return SyncTokenGone()
    if status in (403, 404) and missing is not None and reason not in _RATE_LIMITS:
        if missing is EventNotFound and status == 404:
            return EventNotFound()
        return CalendarNotReachable(
            f"Google answered {status} ({reason or 'no reason'}): the calendar does not exist or is not shared "
            "with Cecilia's account.",
            status=status,
        )
    if status == 403 and reason not in _RATE_LIMITS:
        return CalendarNotReachable(f"Google refused access (403, {reason or 'forbidden'}).", status=403)
    if status == 429 or status >= 500 or reason in _RATE_LIMITS:
        return CalendarError(f"Google Calendar is unavailable ({status}); will retry.", status=status)
    return CalendarError(
        f"Google Calendar refused the request ({status}, {reason or 'no reason'}).", permanent=True, status=status
    )


_RATE_LIMITS = {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"}


def _error_reason(exc: HttpError) -> str:
    try:
        details = json.loads(exc.content.decode("utf-8")).get("error", {})
    except (ValueError, AttributeError, UnicodeDecodeError):
        return ""
    errors = details.get("errors") or [{}]
    return str(errors[0].get("reason") or details.get("status") or "")[:60]


def _refresh_reason(exc: google.auth.exceptions.RefreshError) -> str:
    # RefreshError's args hold Google's answer: ("invalid_grant: Token has been expired or revoked.", {...}).
    text = str(exc.args[0]) if exc.args else ""
    code = text.split(":", 1)[0].strip() if ":" in text else "refused"
    return f"Google refused the credentials ({code[:40]}). Connect the account again or upload a new key."


def _parse_datetime(value: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _spans(start: datetime.datetime, end: datetime.datetime) -> Iterator[Interval]:
    cursor = start
    while cursor < end:
        piece_end = min(end, cursor + FREEBUSY_MAX_SPAN)
        yield cursor, piece_end
        cursor = piece_end
