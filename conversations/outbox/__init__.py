"""The outbox: the only way a message leaves Cecilia. Staff, the assistant and the system all call
`message_queue_outbound`; a Celery task sends; a periodic relay makes sure nothing is forgotten.

**Never sent twice.** A message is a row first (status "queued"), written in the caller's transaction. To send it a
worker claims it with a conditional UPDATE (queued → "sending", `claimed_at`, `attempts + 1`) that only one worker can
win, commits `send_started_at` right before the provider call, then records the provider's id (status "sent"). Neither
Evolution nor Meta offers an idempotency key, so a crash is resolved by what the row says about it:

* killed before the claim → still "queued"; the redelivered task (acks_late) or the relay sends it.
* killed after the claim, before `send_started_at` → "sending" without a start: nothing left Cecilia, so the relay
  requeues it after a minute and it is sent once.
* killed during the provider call, or after it but before the id was stored → "sending" with a start: it may have
  reached WhatsApp. The relay marks it failed "not confirmed" (flagging the conversation) once no worker can still be
  on it; staff check the phone and resend with one click. It is never resent automatically. If the provider's echo
  of the send shows up (Evolution's `send.message`), `message_echo_adopt`, called by the inbound path, marks it sent.
* the redelivered task of a killed worker finds the row "sending" (or settled) and claims nothing.

Errors decide the same way: a refusal the provider answered (HTTP 4xx/5xx) or a connection never made is retried
with backoff (temporary) or failed with the provider's reason (permanent); a failure after the request may have
arrived (read timeout, dropped connection, HTTP 504, a success without a message id, an unexpected exception)
is "not confirmed".

**Pacing.** One message in flight per chat (a claim waits for older pending messages of the same conversation, so
order is kept), a typing delay (Evolution), and a per-number rate limit (`pacing`).

**Meta's 24-hour window.** Free text to a patient silent for 24 hours is refused at queueing (`OutsideWhatsAppWindow`);
approved templates are sent instead (`template=`).
"""

from conversations.outbox import tasks  # noqa: F401 - registers the Celery tasks (CELERY_IMPORTS names this package)
from conversations.outbox.queueing import (
    OutsideWhatsAppWindow,
    message_queue_outbound,
    message_retry,
    window_open,
)
from conversations.outbox.relay import RelayResult, outbox_relay
from conversations.outbox.sending import UNCONFIRMED, Outcome, message_echo_adopt, message_send

__all__ = [
    "UNCONFIRMED",
    "Outcome",
    "OutsideWhatsAppWindow",
    "RelayResult",
    "message_echo_adopt",
    "message_queue_outbound",
    "message_retry",
    "message_send",
    "outbox_relay",
    "window_open",
]
