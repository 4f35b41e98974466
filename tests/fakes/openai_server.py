"""A scripted OpenAI-compatible server: a local HTTP server speaking Chat Completions, so the real `openai` SDK code
path (its HTTP client, retries, timeouts, response parsing) runs in tests.

`POST /v1/chat/completions` answers from a script, one entry per request, in order: a text answer, tool calls
(arguments given as a dict, or as raw text to play a model that writes broken JSON), an HTTP error with OpenAI's
error body, or a stall (the answer comes after the client has given up). Every request body is kept, parsed, so tests
can read what the model was sent. A request with nothing scripted gets a 400 `unscripted_request` (a failing test,
not a hang).

`POST /v1/audio/transcriptions` (multipart, as the SDK sends it) answers from its own script (`transcribe`,
`fail_transcription`, `stall_transcription`), so a test can script a voice note's transcript and the chat answers
that follow it independently. Its requests are kept too: the form fields, and the file as
`{"filename", "content_type", "size"}`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    authorization: str
    body: dict[str, Any]

    @property
    def raw(self) -> str:
        return json.dumps(self.body, ensure_ascii=False)

    def tool_results(self) -> list[dict[str, Any]]:
        """The tool messages of this request, their content parsed."""
        return [
            {**message, "content": json.loads(message["content"])}
            for message in self.body.get("messages", [])
            if message.get("role") == "tool"
        ]


@dataclass
class _Answer:
    status: int = 200
    text: str | None = None
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments text)
    error_type: str = ""
    stall_seconds: float = 0.0
    prompt_tokens: int = 120
    completion_tokens: int = 30


TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"


@dataclass
class FakeOpenAI:
    received: list[Received] = field(default_factory=list)
    _script: list[_Answer] = field(default_factory=list)
    _transcripts: list[_Answer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    url: str = ""  # the base URL, ending in /v1
    _server: ThreadingHTTPServer | None = None

    # --- script ---------------------------------------------------------------------------------------------------
    def reply(self, text: str, *, prompt_tokens: int = 120, completion_tokens: int = 30) -> None:
        with self._lock:
            self._script.append(_Answer(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens))

    def call_tools(self, *calls: tuple[str, dict[str, Any] | str], prompt_tokens: int = 120) -> None:
        """One answer calling these tools; a str is sent as the arguments text as is (e.g. broken JSON)."""
        encoded = [(name, args if isinstance(args, str) else json.dumps(args)) for name, args in calls]
        with self._lock:
            self._script.append(_Answer(tool_calls=encoded, prompt_tokens=prompt_tokens))

    def fail(self, status: int, *, times: int = 1, error_type: str = "server_error") -> None:
        with self._lock:
            self._script.extend(_Answer(status=status, error_type=error_type) for _ in range(times))

    def stall(self, seconds: float, *, times: int = 1) -> None:
        """The next `times` requests are answered (with a text) only after `seconds`."""
        with self._lock:
            self._script.extend(_Answer(text="tarde demais", stall_seconds=seconds) for _ in range(times))

    def transcribe(self, text: str, *, input_tokens: int = 0) -> None:
        """The next transcription answers `text` (usage in tokens when given, else in seconds, as whisper-1)."""
        with self._lock:
            self._transcripts.append(_Answer(text=text, prompt_tokens=input_tokens, completion_tokens=0))

    def fail_transcription(self, status: int, *, times: int = 1, error_type: str = "server_error") -> None:
        with self._lock:
            self._transcripts.extend(_Answer(status=status, error_type=error_type) for _ in range(times))

    def stall_transcription(self, seconds: float, *, times: int = 1) -> None:
        with self._lock:
            self._transcripts.extend(_Answer(text="tarde demais", stall_seconds=seconds) for _ in range(times))

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    @property
    def transcription_requests(self) -> list[Received]:
        return [request for request in self.requests if request.path == TRANSCRIPTIONS_PATH]

    # --- server ---------------------------------------------------------------------------------------------------
    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if self.path == TRANSCRIPTIONS_PATH:
                    return self._transcription(self.rfile.read(length))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.received.append(Received(self.path, self.headers.get("Authorization", ""), body))
                    answer = fake._script.pop(0) if fake._script else None
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "Unknown path", "type": "invalid_request_error"}})
                if answer is None:
                    return self._send(
                        400, {"error": {"message": "unscripted_request", "type": "invalid_request_error"}}
                    )
                if answer.stall_seconds:
                    fake._stopping.wait(answer.stall_seconds)
                if answer.status != 200:
                    error = {"message": f"Fake {answer.status}", "type": answer.error_type, "param": None, "code": None}
                    return self._send(answer.status, {"error": error}, headers={"retry-after-ms": "5"})
                return self._send(200, fake._completion(body, answer))

            def _transcription(self, raw: bytes) -> None:
                body = _form(self.headers.get("Content-Type", ""), raw)
                with fake._lock:
                    fake.received.append(Received(self.path, self.headers.get("Authorization", ""), body))
                    answer = fake._transcripts.pop(0) if fake._transcripts else None
                if answer is None:
                    return self._send(
                        400, {"error": {"message": "unscripted_request", "type": "invalid_request_error"}}
                    )
                if answer.stall_seconds:
                    fake._stopping.wait(answer.stall_seconds)
                if answer.status != 200:
                    error = {"message": f"Fake {answer.status}", "type": answer.error_type, "param": None, "code": None}
                    return self._send(answer.status, {"error": error}, headers={"retry-after-ms": "5"})
                if answer.prompt_tokens:
                    usage = {
                        "type": "tokens",
                        "input_tokens": answer.prompt_tokens,
                        "output_tokens": len((answer.text or "").split()),
                        "total_tokens": answer.prompt_tokens + len((answer.text or "").split()),
                    }
                else:
                    usage = {"type": "duration", "seconds": 4}
                return self._send(200, {"text": answer.text, "usage": usage})

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("x-request-id", f"req_{next(fake._ids)}")
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _completion(self, body: dict[str, Any], answer: _Answer) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
        if answer.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{next(self._ids)}", "type": "function", "function": {"name": name, "arguments": args}}
                for name, args in answer.tool_calls
            ]
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if answer.tool_calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "total_tokens": answer.prompt_tokens + answer.completion_tokens,
            },
            "system_fingerprint": "fp_fake",
        }


def _form(content_type: str, raw: bytes) -> dict[str, Any]:
    """A multipart/form-data body as a dict: text fields as str, the file as its name, type and size."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    form: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if part.get_filename():
            form[name] = {"filename": part.get_filename(), "content_type": part.get_content_type(), "size": len(data)}
        else:
            form[name] = data.decode()
    return form
