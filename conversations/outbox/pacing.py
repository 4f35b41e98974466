"""How fast the outbox sends: backoff for retries, and a per-number rate limit so a burst cannot get a number banned.

The rate limit is a GCRA bucket per clinic (one WhatsApp number each) in Redis: `WHATSAPP_SEND_PER_MINUTE` messages a
minute, evenly spaced, with `WHATSAPP_SEND_BURST` allowed back to back. A send over the limit *reserves* its slot and
is told how long to wait; it comes back at that time and uses the slot without asking again, so a burst of 500
reminders drains in order at the configured pace instead of all retrying at once. Redis only paces: the database is
what guarantees one send per message (a lost reservation wastes a slot, nothing more).
"""

from __future__ import annotations

import logging
import random
from functools import cache

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# The longest wait between two attempts, whatever the attempt count.
MAX_BACKOFF_SECONDS = 300.0

# KEYS: the clinic's bucket, this message's reservation. ARGV: seconds between sends, burst.
# Returns the seconds to wait before sending (as a string: Lua numbers become integers on the way out), "0" = now.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local reserved = redis.call('GET', KEYS[2])
if reserved then
  local wait = tonumber(reserved) - now
  if wait <= 0.05 then
    redis.call('DEL', KEYS[2])
    return '0'
  end
  return tostring(wait)
end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allowed_at = tat - (burst - 1) * interval
-- Kept for as long as reservations reach into the future, plus an hour.
local ttl = math.ceil(tat + interval - now) + 3600
redis.call('SET', KEYS[1], tostring(tat + interval), 'EX', ttl)
if allowed_at <= now then return '0' end
redis.call('SET', KEYS[2], tostring(allowed_at), 'EX', ttl)
return tostring(allowed_at - now)
"""


def backoff_seconds(attempt: int) -> float:
    """The wait after failed attempt number `attempt` (1, 2, …): base · 2^(attempt-1), at most 5 min, ±20 % jitter."""
    base = settings.WHATSAPP_SEND_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0)
    return min(base, MAX_BACKOFF_SECONDS) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography


@cache
def _redis() -> redis.Redis:
    # Short timeouts: a Redis outage must not hold a send (the limit fails open, see rate_limit_wait).
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)


@cache
def _script() -> object:
    return _redis().register_script(_RESERVE)


def rate_limit_wait(*, clinic_id: int, message_id: int) -> float:
    """Seconds this message must wait before its clinic's number may send it; 0 = send now (its slot is taken).

    Fails open: with Redis unreachable the message is sent (and a warning logged) — the broker lives in the same
    Redis, so an outage long enough to matter also stops the sends themselves.
    """
    per_minute = settings.WHATSAPP_SEND_PER_MINUTE
    if per_minute <= 0:
        return 0.0
    interval = 60.0 / per_minute
    burst = max(settings.WHATSAPP_SEND_BURST, 1)
    keys = [f"cecilia:outbox:rate:{clinic_id}", f"cecilia:outbox:slot:{message_id}"]
    try:
        wait = float(_script()(keys=keys, args=[interval, burst]))  # type: ignore[operator]
    except redis.RedisError:
        logger.warning("Send rate limit unavailable (Redis); message %s sent without pacing", message_id)
        return 0.0
    return max(wait, 0.0)
