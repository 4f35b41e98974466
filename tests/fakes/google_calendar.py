"""A local HTTP server speaking Google Calendar v3's REST wire format and Google's OAuth token endpoint, for tests
that run google-api-python-client for real (integrations/google_calendar.py) against a socket.

Endpoints (paths as the library builds them from its static discovery document, under /calendar/v3/):
* POST   calendars/{calendarId}/events              insert (409 "duplicate" when the id exists, even deleted)
* GET    calendars/{calendarId}/events/{eventId}    get
* PATCH  calendars/{calendarId}/events/{eventId}    patch (a deleted event comes back with "status": "confirmed")
* DELETE calendars/{calendarId}/events/{eventId}    delete (204; 410 "deleted" when already deleted)
* GET    calendars/{calendarId}/events              list: timeMin, singleEvents, maxResults, pageToken, syncToken
                                                    (incremental; 410 "fullSyncRequired" for a forgotten token)
* POST   freeBusy                                    query
* POST   /token                                      OAuth: jwt-bearer (service account) and refresh_token grants

API calls need a bearer token the token endpoint issued. `revoke()` makes the token endpoint answer invalid_grant and
forgets issued tokens (so the API answers 401). Scripted failures (`fail_next`) and slow answers (`delay_next`)
replace the next matching answers. The "professional" edits their calendar with `add_event`, `move`, `remove`.
"""

from __future__ import annotations

import base64
import datetime
import itertools
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

API_PREFIX = "/calendar/v3/"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


@dataclass
class Received:
    method: str
    path: str  # decoded, without the /calendar/v3/ prefix, e.g. "calendars/ana@clinica.com/events"
    query: dict[str, str]
    body: Any


@dataclass
class _Scripted:
    method: str | None
    path_contains: str
    status: int = 500
    body: Any = None
    delay: float = 0.0


def error_body(status: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "error": {
            "errors": [{"domain": "global", "reason": reason, "message": message}],
            "code": status,
            "message": message,
        }
    }


def _utc(value: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event_bounds(event: dict[str, Any]) -> tuple[datetime.datetime, datetime.datetime] | None:
    start, end = event.get("start") or {}, event.get("end") or {}
    if "dateTime" in start and "dateTime" in end:
        return _utc(start["dateTime"]), _utc(end["dateTime"])
    if "date" in start and "date" in end:
        s, e = datetime.date.fromisoformat(start["date"]), datetime.date.fromisoformat(end["date"])
        return (
            datetime.datetime.combine(s, datetime.time(), tzinfo=datetime.UTC),
            datetime.datetime.combine(e, datetime.time(), tzinfo=datetime.UTC),
        )
    return None


@dataclass
class FakeGoogleCalendar:
    page_size: int | None = None  # overrides maxResults, to make paging visible
    calendars: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    token_uri: str = ""
    revoked: bool = False
    _script: list[_Scripted] = field(default_factory=list)
    _tokens: set[str] = field(default_factory=set)
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))
    _changed: dict[tuple[str, str], int] = field(default_factory=dict)  # (calendar, event) → change number
    _token_floor: int = 0  # sync tokens below this are forgotten (410)
    _pages: dict[str, tuple[list[dict[str, Any]], int]] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _server: ThreadingHTTPServer | None = None

    # --- the professional's side ----------------------------------------------------------------------------------
    def add_calendar(self, calendar_id: str) -> None:
        with self._lock:
            self.calendars.setdefault(calendar_id, {})

    def add_event(
        self,
        calendar_id: str,
        start: datetime.datetime | datetime.date,
        end: datetime.datetime | datetime.date,
        *,
        event_id: str | None = None,
        summary: str = "Compromisso pessoal",
        transparent: bool = False,
    ) -> str:
        with self._lock:
            event_id = event_id or f"own{next(self._seq)}x"
            if isinstance(start, datetime.datetime):
                times = {"start": {"dateTime": _rfc3339(start)}, "end": {"dateTime": _rfc3339(end)}}  # type: ignore[arg-type]
            else:
                times = {"start": {"date": start.isoformat()}, "end": {"date": end.isoformat()}}
            event = {"id": event_id, "status": "confirmed", "summary": summary, **times}
            if transparent:
                event["transparency"] = "transparent"
            self._store(calendar_id, event)
            return event_id

    def move(self, calendar_id: str, event_id: str, start: datetime.datetime, end: datetime.datetime) -> None:
        with self._lock:
            event = dict(self.calendars[calendar_id][event_id])
            event["start"] = {"dateTime": start.isoformat(), "timeZone": "America/Sao_Paulo"}
            event["end"] = {"dateTime": end.isoformat(), "timeZone": "America/Sao_Paulo"}
            self._store(calendar_id, event)

    def rename(self, calendar_id: str, event_id: str, summary: str) -> None:
        with self._lock:
            self._store(calendar_id, {**self.calendars[calendar_id][event_id], "summary": summary})

    def remove(self, calendar_id: str, event_id: str) -> None:
        with self._lock:
            self._store(calendar_id, {**self.calendars[calendar_id][event_id], "status": "cancelled"})

    def event(self, calendar_id: str, event_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self.calendars.get(calendar_id, {}).get(event_id)

    def live_events(self, calendar_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.calendars.get(calendar_id, {}).values() if e["status"] != "cancelled"]

    # --- Google's side --------------------------------------------------------------------------------------------
    def revoke(self) -> None:
        """The refresh token / key is revoked: no new tokens, and issued ones stop working."""
        with self._lock:
            self.revoked = True
            self._tokens.clear()

    def forget_sync_tokens(self) -> None:
        """Google drops the sync tokens issued so far: the next incremental list answers 410."""
        with self._lock:
            self._token_floor = next(self._seq)

    def fail_next(
        self, status: int, *, method: str | None = None, path_contains: str = "", reason: str = "", times: int = 1
    ) -> None:
        reason = reason or {409: "duplicate", 410: "deleted", 403: "forbidden", 404: "notFound"}.get(
            status, "backendError"
        )
        with self._lock:
            for _ in range(times):
                self._script.append(
                    _Scripted(method, path_contains, status, error_body(status, reason, f"Scripted {status}"))
                )

    def delay_next(self, seconds: float, *, method: str | None = None, path_contains: str = "") -> None:
        """The next matching request is answered normally, but only after `seconds` (a client timeout)."""
        with self._lock:
            self._script.append(_Scripted(method, path_contains, status=0, delay=seconds))

    def requests(self, method: str | None = None, path_contains: str = "") -> list[Received]:
        with self._lock:
            return [r for r in self.received if (method is None or r.method == method) and path_contains in r.path]

    # --- server ---------------------------------------------------------------------------------------------------
    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

            def _handle(self, method: str) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                query = dict(urllib.parse.parse_qsl(parsed.query))
                if parsed.path == "/token":
                    status, body = fake._token(dict(urllib.parse.parse_qsl(raw.decode())))
                    return self._reply(status, body)
                path = urllib.parse.unquote(parsed.path.removeprefix(API_PREFIX))
                body = json.loads(raw) if raw else None
                with fake._lock:
                    fake.received.append(Received(method, path, query, body))
                    scripted = fake._pop_script(method, path)
                if scripted is not None and scripted.delay:
                    threading.Event().wait(scripted.delay)  # not time.sleep: tests stub the library's backoff sleep
                    scripted = None
                if scripted is not None:
                    return self._reply(scripted.status, scripted.body)
                auth = self.headers.get("Authorization", "")
                with fake._lock:
                    authorized = auth.startswith("Bearer ") and auth[7:] in fake._tokens
                if not authorized:
                    return self._reply(401, error_body(401, "authError", "Invalid Credentials"))
                status, answer = fake._route(method, path, query, body)
                self._reply(status, answer)

            def _reply(self, status: int, body: Any) -> None:
                content = b"" if body is None else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    if content:
                        self.send_header("Content-Type", "application/json; charset=UTF-8")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except OSError:
                    pass  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.url = f"{base}{API_PREFIX}"
        self.token_uri = f"{base}/token"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- internals ------------------------------------------------------------------------------------------------
    def _pop_script(self, method: str, path: str) -> _Scripted | None:
        for i, item in enumerate(self._script):
            if (item.method is None or item.method == method) and item.path_contains in path:
                return self._script.pop(i)
        return None

    def _store(self, calendar_id: str, event: dict[str, Any]) -> dict[str, Any]:
        seq = next(self._seq)
        event = {
            **event,
            "kind": "calendar#event",
            "etag": f'"{3180000000000000 + seq}"',
            "updated": _rfc3339(datetime.datetime.now(tz=datetime.UTC)),
        }
        self.calendars.setdefault(calendar_id, {})[event["id"]] = event
        self._changed[(calendar_id, event["id"])] = seq
        return event

    def _token(self, form: dict[str, str]) -> tuple[int, Any]:
        grant = form.get("grant_type", "")
        with self._lock:
            if self.revoked:
                return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
            if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
                try:
                    claims = json.loads(base64.urlsafe_b64decode(form["assertion"].split(".")[1] + "=="))
                except (KeyError, IndexError, ValueError):
                    return 400, {"error": "invalid_grant", "error_description": "Invalid JWT."}
                # google-auth signs for Google's token URL whatever token_uri says; both are accepted.
                if claims.get("aud") not in (self.token_uri, GOOGLE_TOKEN_URI) or not claims.get("iss"):
                    return 400, {"error": "invalid_grant", "error_description": "Invalid JWT audience."}
            elif grant != "refresh_token" or not form.get("refresh_token"):
                return 400, {"error": "unsupported_grant_type"}
            token = f"ya29.fake{next(self._seq)}"
            self._tokens.add(token)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        parts = path.split("/")
        with self._lock:
            if method == "POST" and path == "freeBusy":
                return self._free_busy(body)
            if len(parts) >= 3 and parts[0] == "calendars" and parts[2] == "events":
                calendar_id = parts[1]
                if calendar_id not in self.calendars:
                    return 404, error_body(404, "notFound", "Not Found")
                if len(parts) == 3 and method == "POST":
                    return self._insert(calendar_id, body)
                if len(parts) == 3 and method == "GET":
                    return self._list(calendar_id, query)
                if len(parts) == 4:
                    return self._one(method, calendar_id, parts[3], body)
        return 404, error_body(404, "notFound", "Not Found")

    def _insert(self, calendar_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        event_id = body.get("id") or f"gen{next(self._seq)}x"
        if event_id in self.calendars[calendar_id]:
            return 409, error_body(409, "duplicate", "The requested identifier already exists.")
        return 200, self._store(calendar_id, {**body, "id": event_id, "status": body.get("status", "confirmed")})

    def _one(self, method: str, calendar_id: str, event_id: str, body: Any) -> tuple[int, Any]:
        event = self.calendars[calendar_id].get(event_id)
        if event is None:
            return 404, error_body(404, "notFound", "Not Found")
        if method == "GET":
            return 200, event
        if method == "PATCH":
            return 200, self._store(calendar_id, {**event, **body, "id": event_id})
        if method == "DELETE":
            if event["status"] == "cancelled":
                return 410, error_body(410, "deleted", "Resource has been deleted")
            self._store(calendar_id, {**event, "status": "cancelled"})
            return 204, None
        return 405, error_body(405, "methodNotAllowed", "Method not allowed")

    def _list(self, calendar_id: str, query: dict[str, str]) -> tuple[int, Any]:
        page_token = query.get("pageToken", "")
        if page_token:
            if page_token not in self._pages:
                return 400, error_body(400, "invalid", "Invalid page token")
            items, snapshot = self._pages.pop(page_token)
        else:
            snapshot = next(self._seq)
            sync_token = query.get("syncToken", "")
            if sync_token:
                since = int(sync_token.removeprefix("sync"))
                if since < self._token_floor:
                    return 410, error_body(
                        410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required."
                    )
                items = [self._listed(e) for e in self._events_changed(calendar_id, since, snapshot)]
            else:
                time_min = _utc(query["timeMin"]) if "timeMin" in query else None
                items = [
                    e
                    for e in self._events_changed(calendar_id, -1, snapshot)
                    if e["status"] != "cancelled"
                    and (time_min is None or (b := _event_bounds(e)) is None or b[1] > time_min)
                ]
        size = self.page_size or int(query.get("maxResults", 250))
        answer: dict[str, Any] = {
            "kind": "calendar#events",
            "summary": calendar_id,
            "timeZone": "America/Sao_Paulo",
            "accessRole": "owner",
            "items": items[:size],
        }
        if len(items) > size:
            token = f"page{next(self._seq)}"
            self._pages[token] = (items[size:], snapshot)
            answer["nextPageToken"] = token
        else:
            answer["nextSyncToken"] = f"sync{snapshot}"
        return 200, answer

    def _events_changed(self, calendar_id: str, since: int, snapshot: int) -> list[dict[str, Any]]:
        return [
            event
            for event_id, event in sorted(self.calendars[calendar_id].items())
            if since < self._changed[(calendar_id, event_id)] <= snapshot
        ]

    @staticmethod
    def _listed(event: dict[str, Any]) -> dict[str, Any]:
        # Incremental listings show a deleted event by its id and status only, as Google does.
        if event["status"] == "cancelled":
            return {"kind": "calendar#event", "etag": event["etag"], "id": event["id"], "status": "cancelled"}
        return event

    def _free_busy(self, body: dict[str, Any]) -> tuple[int, Any]:
        time_min, time_max = _utc(body["timeMin"]), _utc(body["timeMax"])
        calendars: dict[str, Any] = {}
        for item in body.get("items", []):
            cid = item["id"]
            if cid not in self.calendars:
                calendars[cid] = {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
                continue
            spans = []
            for event in self.calendars[cid].values():
                bounds = _event_bounds(event)
                if event["status"] == "cancelled" or event.get("transparency") == "transparent" or bounds is None:
                    continue
                start, end = max(bounds[0], time_min), min(bounds[1], time_max)
                if start < end:
                    spans.append((start, end))
            merged: list[tuple[datetime.datetime, datetime.datetime]] = []
            for start, end in sorted(spans):
                if merged and start <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], end))
                else:
                    merged.append((start, end))
            calendars[cid] = {"busy": [{"start": _rfc3339(a), "end": _rfc3339(b)} for a, b in merged]}
        return 200, {
            "kind": "calendar#freeBusy",
            "timeMin": _rfc3339(time_min),
            "timeMax": _rfc3339(time_max),
            "calendars": calendars,
        }


# --- pytest fixtures (import them into a test module to use them) --------------------------------------------------


@pytest.fixture(scope="session")
def google_private_key() -> str:
    """A real RSA key, so google-auth signs service-account JWTs exactly as in production."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def service_account_json(
    fake: FakeGoogleCalendar, private_key: str, email: str = "cecilia@clinica.iam.gserviceaccount.com"
) -> str:
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "clinica",
            "private_key_id": "0123456789abcdef",
            "private_key": private_key,
            "client_email": email,
            "client_id": "100000000000000000001",
            "token_uri": fake.token_uri,
        }
    )


def authorized_user_json(fake: FakeGoogleCalendar) -> str:
    return json.dumps(
        {
            "type": "authorized_user",
            "client_id": "123-abc.apps.googleusercontent.com",
            "client_secret": "GOCSPX-not-a-real-secret",
            "refresh_token": "1//0refresh-token-for-tests",
            "token_uri": fake.token_uri,
        }
    )


@pytest.fixture
def google(settings: Any, monkeypatch: pytest.MonkeyPatch, google_private_key: str) -> Iterator[FakeGoogleCalendar]:
    """The fake Google, with the environment's service account pointing at it (every clinic uses it by default).

    Calls time out after 2 s and are retried once inside a call, without the library's backoff sleep."""
    from django.core.cache import cache
    from googleapiclient import http as googleapiclient_http

    from integrations import calendar_sync

    fake = FakeGoogleCalendar()
    fake.start()
    settings.GOOGLE_CALENDAR_API_URL = fake.url
    settings.GOOGLE_OAUTH_TOKEN_URL = fake.token_uri
    settings.GOOGLE_SERVICE_ACCOUNT_JSON = service_account_json(fake, google_private_key)
    settings.GOOGLE_SERVICE_ACCOUNT_FILE = ""
    settings.GOOGLE_CALENDAR_TIMEOUT = 2.0
    settings.GOOGLE_CALENDAR_BUSY_TIMEOUT = 2.0
    settings.GOOGLE_CALENDAR_NUM_RETRIES = 1
    # The library's backoff sleeps (time.sleep) are skipped; the retries themselves still happen.
    monkeypatch.setattr(googleapiclient_http.time, "sleep", lambda seconds: None)
    calendar_sync._environment_credentials.cache_clear()
    cache.clear()
    yield fake
    fake.stop()
    calendar_sync._environment_credentials.cache_clear()
    cache.clear()


@pytest.fixture
def pushes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Appointment ids whose push task was enqueued (instead of publishing to the broker)."""
    from integrations import tasks

    enqueued: list[int] = []
    monkeypatch.setattr(tasks, "calendar_push_enqueue", enqueued.append)
    return enqueued
