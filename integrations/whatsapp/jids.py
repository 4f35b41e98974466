"""WhatsApp JIDs (`<user>[_<agent>][:<device>]@<server>`), as Baileys and Evolution name people and chats.

* `5511987654321@s.whatsapp.net` — a phone number (PN). Older Brazilian mobiles keep their pre-2012 form without the
  ninth digit (`551187654321@…`): these helpers report the digits as WhatsApp wrote them; the app normalises.
* `128765432109876@lid` — WhatsApp's privacy id (LID); it is not a phone number and never contains one.
* `…@g.us` groups, `status@broadcast` stories, `…@broadcast` lists, `…@newsletter` channels: not patient chats.

Pure functions on strings; nothing here knows about a clinic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PHONE_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"
GROUP_SERVER = "g.us"
BROADCAST_SERVER = "broadcast"
NEWSLETTER_SERVER = "newsletter"
STATUS_BROADCAST = "status@broadcast"

# `c.us` is the legacy spelling of `s.whatsapp.net` (Baileys' jidNormalizedUser maps one to the other).
_PHONE_SERVERS = frozenset({PHONE_SERVER, "c.us"})
# E.164 allows 15 digits; 8 covers the shortest national numbers WhatsApp registers.
_PHONE_DIGITS = re.compile(r"\d{8,15}")


@dataclass(frozen=True)
class Jid:
    """A JID without its device and agent suffixes; `str(jid)` is the form to send to."""

    user: str
    server: str

    def __str__(self) -> str:
        return f"{self.user}@{self.server}"

    @property
    def is_phone(self) -> bool:
        return self.server == PHONE_SERVER and bool(_PHONE_DIGITS.fullmatch(self.user))

    @property
    def is_lid(self) -> bool:
        return self.server == LID_SERVER and bool(self.user)

    @property
    def is_group(self) -> bool:
        return self.server == GROUP_SERVER

    @property
    def is_status_broadcast(self) -> bool:
        return str(self) == STATUS_BROADCAST

    @property
    def is_broadcast_list(self) -> bool:
        return self.server == BROADCAST_SERVER and not self.is_status_broadcast

    @property
    def is_newsletter(self) -> bool:
        return self.server == NEWSLETTER_SERVER


def parse_jid(value: object) -> Jid | None:
    """Split a JID, dropping `:device` and `_agent` from the user part; None when `value` is not a JID string."""
    if not isinstance(value, str):
        return None
    user, at, server = value.strip().partition("@")
    if not at or not server:
        return None
    user = user.split(":", 1)[0].split("_", 1)[0]
    server = server.lower()
    if server in _PHONE_SERVERS:
        server = PHONE_SERVER
    return Jid(user=user, server=server)


def phone_of(value: object) -> str | None:
    """The phone digits a value names: a phone JID (`55…@s.whatsapp.net`) or bare digits. None otherwise (LIDs too)."""
    if isinstance(value, str) and _PHONE_DIGITS.fullmatch(value.strip()):
        return value.strip()
    jid = parse_jid(value)
    return jid.user if jid is not None and jid.is_phone else None


def lid_of(value: object) -> str | None:
    """The normalised LID JID (`…@lid`) a value names, or None."""
    jid = parse_jid(value)
    return str(jid) if jid is not None and jid.is_lid else None


def phone_jid(phone: str) -> str:
    return f"{phone}@{PHONE_SERVER}"


def send_target(to: str) -> str:
    """What Evolution accepts as `number`: a JID as given (device suffix dropped, `@lid` kept), else the digits.

    E.164 (`+55 11 98765-4321`) becomes `5511987654321`. Raises ValueError when nothing usable is left.
    """
    jid = parse_jid(to)
    if jid is not None:
        if not jid.user:
            raise ValueError("empty JID")
        return str(jid)
    digits = re.sub(r"\D", "", to)
    if not digits:
        raise ValueError("no digits")
    return digits


def phone_digits(to: str) -> str:
    """What Meta accepts as `to`: the digits of an E.164 number, a wa_id, or a phone JID. ValueError otherwise."""
    jid = parse_jid(to)
    if jid is not None:
        if not jid.is_phone:
            raise ValueError("not a phone JID")
        return jid.user
    digits = re.sub(r"\D", "", to)
    if not _PHONE_DIGITS.fullmatch(digits):
        raise ValueError("not a phone number")
    return digits
