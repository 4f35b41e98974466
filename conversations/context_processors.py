"""`channel_alerts`: the admin's warning when a clinic's WhatsApp has been down for a while (templates/admin/base_site).

Enabled in settings.TEMPLATES' context processors. Lazy: the query runs only when a page draws the banner (admin pages
do; the login page and JSON views do not), and it is one query on the clinic table — the user's clinics and roles
come from the per-request cache of cecilia.selectors.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import SimpleLazyObject

from cecilia.models import ChannelState, Clinic, WhatsAppProvider
from cecilia.roles import role_allows
from cecilia.selectors import clinic_roles_for_user

DEFAULT_ALERT_AFTER = datetime.timedelta(minutes=5)
# A platform operator (superuser) sees every clinic's alert; past this many the banner would bury the page.
MAX_ALERTS = 10


@dataclass(frozen=True)
class ChannelAlert:
    clinic_id: int
    clinic_name: str
    since: str  # local time in the clinic's zone ("14:05", or "03/02/2026 14:05" before today); "" when unknown
    connect_url: str  # "" when the user may not reconnect it (receptionists are told to ask a manager)


def alert_after() -> datetime.timedelta:
    """settings.WHATSAPP_CHANNEL_ALERT_AFTER: seconds (or a timedelta); 5 minutes when unset."""
    value = getattr(settings, "WHATSAPP_CHANNEL_ALERT_AFTER", DEFAULT_ALERT_AFTER)
    return value if isinstance(value, datetime.timedelta) else datetime.timedelta(seconds=int(value))


def channel_alerts_for(user: Any, *, now: datetime.datetime | None = None) -> list[ChannelAlert]:
    """The clinics of `user` whose real WhatsApp channel has not been open for longer than `alert_after()`."""
    if user is None or not user.is_authenticated or not user.is_staff:
        return []
    roles = clinic_roles_for_user(user)  # None: every clinic (superusers)
    if roles is not None and not roles:
        return []
    now = now or timezone.now()
    clinics = (
        Clinic.objects.exclude(whatsapp_provider=WhatsAppProvider.CONSOLE)
        .exclude(channel_state=ChannelState.OPEN)
        # No date: the channel never reported being connected since it was configured — down as far as we know.
        .filter(Q(channel_state_since__isnull=True) | Q(channel_state_since__lte=now - alert_after()))
        .only("pk", "name", "timezone", "channel_state_since")
        .order_by("name")
    )
    if roles is not None:
        clinics = clinics.filter(pk__in=roles)
    alerts = []
    for clinic in clinics[:MAX_ALERTS]:
        may_fix = roles is None or role_allows(roles[clinic.pk], "change", "cecilia", "clinic")
        url = reverse("admin:conversations_conversation_channel", args=[clinic.pk]) if may_fix else ""
        alerts.append(ChannelAlert(clinic.pk, clinic.name, _since(clinic, now), url))
    return alerts


def _since(clinic: Clinic, now: datetime.datetime) -> str:
    if clinic.channel_state_since is None:
        return ""
    local = timezone.localtime(clinic.channel_state_since, clinic.tz)
    if local.date() == timezone.localtime(now, clinic.tz).date():
        return local.strftime("%H:%M")
    return date_format(local, "SHORT_DATETIME_FORMAT")


def channel_alerts(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    return {"channel_alerts": SimpleLazyObject(lambda: channel_alerts_for(user))}
