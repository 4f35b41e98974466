"""Evolution API error responses → ProviderError (contract §4: `{status, error, response: {message}}`).

`response.message` is polymorphic: an array of arrays of strings (schema validation), an array of strings, an array of
objects (`[{"exists": false, …}]`: number not on WhatsApp) or a plain string (401, or a raw `Error` such as
"Connection Closed" with 500). The texts can hold the number sent to, so none of them is copied into the error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from integrations.whatsapp._common import provider_error
from integrations.whatsapp.base import ProviderError

Context = Literal["send", "download", "manage"]

STAFF_MESSAGES = {
    "not_on_whatsapp": "Este número não tem WhatsApp.",
    "channel_disconnected": (
        "O WhatsApp da clínica está desconectado. Reconecte o número nas configurações do canal; "
        "o sistema tentará de novo."
    ),
    "instance_not_found": (
        "A instância de WhatsApp configurada para a clínica não existe no servidor Evolution. "
        "Verifique as configurações do canal."
    ),
    "instance_name_taken": "Já existe uma instância com este nome no servidor Evolution.",
}

# Baileys errors that Evolution returns as 400 `["Error: …"]` but that pass with time (lower case substrings).
_TRANSIENT_MARKERS = ("timed out", "rate-overlimit", "connection lost", "stream errored", "connection terminated")


def error_from_response(status: int, body: Any, *, context: Context = "send") -> ProviderError:
    """One decision per Evolution error: permanent (fix something, then retry by hand) or temporary (retry later).

    `body` is the parsed JSON answer (None when it was not JSON).
    """
    texts, objects = _messages(body)
    joined = " ".join(texts).lower()

    def error(code: str, *, permanent: bool) -> ProviderError:
        return provider_error(code, permanent=permanent, status=status, staff_message=STAFF_MESSAGES.get(code, ""))

    if status == 403 and context == "manage" and "already in use" in joined:
        return error("instance_name_taken", permanent=True)
    if status in (401, 403):
        # A wrong key is a configuration problem: retrying cannot help, and staff can resend once it is fixed.
        return error("unauthorized", permanent=True)
    if status == 404:
        return error("instance_not_found", permanent=True)
    if status == 408:
        return error("timeout", permanent=False)
    if status == 413:
        return error("media_too_large", permanent=True)
    if status == 429:
        return error("rate_limited", permanent=False)
    if any(obj.get("exists") is False for obj in objects):
        return error("not_on_whatsapp", permanent=True)
    if "connection closed" in joined:
        # 400 ["Error: Connection Closed"] (2.3.6) or 500 "Connection Closed" (2.2.3): the phone is unpaired or the
        # socket is reconnecting; the message goes out once the clinic reconnects.
        return error("channel_disconnected", permanent=False)
    if status >= 500 or any(marker in joined for marker in _TRANSIENT_MARKERS):
        return error("provider_unavailable", permanent=False)
    if context == "download":
        return error("media_unavailable", permanent=True)  # e.g. 400 ["Message not found"], expired media
    return error("invalid_request", permanent=True)  # validation errors, and any other 4xx we cannot read


def _messages(body: Any) -> tuple[list[str], list[Mapping[str, Any]]]:
    """The strings and the objects of `response.message` (or a bare `message`), flattened."""
    if not isinstance(body, Mapping):
        return [], []
    response = body.get("response")
    message = response.get("message") if isinstance(response, Mapping) else body.get("message")
    texts: list[str] = []
    objects: list[Mapping[str, Any]] = []

    def walk(value: Any, depth: int = 0) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, Mapping):
            objects.append(value)
        elif isinstance(value, list) and depth < 3:
            for item in value:
                walk(item, depth + 1)

    walk(message)
    return texts, objects
