"""A local HTTP server speaking Evolution API's send endpoints, for tests that need a real socket (a real worker
process, a kill mid-request). It counts what it receives and answers from a script.

Answers come from the contract's REST payloads (tests/fixtures/evolution/rest/): a send answers 201 with the real
`send_text_response_201.json` body, its `key.id` made unique per request (as Evolution's would be) and `remoteJid`
and text taken from the request. Scripted answers replace that, one per request, in order: an HTTP status with a
payload file, or a hold — the request is kept open, unanswered, until `release()`.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REST = Path(__file__).resolve().parents[1] / "fixtures" / "evolution" / "rest"
HOLD_AT_MOST_SECONDS = 30.0  # a held request is let go after this long, whatever happens to the test


def rest_payload(name: str) -> Any:
    return json.loads((REST / name).read_text(encoding="utf-8"))


@dataclass
class Received:
    path: str
    body: Any


@dataclass
class _Answer:
    status: int = 201
    body: Any = None
    hold: bool = False


@dataclass
class FakeEvolution:
    instance: str
    api_key: str
    received: list[Received] = field(default_factory=list)
    _script: list[_Answer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _arrived: threading.Condition = field(init=False)
    _released: threading.Event = field(default_factory=threading.Event)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        self._arrived = threading.Condition(self._lock)

    # --- script ---------------------------------------------------------------------------------------------------
    def answer(self, status: int, payload_file: str) -> None:
        """The next unscripted request gets this status and payload (a file of the contract's REST folder)."""
        with self._lock:
            self._script.append(_Answer(status, rest_payload(payload_file)))

    def hold_next(self) -> None:
        """The next request is kept open without an answer until `release()`."""
        with self._lock:
            self._script.append(_Answer(hold=True))

    def release(self) -> None:
        self._released.set()

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.received) >= count, timeout=timeout)

    def requests_to(self, endpoint: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == f"/message/{endpoint}/{self.instance}"]

    # --- server ---------------------------------------------------------------------------------------------------
    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                with fake._arrived:
                    fake.received.append(Received(self.path, body))
                    fake._arrived.notify_all()
                    answer = fake._script.pop(0) if fake._script else _Answer()
                if self.headers.get("apikey") != fake.api_key:
                    answer = _Answer(401, rest_payload("error_401_unauthorized.json"))
                if answer.hold:
                    fake._released.wait(HOLD_AT_MOST_SECONDS)
                    answer = _Answer()
                if answer.body is None:
                    answer.body = fake._sent_body(body)
                self._reply(answer.status, answer.body)

            def _reply(self, status: int, body: Any) -> None:
                content = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except OSError:
                    pass  # the client is gone (a killed worker)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _sent_body(self, request: Any) -> Any:
        body = copy.deepcopy(rest_payload("send_text_response_201.json"))
        number = str(request.get("number", "")) if isinstance(request, dict) else ""
        body["key"]["id"] = f"3EB0C4F2A91D7E5B{next(self._ids):06X}"
        body["key"]["remoteJid"] = number if "@" in number else f"{number}@s.whatsapp.net"
        body["message"] = {"conversation": request.get("text", "")} if isinstance(request, dict) else {}
        return body
