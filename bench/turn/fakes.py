"""The bench's stand-ins for the outside world, answering at once, in the bench's own process: Evolution's send
endpoints (each send recorded with the time it arrived, on the monotonic clock the worker's records share) and an
OpenAI-compatible Chat Completions server that plays a model with zero latency.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Sent:
    at: float  # time.perf_counter() when the request had arrived whole
    path: str
    number: str
    text: str


class _Server:
    """A threading HTTP server on a free loopback port, answering POSTs with `answer(path, headers, body)`."""

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    def answer(self, path: str, headers: Any, body: Any, arrived: float) -> tuple[int, Any]:
        raise NotImplementedError

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real servers: no connection set-up in the measure

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                arrived = time.perf_counter()
                status, payload = fake.answer(self.path, self.headers, json.loads(raw or b"null"), arrived)
                content = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class FakeEvolution(_Server):
    """`POST /message/sendText/<instance>` and friends: recorded, answered 201 with a new message id at once."""

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.sent: list[Sent] = []
        self.refused = 0
        self._ids = itertools.count(1)
        self._arrived = threading.Condition()

    def answer(self, path: str, headers: Any, body: Any, arrived: float) -> tuple[int, Any]:
        if headers.get("apikey") != self.api_key:
            with self._arrived:
                self.refused += 1
            return 401, {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}
        number = str(body.get("number", "")) if isinstance(body, dict) else ""
        text = str(body.get("text", "")) if isinstance(body, dict) else ""
        with self._arrived:
            self.sent.append(Sent(arrived, path, number, text))
            self._arrived.notify_all()
        jid = number if "@" in number else f"{number}@s.whatsapp.net"
        message_id = f"3EB0BE7C{next(self._ids):024X}"
        return 201, {
            "key": {"remoteJid": jid, "fromMe": True, "id": message_id},
            "message": {"conversation": text},
            "messageTimestamp": str(int(time.time())),
            "status": "PENDING",
        }

    def count(self) -> int:
        with self._arrived:
            return len(self.sent)

    def wait_beyond(self, count: int, timeout: float) -> Sent | None:
        """The first send after the first `count` ones, once it arrives; None after `timeout` seconds."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.sent) > count, timeout=timeout):
                return None
            return self.sent[count]

    def since(self, count: int) -> list[Sent]:
        with self._arrived:
            return self.sent[count:]


class FakeModel(_Server):
    """Chat Completions at zero latency, playing one tool round per patient message: the model's first answer of a
    turn calls `find_slots` (service `service_id`, mornings); given the tool's result it answers with a text."""

    def __init__(self, service_id: int) -> None:
        super().__init__()
        self.service_id = service_id
        self.requests = 0
        self.tool_results = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def answer(self, path: str, headers: Any, body: Any, arrived: float) -> tuple[int, Any]:
        messages = body.get("messages", []) if isinstance(body, dict) else []
        after_tool = bool(messages) and messages[-1].get("role") == "tool"
        with self._lock:
            self.requests += 1
            self.tool_results += after_tool
        if not path.endswith("/chat/completions"):
            return 404, {"error": {"message": "Unknown path", "type": "invalid_request_error"}}
        message: dict[str, Any] = {"role": "assistant", "refusal": None}
        if after_tool:
            message["content"] = "Tenho horários amanhã de manhã. Qual fica melhor para você?"
        else:
            arguments = json.dumps({"service_id": self.service_id, "part_of_day": "morning"})
            message["content"] = None
            message["tool_calls"] = [
                {"id": f"call_{next(self._ids)}", "type": "function",
                 "function": {"name": "find_slots", "arguments": arguments}}
            ]  # fmt: skip
        return 200, {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "stop" if after_tool else "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 900, "completion_tokens": 30, "total_tokens": 930},
            "system_fingerprint": "fp_bench",
        }
